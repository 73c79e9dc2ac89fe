"""Pulse flow meter on a Pin IRQ: pulses -> litres with the meter's K-factor (pulses/litre).

The IRQ handler only increments a counter (no allocation, so it is safe as a hard IRQ on the
ESP32); read() takes the count since the last read.
"""

import machine

from app.sensors import Sensor


class FlowPulse(Sensor):
    name = "flow"

    def __init__(self, pin, k_factor):
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
