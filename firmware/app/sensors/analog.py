"""ADC channels: a supply (battery) voltage through a divider, and a current sensor.

ADC.read_uv() is the ESP32 port's calibrated reading. An input that sits at either rail is a
broken or disconnected wire (a divider or a hall current sensor never drives it there), and a
value out of the plausible range is reported rather than used.
"""

from app.sensors import Sensor

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


_RAIL_LOW_UV = const(20000)  # 20 mV: nothing drives the pin (or it is shorted to ground)
_RAIL_HIGH_UV = const(3250000)  # within 50 mV of 3.3 V: shorted to the supply
_SUPPLY_MIN_V = 2.5
_SUPPLY_MAX_V = 16.0
_CURRENT_MAX_A = 40.0


class _Adc(Sensor):
    def __init__(self, adc):
        super().__init__()
        self.adc = adc

    def _volts(self):
        uv = self.adc.read_uv()
        if uv < _RAIL_LOW_UV or uv > _RAIL_HIGH_UV:
            return self._failed("disconnected")
        if self._check_stuck(uv):
            return self._failed("stuck")
        return uv / 1000000


class Supply(_Adc):
    name = "supply"

    def __init__(self, adc, divider_ratio):
        super().__init__(adc)
        self.ratio = divider_ratio

    def _read(self):
        v = self._volts()
        if v is None:
            return None
        v *= self.ratio
        if not _SUPPLY_MIN_V <= v <= _SUPPLY_MAX_V:
            return self._failed("range")
        return {"v": round(v, 2)}


class Current(_Adc):
    name = "current"

    def __init__(self, adc, volts_per_amp, zero_volts):
        super().__init__(adc)
        self.volts_per_amp = volts_per_amp
        self.zero_volts = zero_volts

    def _read(self):
        v = self._volts()
        if v is None:
            return None
        a = (v - self.zero_volts) / self.volts_per_amp
        if abs(a) > _CURRENT_MAX_A:
            return self._failed("range")
        return {"a": round(a, 2)}
