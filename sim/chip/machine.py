# The firmware's `machine` on the virtual device, following the ESP32 port's API.
import _simcore
import _simlink
import _simworld

PWRON_RESET = _simcore.PWRON_RESET
HARD_RESET = _simcore.HARD_RESET
WDT_RESET = _simcore.WDT_RESET
DEEPSLEEP_RESET = _simcore.DEEPSLEEP_RESET
SOFT_RESET = _simcore.SOFT_RESET

_CPU_HZ = 160000000
_MAC_PREFIX = b"\x24\x0a\xc4"  # an Espressif OUI


def reset():
    raise _simcore.Reset()


def soft_reset():
    raise _simcore.SoftReset()


def reset_cause():
    return _simcore.settings.get("reset_cause", PWRON_RESET)


def deepsleep(time_ms=0):
    raise _simcore.DeepSleep(time_ms)


def lightsleep(time_ms=0):
    _simcore.sleep_us(int(time_ms) * 1000)


def idle():
    _simcore.idle(1000)


def unique_id():
    # The ESP32 returns its base MAC; the sim derives one from the device's serial number.
    return _MAC_PREFIX + bytes(_simcore.settings.get("mac_suffix", [0, 0, 1]))


def freq(hz=None):
    return _CPU_HZ


def disable_irq():
    return 0


def enable_irq(state=0):
    return None


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=None, hold=None):
        self.id = id
        self._mode = self.IN
        self._pull = None
        self._level = 0
        self._handler = None
        self._trigger = 0
        self._driven = False  # a sim model drives this pin from outside
        existing = _simworld.pins.get(id)
        if existing is not None:
            self._level = existing._level
            self._driven = existing._driven
        elif id in _simworld.driven_levels:
            self._level = _simworld.driven_levels[id]
            self._driven = True
        _simworld.pins[id] = self
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, alt=None, hold=None):
        if mode != -1 and mode is not None:
            self._mode = mode
        if pull != -1:
            self._pull = pull
            # A pull sets the level of a floating input, not of one a model drives.
            if self._mode == self.IN and not self._driven:
                self._level = 1 if pull == self.PULL_UP else 0
        if value is not None:
            self._set(value)

    def _set(self, level):
        level = 1 if level else 0
        self._level = level
        for callback in _simworld.pin_watchers.get(self.id, ()):
            callback(level)
        _simlink.pin_set(_simcore.now_us, self.id, level)

    def _external(self, level):
        level = 1 if level else 0
        self._driven = True
        old = self._level
        self._level = level
        if self._handler is None or old == level:
            return
        if (level and self._trigger & self.IRQ_RISING) or (
            not level and self._trigger & self.IRQ_FALLING
        ):
            self._handler(self)

    def value(self, x=None):
        if x is None:
            return self._level
        self._set(x)
        return None

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self._set(1)

    def off(self):
        self._set(0)

    def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING, *, priority=1, wake=None,
            hard=False):
        self._handler = handler
        self._trigger = trigger
        return None


class UART:
    INV_TX = 1
    INV_RX = 2
    _RX_BUFFER = 256  # the ESP32 port's default rxbuf

    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, **kwargs):
        self.id = id
        self._baudrate = baudrate
        self._make_ring(kwargs.get("rxbuf", self._RX_BUFFER))
        self.overflows = 0
        _simworld.uarts[id] = self
        _simlink.uart_open(_simcore.now_us, id, baudrate)

    def _make_ring(self, size):
        # The driver's receive buffer, made once: on the chip it lives in the IDF driver, and a
        # buffer that grew and was sliced on every read would scatter the firmware's heap.
        self._ring = bytearray(size)
        self._head = 0  # next byte to read
        self._count = 0  # bytes waiting

    def init(self, baudrate=115200, bits=8, parity=None, stop=1, **kwargs):
        self._baudrate = baudrate
        if "rxbuf" in kwargs and kwargs["rxbuf"] != len(self._ring):
            self._make_ring(kwargs["rxbuf"])
        _simlink.uart_open(_simcore.now_us, self.id, baudrate)

    def deinit(self):
        _simworld.uarts.pop(self.id, None)
        _simlink.uart_open(_simcore.now_us, self.id, 0)

    def _receive(self, data, start=0, end=-1):
        # data[start:end] arrived on the wire (end -1: all of it). Bytes beyond the receive
        # buffer are lost, as on the real driver.
        ring = self._ring
        size = len(ring)
        room = size - self._count
        n = (len(data) if end < 0 else end) - start
        if n > room:
            self.overflows += n - room
            n = room
        tail = (self._head + self._count) % size
        for i in range(start, start + n):
            ring[tail] = data[i]
            tail = tail + 1 if tail + 1 < size else 0
        self._count += n
        _simcore.notify_ready(self)

    def _sim_ready(self, mask):
        events = 0
        if mask & 1 and self._count:
            events |= 1
        if mask & 4:
            events |= 4
        return events

    def any(self):
        return self._count

    def readinto(self, buf, nbytes=None):
        # Copies out of the ring without allocating, as the driver's uart_read_bytes does.
        if not self._count:
            return None
        n = len(buf) if nbytes is None else min(nbytes, len(buf))
        if n > self._count:
            n = self._count
        ring = self._ring
        size = len(ring)
        head = self._head
        for i in range(n):
            buf[i] = ring[head]
            head = head + 1 if head + 1 < size else 0
        self._head = head
        self._count -= n
        return n

    def read(self, nbytes=None):
        if not self._count:
            return None
        out = bytearray(self._count if nbytes is None else min(nbytes, self._count))
        self.readinto(out)
        return bytes(out)

    def readline(self):
        ring = self._ring
        size = len(ring)
        for i in range(self._count):
            if ring[(self._head + i) % size] == 10:
                return self.read(i + 1)
        return self.read()

    def write(self, buf):
        if isinstance(buf, str):  # the ESP32 port takes text too
            buf = buf.encode()
        n = len(buf)
        peer = _simworld.uart_peers.get(self.id)
        if peer is not None:
            peer.receive(bytes(buf))
        else:
            _simlink.uart_write(_simcore.now_us, self.id, buf, n)
        return n

    def flush(self):
        pass

    def txdone(self):
        return True

    def sendbreak(self):
        pass


