"""Sensirion SHT4x / SHT3x temperature and humidity over I2C, with the CRC-8 check.

Both answer a measurement with six bytes: temperature MSB, LSB, CRC, humidity MSB, LSB, CRC;
the CRC is CRC-8, polynomial 0x31, initial 0xFF, over each two-byte word (datasheets:
SHT4x 4.5, SHT3x-DIS 4.12). T = -45 + 175 * raw / 65535 on both; RH = -6 + 125 * raw / 65535
on the SHT4x, 100 * raw / 65535 on the SHT3x.
"""

import time

from app.sensors import Sensor

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


_SHT4X_MEASURE = b"\xfd"  # high repeatability, no heater
_SHT3X_MEASURE = b"\x24\x00"  # single shot, high repeatability, no clock stretching
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
        time.sleep_ms(_MEASURE_MS)
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
