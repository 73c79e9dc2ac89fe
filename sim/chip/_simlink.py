# The device's end of the coupling to the models on the host (musket_sim.coupling).
#
# The models (modem, sensors, the appliance) run in the host runner's process. The chip's
# modules reach them through this link: a UART write, a pin change, an I2C transfer or an ADC
# conversion is a frame to the host, and before the device lets its clock pass it asks the
# host for what the models do in that time (conservative synchronisation: the host never runs
# ahead of the device's clock). Frames are built in buffers made at import and read into one,
# so the link takes nothing from the firmware's heap as it runs.
import sys
import socket
import _simexit
import _simwire as W
import _simworld

_MP = sys.implementation.name == "micropython"

_out = bytearray(32)  # a frame's header and fixed fields
_head = bytearray(W.HEADER)
_payload = bytearray(W.MAX_PAYLOAD)
_sock = None
_send = None
_recv_into = None
# Until when the models have nothing for the device, as the host last said; 0 once the device
# sent them something since (they may have work now).
quiet_until = 0
_quiet_due = 0  # UART writes whose QUIET answer is still to be read
_quiet_stale = False  # something else went to the models after those writes
_i2c_absent = bytearray(128)  # addresses with no device on the bus (bus 0; others ask)


_clock = bytearray(8)
_clock_file = None


def _tell_clock(t):
    # The clock file (see _simwire): written in place, nothing allocated.
    for i in range(8):
        _clock[i] = t & 0xFF
        t >>= 8
    _clock_file.seek(0)
    _clock_file.write(_clock)


def connect(name, seed, clock_path):
    # `name`: the host's socket, in the abstract namespace (no file to clean up); the clock
    # file is opened now, while the host's filesystem is still the root.
    global _sock, _send, _recv_into, _clock_file
    _clock_file = open(clock_path, "r+b") if _MP else open(clock_path, "r+b", buffering=0)
    _noise[0] = (seed * 2654435761 + 12345) & 0xFFFFFFFF or 1
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if _MP:
        import struct
        s.connect(struct.pack("H", socket.AF_UNIX) + b"\0" + name.encode())
        # Bound once: a method looked up per call would allocate on the device's heap.
        _send = s.write
        _recv_into = s.readinto
    else:
        s.connect("\0" + name)
        _send = s.sendall
        _recv_into = _cpython_recv_into(s)
    _sock = s


def _cpython_recv_into(s):
    def recv_into(buf, n):
        view = memoryview(buf)
        got = 0
        while got < n:
            k = s.recv_into(view[got:n])
            if not k:
                return got
            got += k
        return got
    return recv_into


# ---- frames -------------------------------------------------------------------------------

def _put(at, value, n):
    for i in range(n):
        _out[at + i] = value & 0xFF
        value >>= 8
    return at + n


def _get(buf, at, n):
    value = 0
    for i in range(n - 1, -1, -1):
        value = (value << 8) | buf[at + i]
    return value


def _frame(kind, now, fixed, extra=0):
    # Header and clock of a frame whose fixed fields take `fixed` bytes after the clock and
    # `extra` bytes of data follow; the caller fills the fixed fields at _out[11:].
    _out[0] = kind
    _put(1, 8 + fixed + extra, 2)
    _put(3, now, 8)
    return 11 + fixed


def _write(n):
    if _MP:
        _send(_out, n)
    else:
        _send(bytes(_out[:n]))


def _read_any():
    if _recv_into(_head, W.HEADER) != W.HEADER:
        raise _simexit.HostGone()
    kind = _head[0]
    n = _head[1] | (_head[2] << 8)
    if n > W.MAX_PAYLOAD or (n and _recv_into(_payload, n) != n):
        raise _simexit.HostGone()
    if kind == W.FAILURE:
        raise _simexit.SimFailure(bytes(_payload[:n]).decode("utf-8", "replace"))
    if kind == W.QUIET:
        _take_quiet()
    return kind, n


def _take_quiet():
    # The answer to the last UART write holds only if nothing else went to the models since.
    global quiet_until, _quiet_due, _quiet_stale
    _quiet_due -= 1
    if not _quiet_due:
        if not _quiet_stale:
            quiet_until = _get(_payload, 0, 8)
        _quiet_stale = False


def _read_frame():
    # -> (kind, length) of the next frame that is not a QUIET; its bytes are in _payload.
    while True:
        kind, n = _read_any()
        if kind != W.QUIET:
            return kind, n


def _settle_quiet():
    # Reads the QUIET answers to the UART writes made since the device last heard the host.
    while _quiet_due:
        kind, n = _read_any()
        if kind != W.QUIET:
            raise _simexit.SimFailure("the host sent frame %d where QUIET was due" % kind)


def _reply():
    kind, n = _read_frame()
    if kind != W.REPLY:
        raise _simexit.SimFailure("the host sent frame %d where a reply was due" % kind)
    return n


