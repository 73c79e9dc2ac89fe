# The cellular modem: an AT channel (at.py), one driver per modem family sharing the interface
# in base.py, and the connection manager (manager.py) that brings the link up and keeps it up.
# Families are data: the board names one, and only that family's module is imported.

from micropython import const


FAMILIES = "sim7080 sim7600 bg95"  # each the module app.modem.<family>; one string is cheapest


def driver_class(family):
    if family not in FAMILIES.split():
        from app.errors import FirmwareError

        raise FirmwareError("no driver for modem family %r" % (family,))
    return __import__("app.modem." + family, None, None, ["Driver"]).Driver


_RX_BUFFER = const(2048)  # UART receive buffer: a full socket read (1460 B) plus its framing


def open_modem(board, log):
    # The board's modem: its UART on the board's pins, the AT channel (started) and the
    # family's driver.
    import machine

    from app.modem.at import ATChannel

    modem = board["modem"]
    pins = board["pins"]
    uart = machine.UART(modem["uart"], modem["baudrate"], tx=pins["modem_tx"],
                        rx=pins["modem_rx"], rxbuf=_RX_BUFFER)
    channel = ATChannel(uart, log)
    channel.start()
    return driver_class(modem["family"])(channel, board, log)
