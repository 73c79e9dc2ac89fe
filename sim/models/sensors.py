# The sensor model: the board's surroundings for its sensors, following a usage script
# (appliance.py) on the virtual clock, in the host runner's process (musket_sim.coupling).
# An SHT4x on the I2C bus (temperature with a daily swing, humidity, noise, CRC'd replies),
# the current sensor's ADC level (brews and short blips over a noisy zero), the supply
# divider, and flow-meter pulses on the pulse pin in bursts.
# Faults from the scenario: I2C NACK, bad CRC, a stuck value, a disconnected wire.
#
# ADC levels are worked out when the firmware reads them, with the time they hold until;
# pulses are scheduled in 250 ms chunks. The appliance outlives the controller: a reset of the
# ESP32 leaves the use under way going on; a power cut stops it.
from musket_sim.models import appliance
from musket_sim.models.world import QUIET_FOREVER

_US = 1000000
_CHUNK_S = 0.25
_NEVER = ("none", 1e12, 0, 0.0)  # a channel with nothing scheduled
_PWRON_RESET = 1  # machine.PWRON_RESET: the board was powered up
_FOREVER_S = 1e12


def _crc8(b0, b1):
    crc = 0xFF
    for byte in (b0, b1):
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc




class Sht4x:
    def __init__(self, world):
        self.world = world
        self.last = None

    def write(self, reg, data):
        if appliance.fault_at(self.world.usage, "sht", self.world.now_s()) == "nack":
            raise OSError(19)

    def read(self, reg, n):
        fault = appliance.fault_at(self.world.usage, "sht", self.world.now_s())
        if fault == "nack":
            raise OSError(19)
        if fault == "stuck" and self.last is not None:
            return self.last
        u = self.world.usage
        day_frac = (self.world.now_s() % 86400) / 86400
        # A daily swing: coolest at 04:00, warmest at 16:00 (a triangle, no math module).
        swing = 1 - 4 * abs(((day_frac + 1 - 16 / 24) % 1) - 0.5)
        t = u["temp_c"] + 2.5 * swing + self.world.noise(0.05)
        rh = u["rh"] - 4 * swing + self.world.noise(0.3)
        rt = max(0, min(65535, int((t + 45) * 65535 / 175)))
        rrh = max(0, min(65535, int((rh + 6) * 65535 / 125)))
        out = bytearray(6)
        out[0], out[1] = rt >> 8, rt & 0xFF
        out[3], out[4] = rrh >> 8, rrh & 0xFF
        out[2] = _crc8(out[0], out[1])
        out[5] = _crc8(out[3], out[4])
        if fault == "crc":
            out[5] ^= 0x01
        self.last = bytes(out)
        return self.last


class World:
    # The sensors' surroundings; `wires` is the board's (musket_sim.models.world.World).
    def __init__(self, wires, settings):
        self.wires = wires
        board = settings["board_device"]
        self.usage = settings["usage"]
        self.seed = settings.get("seed", 0)
        self.rng = appliance.Rng(self.seed * 31)
        pins = board.get("pins", {})
        self.current_pin = pins.get("current_adc")
        self.supply_pin = pins.get("supply_adc")
        self.flow_pin = pins.get("flow_pulse")
        self.current_spec = self.supply_spec = None
        for s in board.get("sensors", ()):
            if s["kind"] == "adc_current":
                self.current_spec = s
            elif s["kind"] == "adc_supply":
                self.supply_spec = s
            elif s["kind"] in ("sht4x", "sht3x"):
                wires.attach_i2c(board["i2c"]["id"], s["address"], Sht4x(self))
        if self.current_pin is not None:
            wires.set_adc(self.current_pin, self.current_uv)
        if self.supply_pin is not None:
            wires.set_adc(self.supply_pin, self.supply_uv)
        self.stuck = {}
        self.flow_gen = 0  # bumps when the power is cut: pulses scheduled before are void
        self._start_uses()
        wires.boot_hooks.append(self._esp32_boots)

    def now_s(self):
        return self.wires.now_us / _US

    def _start_uses(self):
        # Uses start from now on; one under way when the power came back is not played.
        now = self.now_s()
        self.brews = appliance.events(self.usage, self.seed, "current", now)
        self.brew = next(self.brews, _NEVER)
        if self.flow_pin is not None:
            self.flow_gen += 1
            self.flows = appliance.events(self.usage, self.seed, "flow", now)
            self._schedule_flow(next(self.flows, None))

    def _esp32_boots(self, reset_cause):
        if reset_cause == _PWRON_RESET:
            self._start_uses()

    def noise(self, peak):
        return (self.rng.next() % 2001 - 1000) * peak / 1000

    # ADC inputs: the level at the pin and until when it holds (virtual us), so the device
    # converts it again without asking until then; the chip's ADC adds its own noise unless
    # the level is one a fault holds exactly (a dead or frozen sensor reads the same).

    def _analog(self, name, uv, until_s):
        now = self.now_s()
        for f in self.usage["faults"]:
            if f["sensor"] == name:
                for edge in (f["at"], f["at"] + f["for"]):
                    if now < edge < until_s:
                        until_s = edge
        until = int(until_s * _US) if until_s < _FOREVER_S else QUIET_FOREVER
        fault = appliance.fault_at(self.usage, name, now)
        if fault == "disconnected":
            return 0, until, False
        if fault == "stuck":
            return self.stuck.setdefault(name, int(uv)), until, False
        self.stuck.pop(name, None)
        return int(uv), until, True

    def current_uv(self):
        now = self.now_s()
        while now >= self.brew[1] + self.brew[2]:
            self.brew = next(self.brews, _NEVER)
        started = now >= self.brew[1]
        amps = self.brew[3] if started else 0.0
        spec = self.current_spec
        v = spec["zero_volts"] + amps * spec["volts_per_amp"]
        edge = self.brew[1] + self.brew[2] if started else self.brew[1]
        return self._analog("current", v * _US, edge)

    def supply_uv(self):
        v = self.usage["supply_v"] / self.supply_spec["divider_ratio"]
        return self._analog("supply", v * _US, _FOREVER_S)

    # -- flow pulses -------------------------------------------------------------------

    def _schedule_flow(self, ev):
        if ev is None:
            return
        _, start, seconds, pulses = ev
        chunks = max(1, int(seconds / _CHUNK_S))
        self.flow = (start, chunks, pulses)
        self.wires.at(int(start * _US), self._chunk_cb(0, self.flow_gen))

    def _chunk_cb(self, i, gen):
        def fire():
            if gen != self.flow_gen:
                return
            start, chunks, pulses = self.flow
            self.wires.pulse_pin(self.flow_pin, (i + 1) * pulses // chunks - i * pulses // chunks)
            if i + 1 < chunks:
                self.wires.at(int((start + (i + 1) * _CHUNK_S) * _US), self._chunk_cb(i + 1, gen))
            else:
                self._schedule_flow(next(self.flows, None))
        return fire


def install(wires, settings):
    # The sensors' surroundings, attached to the board before the device's first boot.
    return World(wires, settings)