def _take_time(advance):
    # Reads TIME, moves the clock there (advance(t) may end the boot: a reset or the span's
    # end at that instant), then takes in the deliveries the models made at that time.
    global quiet_until
    kind, n = _read_frame()
    if kind != W.TIME:
        raise _simexit.SimFailure("the host sent frame %d where the time was due" % kind)
    t = _get(_payload, 0, 8)
    count = _get(_payload, 8, 2)
    quiet_until = _get(_payload, 10, 8)
    advance(t)
    for _ in range(count):
        kind, n = _read_frame()
        if kind == W.UART_DATA:
            uart = _simworld.uarts.get(_payload[0])
            if uart is not None:
                uart._receive(_payload, 1, n)
        elif kind == W.PIN_LEVEL:
            _simworld.drive_pin(_payload[0], _payload[1])
        elif kind == W.PIN_PULSES:
            pin = _payload[0]
            for _ in range(_get(_payload, 1, 2)):
                _simworld.drive_pin(pin, 1)
                _simworld.drive_pin(pin, 0)
    return t


# ---- what the chip's modules and the clock call ---------------------------------------------

def hello(now, reset_cause, advance):
    at = _frame(W.HELLO, now, 1)
    _out[at - 1] = reset_cause
    _write(at)
    return _take_time(advance)


def idle(now, target, commit, advance):
    # commit: the device moves its clock; the host runs the models up to the first instant
    # they send something (or the target) and the device follows. Otherwise the host only
    # says when the models' next work is due (a paced device waits in real time first).
    # Before the time the host said the models are quiet, the device need not ask.
    if _quiet_due:
        _settle_quiet()
    if target < quiet_until:
        if commit:
            advance(target)
            _tell_clock(target)
        return target
    at = _frame(W.IDLE, now, 9)
    _put(11, target, 8)
    _out[19] = 1 if commit else 0
    _write(at)
    return _take_time(advance)


def uart_write(now, uart_id, data, n):
    global quiet_until, _quiet_due
    quiet_until = 0
    _quiet_due += 1
    at = _frame(W.UART_WRITE, now, 1, n)
    _out[11] = uart_id
    _write(at)
    if n:
        if _MP:
            _send(data, n)
        else:
            _send(bytes(data[:n]))


def _dirty():
    # The models may have new work: ask before the clock passes.
    global quiet_until, _quiet_stale
    quiet_until = 0
    if _quiet_due:
        _quiet_stale = True


def uart_open(now, uart_id, baud):
    _dirty()
    at = _frame(W.UART_OPEN, now, 5)
    _out[11] = uart_id
    _put(12, baud, 4)
    _write(at)


def stay(t):
    # For a caller that takes the time the host gives without moving its clock there.
    pass


def pin_set(now, pin, level):
    # Answered at once: what a model does on the edge (a modem's STATUS falling as its RESET
    # line is pulled) is there when the firmware looks next, as on the board.
    at = _frame(W.PIN_SET, now, 2)
    _out[11] = pin
    _out[12] = level
    _write(at)
    _take_time(stay)


def _i2c_fixed(bus, address, register):
    _out[11] = bus
    _out[12] = address
    _put(13, W.NO_REGISTER if register is None else register, 2)


def _no_device(bus, address):
    # The address answered ENODEV before with no device on the bus at all: no need to ask.
    if bus == 0 and _i2c_absent[address & 0x7F]:
        raise OSError(19)


def _check_status(bus, address, got):
    status = _payload[0]
    if status:
        if status == 19 and got > 1 and _payload[1] == W.NO_DEVICE and bus == 0:
            _i2c_absent[address & 0x7F] = 1
        raise OSError(status)


def i2c_read(now, bus, address, register, buf):
    # Fills buf from the device at `address`; raises OSError as the chip's driver does.
    _no_device(bus, address)
    n = len(buf)
    at = _frame(W.I2C_READ, now, 6)
    _i2c_fixed(bus, address, register)
    _put(15, n, 2)
    _write(at)
    got = _reply()
    _check_status(bus, address, got)
    for i in range(min(n, got - 1)):
        buf[i] = _payload[1 + i]


def i2c_write(now, bus, address, register, data):
    _no_device(bus, address)
    _dirty()
    n = len(data)
    at = _frame(W.I2C_WRITE, now, 4, n)
    _i2c_fixed(bus, address, register)
    _write(at)
    if n:
        if _MP:
            _send(data, n)
        else:
            _send(bytes(data))
    _check_status(bus, address, _reply())


def i2c_scan(now, bus):
    at = _frame(W.I2C_SCAN, now, 1)
    _out[11] = bus
    _write(at)
    n = _reply()
    return [_payload[i] for i in range(1, n)]


# ADC inputs: the level the models put on each pin and until when it holds, so a conversion
# asks the host only when the level may have changed; the conversion's own noise is the
# chip's (a few LSB of the ESP32's 12-bit ADC), drawn here without allocating.
_ADC_PINS = 64
_adc_level = [0] * _ADC_PINS
_adc_until = [0] * _ADC_PINS
_adc_noisy = [0] * _ADC_PINS
_ADC_NOISE_UV = 3  # per step of the noise's 2001 steps: +-3 mV at most
_noise = [2463534242]


def _adc_noise():
    x = _noise[0]
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    _noise[0] = x
    return (x % 2001 - 1000) * _ADC_NOISE_UV


def adc_read(now, pin):
    if now >= _adc_until[pin]:
        at = _frame(W.ADC_READ, now, 1)
        _out[11] = pin
        _write(at)
        _reply()
        _adc_level[pin] = _get(_payload, 1, 4)
        _adc_until[pin] = _get(_payload, 5, 8)
        _adc_noisy[pin] = _payload[13]
    uv = _adc_level[pin]
    if _adc_noisy[pin]:
        uv += _adc_noise()
    return uv if uv > 0 else 0
