# The virtual board's peripherals as the chip's modules made them: the pins and UARTs the
# firmware opened, so that what the models on the host send (musket_sim.coupling) reaches
# them. With nothing on the host side a pin floats to its pull and a UART stays silent, as on
# a bare board.

pins = {}  # pin number -> machine.Pin
uarts = {}  # uart id -> machine.UART
driven_levels = {}  # pin number -> level a model drives, kept for pins made later


def drive_pin(number, level):
    # A model drives an input pin: updates its level and fires the firmware's IRQ.
    driven_levels[number] = 1 if level else 0
    pin = pins.get(number)
    if pin is not None:
        pin._external(level)


# A test double on the device itself (a fake modem in a driver's unit test) may stand in for
# the host's model on a UART: it gets the firmware's writes, and answers with uart_feed.
uart_peers = {}  # uart id -> object with receive(data)
pin_watchers = {}  # pin number -> callbacks(level) when the firmware drives the pin


def watch_pin(number, callback):
    pin_watchers.setdefault(number, []).append(callback)


def attach_uart(uart_id, peer):
    uart_peers[uart_id] = peer


def uart_feed(uart_id, data):
    uart = uarts.get(uart_id)
    if uart is not None:
        uart._receive(data, 0, len(data))
