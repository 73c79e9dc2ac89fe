# The firmware's `select` on the virtual device. asyncio waits in poll.ipoll(); when nothing is
# ready that wait becomes a jump of the virtual clock instead of real sleeping. Virtual
# peripherals (UART, modem) answer readiness themselves through `_sim_ready(mask)`; real file
# descriptors (sockets) are asked of the real poll.
import _simcore

_b = _simcore._bselect
POLLIN = _b.POLLIN
POLLOUT = _b.POLLOUT
POLLERR = _b.POLLERR
POLLHUP = _b.POLLHUP


class poll:
    def __init__(self):
        self._real = _b.poll()
        self._real_count = 0
        # id(obj) -> [obj, mask, the console's readiness, or None for a peripheral's own]
        self._virtual = {}
        self._out = []

    def register(self, obj, eventmask=POLLIN | POLLOUT):
        if hasattr(obj, "_sim_ready"):
            self._virtual[id(obj)] = [obj, eventmask, None]
        elif _simcore.is_console(obj):
            if id(obj) not in self._virtual:
                _simcore.stdin_readers += 1
            self._virtual[id(obj)] = [obj, eventmask, _console_ready]
        else:
            self._real.register(obj, eventmask)
            self._real_count += 1

    def modify(self, obj, eventmask):
        entry = self._virtual.get(id(obj))
        if entry is not None:
            entry[1] = eventmask
        else:
            self._real.modify(obj, eventmask)

    def unregister(self, obj):
        entry = self._virtual.pop(id(obj), None)
        if entry is not None and entry[2] is _console_ready:
            _simcore.stdin_readers -= 1
        if entry is None:
            self._real.unregister(obj)
            self._real_count -= 1

    def _ready_now(self):
        # The list is the poller's own, emptied and filled again: asyncio asks at every step
        # and the chip's poll allocates nothing for it either.
        out = self._out
        out.clear()
        for obj, mask, ready in self._virtual.values():
            events = obj._sim_ready(mask) if ready is None else ready(mask)
            if events:
                out.append((obj, events))
        if self._real_count:
            out.extend(self._real.poll(0))
        return out

    def poll(self, timeout=-1):
        # A Ctrl-C is looked for after readiness: its note comes before its byte, so a
        # console reader never gets the 0x03 of a Ctrl-C that was not acted on.
        ready = self._ready_now()
        _simcore.check_interrupt()
        if ready or timeout == 0:
            return ready
        if timeout is None:
            timeout = -1
        end = _simcore.now_us + int(timeout) * 1000 if timeout >= 0 else -1
        while True:
            if end >= 0:
                _simcore.idle(end - _simcore.now_us)
            else:
                _simcore.idle(-1)
            ready = self._ready_now()
            _simcore.check_interrupt()
            if ready or (end >= 0 and _simcore.now_us >= end):
                return ready

    def ipoll(self, timeout=-1, flags=0):
        return self.poll(timeout)


def _console_ready(mask):
    return POLLIN if mask & POLLIN and _simcore.console_ready() else 0
