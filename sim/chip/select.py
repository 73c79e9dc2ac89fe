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
        # id(obj) -> [obj, mask, the console's readiness or None for a peripheral's own, its
        # (obj, events) pair as ipoll returns it]; the same entries in a list, walked at every
        # step, as a dict's values() would make a view object each time.
        self._virtual = {}
        self._entries = []
        self._out = []

    def register(self, obj, eventmask=POLLIN | POLLOUT):
        if hasattr(obj, "_sim_ready"):
            self._register_virtual(obj, eventmask, None)
        elif _simcore.is_console(obj):
            if id(obj) not in self._virtual:
                _simcore.stdin_readers += 1
            self._register_virtual(obj, eventmask, _console_ready)
        else:
            self._real.register(obj, eventmask)
            self._real_count += 1

    def _register_virtual(self, obj, eventmask, ready):
        entry = self._virtual.get(id(obj))
        if entry is None:
            entry = [obj, eventmask, ready, [obj, 0]]
            self._virtual[id(obj)] = entry
            self._entries.append(entry)
        else:
            entry[1] = eventmask
            entry[2] = ready

    def modify(self, obj, eventmask):
        entry = self._virtual.get(id(obj))
        if entry is not None:
            entry[1] = eventmask
        else:
            self._real.modify(obj, eventmask)

    def unregister(self, obj):
        entry = self._virtual.pop(id(obj), None)
        if entry is not None:
            self._entries.remove(entry)
            if entry[2] is _console_ready:
                _simcore.stdin_readers -= 1
        else:
            self._real.unregister(obj)
            self._real_count -= 1

    def _ready_now(self):
        # The list and its pairs are the poller's own, emptied and filled again: asyncio asks
        # at every step, and the chip's ipoll allocates nothing for it either (it hands back
        # one tuple, refilled). What the sim allocates here would bring the firmware's next
        # collection nearer, as nothing on the chip does. Emptied by pops: MicroPython's
        # clear() gives the list's room back, which the next append takes again (a list keeps
        # room for 4 however short it gets).
        out = self._out
        while out:
            out.pop()
        for entry in self._entries:
            obj = entry[0]
            ready = entry[2]
            events = obj._sim_ready(entry[1]) if ready is None else ready(entry[1])
            if events:
                pair = entry[3]
                pair[1] = events
                out.append(pair)
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
