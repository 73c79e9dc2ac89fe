"""The firmware's `asyncio` under CPython: MicroPython's asyncio API on CPython's, on a loop
whose clock is the virtual clock.

The loop's selector asks the real selector for ready sockets without blocking; when nothing is
ready it hands the wait to the virtual clock (_simcore.idle), as the select shim does on
MicroPython. Virtual peripherals (the UART shim) are awaited through their `_sim_ready` hook.
"""

from __future__ import annotations

import asyncio as _aio
import os as _os
import selectors

import _simcore

CancelledError = _aio.CancelledError
TimeoutError = _aio.TimeoutError  # noqa: A001 - MicroPython's asyncio exports this name
Event = _aio.Event
Lock = _aio.Lock
Task = _aio.Task
gather = _aio.gather
current_task = _aio.current_task
sleep = _aio.sleep

_POLLIN = 1
_POLLOUT = 4


class _VirtualSelector(selectors.DefaultSelector):
    def select(self, timeout=None):
        # A Ctrl-C is looked for after readiness: its note comes before its byte, so the
        # console's reader never gets the 0x03 of a Ctrl-C that was not acted on.
        ready = super().select(0)
        _simcore.check_interrupt()
        if ready or timeout == 0:
            return ready
        # In whole microseconds, rounded up: a timer due within one must still be reached.
        _simcore.idle(-1 if timeout is None else int(-(-timeout * 1000000 // 1)))
        ready = super().select(0)
        _simcore.check_interrupt()
        return ready


class _VirtualLoop(_aio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__(_VirtualSelector())

    def time(self) -> float:
        return _simcore.now_us / 1_000_000


_loop: _VirtualLoop | None = None


def get_event_loop() -> _VirtualLoop:
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = _VirtualLoop()
        _aio.set_event_loop(_loop)
    return _loop


new_event_loop = get_event_loop


def run(coro):
    loop = get_event_loop()
    return loop.run_until_complete(coro)


def create_task(coro):
    return get_event_loop().create_task(coro)


async def sleep_ms(ms):
    await _aio.sleep(ms / 1000)


async def wait_for(aw, timeout):
    return await _aio.wait_for(aw, timeout)


async def wait_for_ms(aw, timeout):
    return await _aio.wait_for(aw, timeout / 1000)


class ThreadSafeFlag:
    def __init__(self) -> None:
        self._event = _aio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    async def wait(self) -> None:
        await self._event.wait()
        self._event.clear()


async def _wait_virtual(obj, mask):
    # A virtual peripheral has no file descriptor: the wait is a future that the peripheral
    # resolves (through _simcore.notify_ready) when the sim world makes it ready.
    while not obj._sim_ready(mask):
        future = get_event_loop().create_future()
        _simcore.on_ready(obj, lambda f=future: f.done() or f.set_result(None))
        await future


async def _wait_console():
    # sys.stdin, the console: its descriptor in the loop's selector while someone waits, so
    # the virtual clock's idle wait ends when a byte arrives (_simcore.stdin_readers). Without
    # a console nothing ever arrives.
    loop = get_event_loop()
    future = loop.create_future()
    if _simcore.console_attached:
        loop.add_reader(0, lambda: future.done() or future.set_result(None))
    _simcore.stdin_readers += 1
    try:
        await future
    finally:
        _simcore.stdin_readers -= 1
        if _simcore.console_attached:
            loop.remove_reader(0)


def _read_console(n):
    data = _os.read(0, n)
    if not data:
        raise _simcore.HostGone()
    return data


class StreamReader:
    def __init__(self, stream, writer_stream=None) -> None:
        self.s = stream
        self._console = _simcore.is_console(stream)

    async def read(self, n=-1):
        if self._console:
            await _wait_console()
            return _read_console(1 if n < 0 else n)
        await _wait_virtual(self.s, _POLLIN)
        return self.s.read(None if n < 0 else n)

    async def readinto(self, buf):
        if self._console:
            await _wait_console()
            data = _read_console(len(buf))
            buf[:len(data)] = data
            return len(data)
        await _wait_virtual(self.s, _POLLIN)
        return self.s.readinto(buf)

    async def readexactly(self, n):
        out = b""
        while len(out) < n:
            out += await self.read(n - len(out))
        return out

    async def readline(self):
        out = b""
        while not out.endswith(b"\n"):
            await _wait_virtual(self.s, _POLLIN)
            out += self.s.readline()
        return out

    def write(self, buf):
        self.s.write(buf)

    async def drain(self):
        return None

    def close(self):
        pass

    async def wait_closed(self):
        return None


StreamWriter = StreamReader
Stream = StreamReader
