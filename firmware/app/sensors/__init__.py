"""Sensor drivers behind one small interface, built from the board's [[sensors]] list.

Each driver has ``read()`` (fresh values as a dict of short keys, or None when it cannot
read), ``status()`` (its last values and fault) and ``errors`` (failed reads so far). A fault
is a short reason ("missing", "crc", "stuck", "disconnected", "range"); a driver never raises
out of read(), so a broken sensor is reported and never stops the application.

Kinds, as boards/*.toml name them: sht4x (and sht3x) on the board's I2C bus, flow_pulse on
pins.flow_pulse, adc_current on pins.current_adc, adc_supply on pins.supply_adc.

All drivers live in this one module: every module costs heap of its own once imported (its
tables, its globals), and every board carries each kind. app.sensors.sht and
app.sensors.analog name the same classes for importers.
"""

import time

from app.errors import FirmwareError
from micropython import const

STUCK_READS = const(30)  # identical raw readings in a row that make a sensor "stuck"


class SensorError(FirmwareError):
    """A sensor could not be set up from the board definition (the message names it)."""


class Sensor:
    """Shared bookkeeping: last values, fault, error count, stuck detection."""

    name = "sensor"
    stuck_reads = STUCK_READS

    def __init__(self):
        self.values = {}
        self.fault = None
        self.errors = 0
        self._last_raw = None
        self._same = 0

    def read(self):
        try:
            values = self._read()
        except OSError:
            return self._failed("missing")
        if values is None:
            return None  # _read set the fault
        self.fault = None
        self.values = values
        return values

    def _read(self):
        # Each driver: fresh values, or None after _failed(reason); OSError: no answer.
        raise NotImplementedError

    def _failed(self, reason):
        self.errors += 1
        self.fault = reason
        return None

    def _check_stuck(self, raw):
        # A live analog or digital sensor jitters; the same raw value for a long run means
        # a frozen sensor or a wire stuck at a level.
        if raw == self._last_raw:
            self._same += 1
        else:
            self._same = 0
            self._last_raw = raw
        return self._same >= self.stuck_reads

    def status(self):
        s = dict(self.values)
        if self.fault:
            s["fault"] = self.fault
        s["errors"] = self.errors
        return s


class Sensors:
    """The board's sensors for the rest of the application (App.sensors): readings() for
    telemetry, faults() for status and telemetry; ``section`` is the status section."""

    def __init__(self, drivers):
        self.drivers = drivers
        self.section = {}

    def get(self, name):
        return self.drivers.get(name)

    def readings(self):
        out = {}
        for d in self.drivers.values():
            if not d.fault:
                out.update(d.values)
        return out

    def faults(self):
        return {name: d.fault for name, d in self.drivers.items() if d.fault}

    def update_section(self):
        # Updated in place, so the status structure holds one dict for the whole run.
        for name, d in self.drivers.items():
            self.section[name] = d.status()


def open_sensors(board):
    """Drivers for the board's sensors: dict name -> driver. Unknown kinds raise SensorError."""
    import machine

    pins = board.get("pins") or {}
    out = {}
    i2c = None
    for spec in board.get("sensors") or ():
        kind = spec.get("kind")
        if kind == "sht4x" or kind == "sht3x":
            if i2c is None:
                bus = board.get("i2c") or {}
                i2c = machine.I2C(bus.get("id", 0), scl=machine.Pin(bus["scl"]),
                                  sda=machine.Pin(bus["sda"]), freq=bus.get("freq", 100000))
            out["sht"] = Sht(i2c, spec.get("address", 0x44), kind)
        elif kind == "flow_pulse":
            out["flow"] = FlowPulse(machine.Pin(pins["flow_pulse"], machine.Pin.IN),
                                    spec["k_factor"])
        elif kind == "adc_current":
            out["current"] = Current(_adc(machine, pins["current_adc"]), spec["volts_per_amp"],
                                     spec["zero_volts"])
        elif kind == "adc_supply":
            out["supply"] = Supply(_adc(machine, pins["supply_adc"]), spec["divider_ratio"])
        else:
            raise SensorError("board sensor kind %r is not supported" % (kind,))
    return out


def _adc(machine, pin):
    adc = machine.ADC(machine.Pin(pin))
    adc.atten(machine.ADC.ATTN_11DB)  # full 0-3.3 V range (read_uv is calibrated)
    return adc


# -- Sensirion SHT4x / SHT3x temperature and humidity over I2C, with the CRC-8 check ---------
# Both answer a measurement with six bytes: temperature MSB, LSB, CRC, humidity MSB, LSB, CRC;
# the CRC is CRC-8, polynomial 0x31, initial 0xFF, over each two-byte word (datasheets:
# SHT4x 4.5, SHT3x-DIS 4.12). T = -45 + 175 * raw / 65535 on both; RH = -6 + 125 * raw / 65535
# on the SHT4x, 100 * raw / 65535 on the SHT3x.

