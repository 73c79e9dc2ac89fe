# The select.poll stand-in at asyncio's every step (tests/sim/test_uart_shim.py): ipoll asks
# each registered peripheral and hands back the ready ones with the heap locked, as the port's
# ipoll allocates nothing either. It feeds the ring through the stand-in's own hook
# (`_receive`), which the port's UART does not have: the type check lets it pass.
# mypy: disable-error-code="attr-defined"
import select

import machine
import micropython


def run():
    quiet = machine.UART(1, baudrate=115200)
    talking = machine.UART(2, baudrate=115200)
    poller = select.poll()
    poller.register(quiet, select.POLLIN)
    poller.register(talking, select.POLLIN)
    steps = 0
    ready = 0
    seen = None
    # The first ipoll with nothing ready, then three with one UART ready.
    micropython.heap_lock()
    try:
        for _ in poller.ipoll(0):
            ready += 1
        steps += 1
    finally:
        micropython.heap_unlock()
    talking._receive(b"OK\r\n")
    for _ in range(3):
        micropython.heap_lock()
        try:
            for obj, events in poller.ipoll(0):
                ready += 1
                seen = obj is talking and events == select.POLLIN
            steps += 1
        finally:
            micropython.heap_unlock()
    poller.unregister(talking)
    left = 0
    for _ in poller.ipoll(0):
        left += 1
    print("POLL", steps, ready, seen, left)
