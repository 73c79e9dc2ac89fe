# The modem's control lines, as the board wires them: PWRKEY (a press switches the modem on,
# a longer one off), RESET, STATUS (the modem says it runs) and a supply switch, each
# optional but PWRKEY. The board's timings (pwrkey_on_ms, pwrkey_off_ms, boot_ms,
# power_off_ms) live here with them; what the modem says on its UART is the driver's business.
import asyncio
import time

import machine

from micropython import const


_POLL_MS = const(50)  # STATUS line polling


def _pin(spec, mode=-1):
    # A control line from /board.json, {"pin": n, "active": "high"|"low"}: `active` is the
    # GPIO level that asserts it, as the ESP32 sees it after any transistor.
    if spec:
        return machine.Pin(spec["pin"], mode), 0 if spec.get("active") == "low" else 1
    return None


def _drive(line, on):
    # Asserts or releases a control line; a line the board lacks (None) is left alone.
    if line:
        line[0].init(machine.Pin.OUT, value=line[1] if on else 1 - line[1])


class Power:
    def __init__(self, board):
        timing = board["modem"]
        self.on_ms = timing["pwrkey_on_ms"]  # PWRKEY press that switches the modem on
        self.off_ms = timing["pwrkey_off_ms"]  # and the one that switches it off
        self.boot_ms = timing["boot_ms"]  # from the on press to the UART answering
        self.off_wait_ms = timing["power_off_ms"]  # from the off press to STATUS falling
        pins = board["pins"]
        self._key = _pin(pins.get("pwrkey"))
        self._status = _pin(pins.get("status"), machine.Pin.IN)
        self._reset = _pin(pins.get("reset"))
        self._supply = _pin(pins.get("modem_power"))  # driven once power_on/off decide
        self.has_reset = self._reset is not None
        self.has_supply = self._supply is not None
        _drive(self._key, False)
        _drive(self._reset, False)

    def is_on(self):
        # From the STATUS line; None when the board has none.
        return self._status[0].value() == self._status[1] if self._status else None

    def supply(self, on):
        _drive(self._supply, on)

    async def press(self, ms):
        # PWRKEY held for ms.
        await self._pulse(self._key, ms)

    async def reset(self, ms):
        # RESET held for ms.
        await self._pulse(self._reset, ms)

    async def _pulse(self, line, ms):
        if line is None:
            from app.modem.replies import ModemError

            raise ModemError("power: the board has no such line")
        _drive(line, True)
        await asyncio.sleep_ms(ms)
        _drive(line, False)

    async def wait(self, on, ms):
        # True once STATUS reads `on`, False if not within ms, None without a STATUS line.
        if self._status is None:
            return None
        t0 = time.ticks_ms()
        while self.is_on() != on:
            if time.ticks_diff(time.ticks_ms(), t0) >= ms:
                return False
            await asyncio.sleep_ms(_POLL_MS)
        return True
