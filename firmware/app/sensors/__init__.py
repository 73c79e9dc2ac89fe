"""Sensor drivers behind one small interface, built from the board's [[sensors]] list.

Each driver has ``read()`` (fresh values as a dict of short keys, or None when it cannot
read), ``status()`` (its last values and fault) and ``errors`` (failed reads so far). A fault
is a short reason ("missing", "crc", "stuck", "disconnected", "range"); a driver never raises
out of read(), so a broken sensor is reported and never stops the application.

Kinds, as boards/*.toml name them: sht4x (and sht3x) on the board's I2C bus, flow_pulse on
pins.flow_pulse, adc_current on pins.current_adc, adc_supply on pins.supply_adc.
"""

from app.errors import FirmwareError

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


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
        if kind in ("sht4x", "sht3x"):
            from app.sensors.sht import Sht

            if i2c is None:
                bus = board.get("i2c") or {}
                i2c = machine.I2C(bus.get("id", 0), scl=machine.Pin(bus["scl"]),
                                  sda=machine.Pin(bus["sda"]), freq=bus.get("freq", 100000))
            out["sht"] = Sht(i2c, spec.get("address", 0x44), kind)
        elif kind == "flow_pulse":
            from app.sensors.flow import FlowPulse

            out["flow"] = FlowPulse(machine.Pin(pins["flow_pulse"], machine.Pin.IN),
                                    spec["k_factor"])
        elif kind in ("adc_current", "adc_supply"):
            from app.sensors.analog import Current, Supply

            if kind == "adc_current":
                out["current"] = Current(_adc(machine, pins["current_adc"]),
                                         spec["volts_per_amp"], spec["zero_volts"])
            else:
                out["supply"] = Supply(_adc(machine, pins["supply_adc"]), spec["divider_ratio"])
        else:
            raise SensorError("board sensor kind %r is not supported" % (kind,))
    return out


def _adc(machine, pin):
    adc = machine.ADC(machine.Pin(pin))
    adc.atten(machine.ADC.ATTN_11DB)  # full 0-3.3 V range (read_uv is calibrated)
    return adc
