# The machine.UART stand-in's receive ring (tests/sim/test_uart_shim.py): reads in order across
# the ring's end with the heap locked, bytes beyond it lost and counted, and line reads. It
# feeds the ring and reads the lost-byte count through the stand-in's own hooks (`_receive`,
# `overflows`), which the port's UART does not have: the type check lets those pass.
# mypy: disable-error-code="attr-defined"
import machine
import micropython


def run():
    uart = machine.UART(1, baudrate=115200, rxbuf=16)
    first, rest = bytearray(5), bytearray(12)
    buf = bytearray(5)
    got = bytearray()
    n1 = n2 = 0  # names made before the heap is locked
    # 3 rounds of 12 bytes through a 16-byte ring: the second and third wrap around its end.
    for round_no in range(3):
        uart._receive(bytes(range(round_no * 12, round_no * 12 + 12)))
        micropython.heap_lock()
        try:
            n1 = uart.readinto(first)
            n2 = uart.readinto(rest, 12)
        finally:
            micropython.heap_unlock()
        got.extend(first[:n1])
        got.extend(rest[:n2])
    print("GOT", list(got))
    uart._receive(bytes(20))
    print("OVER", uart.any(), uart.overflows)
    uart.readinto(bytearray(16))
    print("EMPTY", uart.readinto(buf), uart.read())
    uart._receive(b"AT\r\nOK\r\nrest")
    print("LINES", uart.readline(), uart.readline(), uart.readline(), uart.read())
