"""What a virtual board is wired to, on the host: the models' clock and their couplings.

The models (the modem, the sensors, the appliance's use) run in the runner's process, not in
the device's: the device's heap holds the firmware and the chip's own modules, nothing else.
A `World` is the models' view of one board:

* the clock: `now_us` follows the device's virtual clock; models schedule work with `at`, and
  the device asks for the next of it before it lets its own clock pass (see musket_sim.coupling);
* the wires: a model answers on a UART (`attach_uart`, its `receive(data)` gets every firmware
  write, `uart_feed` sends bytes back), watches output pins (`watch_pin`), drives input pins
  (`drive_pin`, `pulse_pin`), sits on the I2C bus (`attach_i2c`, `read(reg, n)` /
  `write(reg, data)`) or sets an ADC input (`set_adc`: a level, or a callable read at each
  conversion);
* real I/O: a model carrying bytes to real sockets registers as a poller (`add_poller`).

What a model sends to the device waits in `outbox` until the coupling delivers it, at the
virtual time it was sent.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any, Protocol

US_PER_MS = 1000
US_PER_S = 1_000_000
# Longest real wait for a reply a model expects from a real server before the clock moves on.
NET_WAIT_MS = 200
QUIET_FOREVER = 1 << 60  # no work scheduled at all (a small int on the device, too)

# Deliveries to the device, in the order they were made.
UART_DATA = "uart"
PIN_LEVEL = "pin"
PIN_PULSES = "pulses"


class Rng:
    """xorshift64*: the same sequence for a given seed, whatever runs it."""

    _MASK = (1 << 64) - 1

    def __init__(self, seed: int) -> None:
        self.state = (seed * 0x9E3779B97F4A7C15 + 1) & self._MASK or 1

    def next(self) -> int:
        x = self.state
        x ^= x >> 12
        x ^= (x << 25) & self._MASK
        x ^= x >> 27
        self.state = x
        return (x * 0x2545F4914F6CDD1D) & self._MASK

    def below(self, n: int) -> int:
        return self.next() % n if n > 0 else 0

    def bytes(self, n: int) -> bytes:
        return bytes(self.next() & 0xFF for _ in range(n))


class Poller(Protocol):
    def live(self) -> bool:
        """Whether the model has real I/O open now (anything may arrive at any step)."""

    def poll(self) -> None:
        """Takes in whatever the model's real sockets have, without waiting."""

    def awaiting(self) -> list:
        """Real sockets on which the model expects an answer now (the firmware just sent)."""


