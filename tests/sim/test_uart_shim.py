"""The machine.UART stand-in keeps the driver's receive buffer as a fixed ring, as the chip's
IDF driver does outside the Python heap: bytes beyond it are lost and counted, reads come out in
order across the ring's end, and `readinto` takes nothing from the firmware's heap."""

from __future__ import annotations

import ast

SCRIPT = r'''
import machine, micropython
uart = machine.UART(1, baudrate=115200, rxbuf=16)
first, rest = bytearray(5), bytearray(12)
buf = bytearray(5)
got = bytearray()
n1 = n2 = 0  # names made before the heap is locked
# 3 rounds of 12 bytes through a 16-byte ring: the second and third wrap around its end.
for round in range(3):
    uart._receive(bytes(range(round * 12, round * 12 + 12)))
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
'''


def test_the_receive_ring_is_fixed_ordered_and_reads_without_allocating(make_device):
    device = make_device()
    result = device.run(5, script=SCRIPT)
    assert not result.errors, (result.errors, result.script_output)
    shown = {}
    for line in result.script_output.splitlines():
        key, _, value = line.partition(" ")
        shown[key] = value
    # Under MicroPython the heap is locked around the reads: an allocation would raise.
    assert ast.literal_eval(shown["GOT"]) == list(range(36))
    assert shown["OVER"] == "16 4"
    assert shown["EMPTY"] == "None None"
    assert shown["LINES"] == "b'AT\\r\\n' b'OK\\r\\n' b'rest' None"
