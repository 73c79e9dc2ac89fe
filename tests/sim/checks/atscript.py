# Raw AT over the board's modem UART, with the board's pins from /board.json, for the modem
# model's tests (tests/sim/test_modem_model.py): no firmware driver involved. Importing this
# module sets up the pins and the UART; the steps (model_flows.py, model_steps.py) use the
# helpers and `show` what the test checks as "KEY <repr>" lines.
import json
import time

import machine

B = json.load(open("/board.json"))
M = B["modem"]
P = B["pins"]
# What each family's boot ends with, and its ICCID command, by the board's modem family.
BOOT_LAST, ICCID_CMD = {
    "sim7080": (b"SMS Ready\r\n", "AT+CCID"),
    "sim7600": (b"PB DONE\r\n", "AT+CICCID"),
    "bg95": (b"APP RDY\r\n", "AT+QCCID"),
}[M["family"]]


def level(name, on):
    high = P[name]["active"] == "high"
    return (1 if high else 0) if on else (0 if high else 1)


supply = None  # the modem's supply switch, on boards that have one
if "modem_power" in P:
    supply = machine.Pin(P["modem_power"]["pin"], machine.Pin.OUT,
                         value=level("modem_power", True))
key = machine.Pin(P["pwrkey"]["pin"], machine.Pin.OUT, value=level("pwrkey", False))
status = machine.Pin(P["status"]["pin"], machine.Pin.IN)
uart = machine.UART(M["uart"], baudrate=M["baudrate"], tx=P["modem_tx"], rx=P["modem_rx"],
                    rxbuf=4096)
got = bytearray()
t_start = time.ticks_ms()


def now():
    return time.ticks_diff(time.ticks_ms(), t_start)


def press(ms):
    key.value(level("pwrkey", True))
    time.sleep_ms(ms)
    key.value(level("pwrkey", False))


def running():
    return status.value() == level("status", True)


def pump(ms, until=None):
    # Collects what the modem sends for up to ms, or until `until` has arrived.
    t0 = time.ticks_ms()
    while True:
        d = uart.read()
        if d:
            got.extend(d)
        if until is not None and until in got:
            return True
        if time.ticks_diff(time.ticks_ms(), t0) >= ms:
            return False
        time.sleep_ms(10)


def take():
    out = bytes(got)
    got[:] = b""
    return out


def cmd(line, ms=3000, until=None):
    # Sends a command line; returns what came back until the final result (or `until`).
    take()
    uart.write((line + "\r\n").encode())
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < ms:
        pump(10)
        if until is not None:
            if until in got:
                break
        elif b"OK\r\n" in got or b"ERROR\r\n" in got:
            break
    return take()


def send(line, data, final):
    # A send command: waits for the prompt, writes the raw bytes, waits for `final`.
    take()
    uart.write((line + "\r\n").encode())
    pump(2000, b"> ")
    head = take()
    uart.write(data)
    pump(3000, final)
    return head + take()


def show(k, value):
    print(k, repr(value))


def boot_and_register(n=2, until=b"+CEREG: 1,", ms=30000):
    """Switches the modem on, echo off, asks for registration URCs (AT+CEREG=n) and waits
    up to `ms` for `until` (or all of `ms` when None)."""
    press(M["pwrkey_on_ms"])
    pump(20000, BOOT_LAST)
    cmd("ATE0")
    cmd("AT+CEREG=%d" % n)
    pump(ms, until)
    take()
