# The firmware's `time` on the virtual device: every reading comes from the virtual clock.
import _simcore

_b = _simcore._btime
_gm = _b.gmtime if hasattr(_b, "gmtime") else _b.localtime


def ticks_ms():
    return _simcore.ticks_ms()


def ticks_us():
    return _simcore.ticks_us()


def ticks_cpu():
    return _simcore.ticks_us()


def ticks_add(ticks, delta):
    if _simcore.IS_MICROPYTHON:
        return _b.ticks_add(ticks, delta)
    return (ticks + delta) & (_simcore._ESP32_TICKS_PERIOD - 1)


def ticks_diff(ticks1, ticks2):
    if _simcore.IS_MICROPYTHON:
        return _b.ticks_diff(ticks1, ticks2)
    half = _simcore._ESP32_TICKS_PERIOD // 2
    return ((ticks1 - ticks2 + half) & (_simcore._ESP32_TICKS_PERIOD - 1)) - half


def time():
    return _simcore.epoch_seconds()


def time_ns():
    return _simcore.settings.get("epoch", 0) * 1000000000 + _simcore.now_us * 1000


def sleep(seconds):
    _simcore.sleep_us(int(seconds * 1000000))


def sleep_ms(ms):
    _simcore.sleep_us(int(ms) * 1000)


def sleep_us(us):
    _simcore.sleep_us(int(us))


def gmtime(secs=None):
    if secs is None:
        secs = time()
    return tuple(_gm(secs))[:8]


def localtime(secs=None):
    return gmtime(secs)


def mktime(t):
    return _b.mktime(tuple(t))