_SHT4X_MEASURE = const(b"\xfd")  # high repeatability, no heater
_SHT3X_MEASURE = const(b"\x24\x00")  # single shot, high repeatability, no clock stretching
_MEASURE_MS = const(16)  # SHT3x high repeatability: at most 15.5 ms; SHT4x: 8.3 ms


def crc8(data, start=0, end=2):
    crc = 0xFF
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


class Sht(Sensor):
    name = "sht"
    stuck_reads = 10  # read once a minute: ten minutes without the last digit moving

    def __init__(self, i2c, address=0x44, kind="sht4x"):
        super().__init__()
        self.i2c = i2c
        self.address = address
        self.sht3x = kind == "sht3x"
        self.buf = bytearray(6)

    def _read(self):
        self.i2c.writeto(self.address, _SHT3X_MEASURE if self.sht3x else _SHT4X_MEASURE)
        time.sleep(_MEASURE_MS / 1000)
        self.i2c.readfrom_into(self.address, self.buf)
        return self.decode(self.buf)

    def decode(self, b):
        """Values from a six-byte reply; None (fault "crc" or "stuck") if it is not good."""
        if crc8(b, 0, 2) != b[2] or crc8(b, 3, 5) != b[5]:
            return self._failed("crc")
        raw_t = (b[0] << 8) | b[1]
        raw_rh = (b[3] << 8) | b[4]
        if self._check_stuck((raw_t << 16) | raw_rh):
            return self._failed("stuck")
        t = -45 + 175 * raw_t / 65535
        if self.sht3x:
            rh = 100 * raw_rh / 65535
        else:
            rh = min(100.0, max(0.0, -6 + 125 * raw_rh / 65535))  # datasheet: clip to 0-100
        return {"t": round(t, 2), "rh": round(rh, 1)}


# -- pulse flow meter on a Pin IRQ: pulses -> litres with the meter's K-factor (pulses/litre) --
# The IRQ handler only increments a counter (no allocation, so it is safe as a hard IRQ on the
# ESP32); take() takes the count since the last take.


class FlowPulse(Sensor):
    name = "flow"

    def __init__(self, pin, k_factor):
        import machine

        super().__init__()
        self.k_factor = k_factor
        self.pulses = 0  # since boot
        self._taken = 0
        pin.irq(handler=self._pulse, trigger=machine.Pin.IRQ_RISING)
        self.pin = pin

    def _pulse(self, pin):
        self.pulses += 1

    def take(self):
        """Pulses since the last take()."""
        now = self.pulses
        n = now - self._taken
        self._taken = now
        return n

    def _read(self):
        return {"pulses": self.pulses, "l": round(self.pulses / self.k_factor, 3)}


# -- ADC channels: a supply (battery) voltage through a divider, and a current sensor --------
# ADC.read_uv() is the ESP32 port's calibrated reading. An input that sits at either rail is a
# broken or disconnected wire (a divider or a hall current sensor never drives it there), and a
# value out of the plausible range is reported rather than used.

_RAIL_LOW_UV = const(20000)  # 20 mV: nothing drives the pin (or it is shorted to ground)
_RAIL_HIGH_UV = const(3250000)  # within 50 mV of 3.3 V: shorted to the supply
_SUPPLY_MIN_MV = const(2500)
_SUPPLY_MAX_MV = const(16000)
_CURRENT_MAX_MA = const(40000)


def _volts(sensor):
    # An ADC driver's input in volts; None (after _failed) at a rail or stuck.
    uv = sensor.adc.read_uv()
    if uv < _RAIL_LOW_UV or uv > _RAIL_HIGH_UV:
        return sensor._failed("disconnected")
    if sensor._check_stuck(uv):
        return sensor._failed("stuck")
    return uv / 1000000


class Supply(Sensor):
    name = "supply"

    def __init__(self, adc, divider_ratio):
        super().__init__()
        self.adc = adc
        self.ratio = divider_ratio

    def _read(self):
        v = _volts(self)
        if v is None:
            return None
        v *= self.ratio
        if not _SUPPLY_MIN_MV <= v * 1000 <= _SUPPLY_MAX_MV:
            return self._failed("range")
        return {"v": round(v, 2)}


class Current(Sensor):
    name = "current"

    def __init__(self, adc, volts_per_amp, zero_volts):
        super().__init__()
        self.adc = adc
        self.volts_per_amp = volts_per_amp
        self.zero_volts = zero_volts

    def _read(self):
        v = _volts(self)
        if v is None:
            return None
        a = (v - self.zero_volts) / self.volts_per_amp
        if abs(a) * 1000 > _CURRENT_MAX_MA:
            return self._failed("range")
        return {"a": round(a, 2)}