class I2C:
    # The bus's devices are models on the host: every transfer asks them (_simlink).
    def __init__(self, id=0, *, scl=None, sda=None, freq=400000, timeout=50000):
        self.id = id

    def scan(self):
        return _simlink.i2c_scan(_simcore.now_us, self.id)

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf)
        return bytes(buf)

    def readfrom_into(self, addr, buf, stop=True):
        _simlink.i2c_read(_simcore.now_us, self.id, addr, None, buf)

    def writeto(self, addr, buf, stop=True):
        _simlink.i2c_write(_simcore.now_us, self.id, addr, None, buf)
        return 1

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf)
        return bytes(buf)

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        _simlink.i2c_read(_simcore.now_us, self.id, addr, memaddr, buf)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        _simlink.i2c_write(_simcore.now_us, self.id, addr, memaddr, buf)


class SoftI2C(I2C):
    # Bit-banged I2C on any two pins; the virtual devices answer it as they answer I2C(0).
    def __init__(self, scl, sda, *, freq=400000, timeout=50000):
        super().__init__(0, scl=scl, sda=sda, freq=freq, timeout=timeout)


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 3
    _FULL_SCALE_UV = 3300000

    def __init__(self, id, *, sample_ns=None, atten=None):
        self._pin = id.id if isinstance(id, Pin) else id

    def atten(self, atten):
        pass

    def width(self, bits):
        pass

    def read_uv(self):
        return _simlink.adc_read(_simcore.now_us, self._pin)

    def read_u16(self):
        uv = min(self.read_uv(), self._FULL_SCALE_UV)
        return uv * 65535 // self._FULL_SCALE_UV

    def read(self):
        return self.read_u16() >> 4


class RTC:
    _MEMORY_MAX = 2048  # bytes of RTC slow memory the ESP32 port exposes

    def __init__(self, id=0):
        pass

    def datetime(self, datetimetuple=None):
        import time
        if datetimetuple is not None:
            return None
        t = time.gmtime()
        weekday = t[6]
        return (t[0], t[1], t[2], weekday, t[3], t[4], t[5], 0)

    def init(self, datetimetuple):
        pass

    def memory(self, data=None):
        # RTC slow memory survives resets and deep sleep but not a power cut; the host runner
        # carries it from one boot to the next.
        import binascii
        if data is None:
            return binascii.unhexlify(_simcore.settings.get("rtc_memory", ""))
        if len(data) > self._MEMORY_MAX:
            raise ValueError("RTC memory holds at most 2048 bytes")
        _simcore.settings["rtc_memory"] = binascii.hexlify(bytes(data)).decode()
        return None


class WDT:
    def __init__(self, id=0, timeout=5000):
        _simcore.wdt_start(timeout)

    def feed(self):
        _simcore.wdt_feed()


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, **kwargs):
        self._generation = 0
        if kwargs:
            self.init(**kwargs)

    def init(self, *, mode=PERIODIC, period=-1, callback=None, freq=-1, hard=None):
        self.deinit()
        if freq > 0:
            period = 1000 // freq
        generation = self._generation

        def fire():
            if generation != self._generation:
                return
            if mode == self.PERIODIC:
                _simcore.at(_simcore.now_us + period * 1000, fire)
            if callback is not None:
                callback(self)

        _simcore.at(_simcore.now_us + period * 1000, fire)

    def deinit(self):
        self._generation += 1