class World:
    """One board's surroundings. `settings` are the run's: seed, epoch, the board as the
    device sees it (`board_device`), the modem scenario and the usage scenario."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.seed = settings.get("seed", 0)
        self.epoch = settings.get("epoch", 0)
        self.board = settings["board_device"]
        self.rng = Rng(self.seed * 1000003)
        self.now_us = 0
        self._events: list[tuple[int, int, Callable[[], None]]] = []
        self._serial = 0
        self.outbox: list[tuple] = []
        self.uart_peers: dict[int, Any] = {}
        self.uart_bauds: dict[int, int] = {}  # uart id -> the firmware's baud rate, while open
        self.pin_watchers: dict[int, list[Callable[[int], None]]] = {}
        self.driven_levels: dict[int, int] = {}
        self.i2c_devices: dict[tuple[int, int], Any] = {}
        # pin -> a level (microvolts, held forever, read exactly), or a callable returning
        # (microvolts, held until (virtual us), whether the chip's ADC noise applies).
        self.adc_sources: dict[int, int | Callable[[], tuple[int, int, bool]]] = {}
        self.pollers: list[Poller] = []
        # Figures models keep for the run's report, by model ("modem": {...}).
        self.figures: dict[str, dict] = {}
        # Called at every boot of the device with its reset cause (see `device_boots`).
        self.boot_hooks: list[Callable[[int], None]] = []
        # Called when the run ends: models let go of what they hold on the host (sockets).
        self.close_hooks: list[Callable[[], None]] = []

    # -- clock -----------------------------------------------------------------------------

    def at(self, due_us: int, callback: Callable[[], None]) -> None:
        self._serial += 1
        heappush(self._events, (int(due_us), self._serial, callback))

    def epoch_seconds(self) -> int:
        return self.epoch + self.now_us // US_PER_S

    def next_due(self) -> int | None:
        return self._events[0][0] if self._events else None

    def quiet_until(self) -> int:
        """Until when the models have nothing for the device, unless it sends them something:
        the next scheduled work, or now while a model has real I/O open."""
        if self.outbox or any(p.live() for p in self.pollers):
            return self.now_us
        return self._events[0][0] if self._events else QUIET_FOREVER

    def run_until(self, target_us: int) -> int:
        """Fires the models' work up to `target_us`, stopping at the first instant that sends
        something to the device; returns the clock (that instant, or the target)."""
        while not self.outbox and self._events and self._events[0][0] <= target_us:
            due = self._events[0][0]
            self.now_us = max(self.now_us, due)
            while self._events and self._events[0][0] <= due:
                heappop(self._events)[2]()
            if self.pollers:
                # Bytes that just reached a real server: its answer is taken in now, at this
                # instant, not after the clock ran on to the device's next timer.
                self.poll_real()
        if not self.outbox:
            self.now_us = max(self.now_us, target_us)
        return self.now_us

    # -- real I/O ----------------------------------------------------------------------------

    def add_poller(self, poller: Poller) -> None:
        self.pollers.append(poller)

    def poll_real(self) -> None:
        """Takes in what real sockets have; holds still (up to NET_WAIT_MS of real time) while a
        model waits for a server's answer, so that it arrives in virtual time as it would
        over the air rather than after the firmware gave up."""
        if not self.pollers:
            return
        for p in self.pollers:
            p.poll()
        waiting = [sock for p in self.pollers for sock in p.awaiting()]
        if waiting:
            select.select(waiting, [], [], NET_WAIT_MS / 1000)
            for p in self.pollers:
                p.poll()

    # -- wires: the device's side calls these through the coupling ----------------------------

    def device_boots(self, reset_cause: int) -> None:
        """The device starts a boot: UARTs are closed until the firmware opens them again."""
        self.uart_bauds.clear()
        for hook in self.boot_hooks:
            hook(reset_cause)

    def firmware_wrote(self, uart_id: int, data: bytes) -> None:
        peer = self.uart_peers.get(uart_id)
        if peer is not None:
            peer.receive(data)

    def firmware_opened_uart(self, uart_id: int, baud: int) -> None:
        # baud 0: the firmware closed it (UART.deinit)
        if baud:
            self.uart_bauds[uart_id] = baud
        else:
            self.uart_bauds.pop(uart_id, None)

    def firmware_drove(self, pin: int, level: int) -> None:
        for callback in self.pin_watchers.get(pin, ()):
            callback(level)

    def i2c_device(self, bus: int, address: int) -> Any:
        return self.i2c_devices.get((bus, address))

    def i2c_scan(self, bus: int) -> list[int]:
        return sorted(a for (b, a) in self.i2c_devices if b == bus)

    def adc_read(self, pin: int) -> tuple[int, int, bool]:
        source = self.adc_sources.get(pin, 0)
        return source() if callable(source) else (source, QUIET_FOREVER, False)

    # -- wires: models call these ------------------------------------------------------------

    def attach_uart(self, uart_id: int, model: Any) -> None:
        self.uart_peers[uart_id] = model

    def uart_baud(self, uart_id: int) -> int | None:
        """The baud rate the firmware opened this UART at; None while it is closed."""
        return self.uart_bauds.get(uart_id)

    def uart_feed(self, uart_id: int, data: bytes) -> None:
        self.outbox.append((UART_DATA, uart_id, bytes(data)))

    def watch_pin(self, pin: int, callback: Callable[[int], None]) -> None:
        self.pin_watchers.setdefault(pin, []).append(callback)

    def drive_pin(self, pin: int, level: int) -> None:
        level = 1 if level else 0
        self.driven_levels[pin] = level
        self.outbox.append((PIN_LEVEL, pin, level))

    def pulse_pin(self, pin: int, count: int) -> None:
        """`count` short high pulses on an input pin that rests low, all at this instant."""
        if count > 0:
            self.driven_levels[pin] = 0
            self.outbox.append((PIN_PULSES, pin, count))

    def attach_i2c(self, bus: int, address: int, model: Any) -> None:
        self.i2c_devices[(bus, address)] = model

    def set_adc(self, pin: int, source: int | Callable[[], tuple[int, int, bool]]) -> None:
        self.adc_sources[pin] = source

    def close(self) -> None:
        for hook in self.close_hooks:
            hook()
        self.close_hooks.clear()

    def take_outbox(self) -> list[tuple]:
        out, self.outbox = self.outbox, []
        return out
