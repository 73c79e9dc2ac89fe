"""The host's end of the coupling between a virtual device and its models.

The device process holds the firmware and the chip's modules; the models of what the board is
wired to (musket_sim.models) live here, in the runner's process, in a `World`. One Unix socket
joins them for a boot (frames in sim/chip/_simwire.py). The synchronisation is conservative:
the models never run ahead of the device's clock. Before the device lets its clock pass it
sends IDLE with the time it wants to reach; the models run up to the first instant at which
they send the device something, and the device moves to that instant and takes it in (or to
its target, if nothing came). UART writes, pin changes, I2C transfers and ADC conversions reach
the models at the device's clock as they happen.

A model that raises is a failure of the simulator, not of the device: the device is told (a
FAILURE frame ends its boot with reason "sim_failure") and `failure` keeps the traceback.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
import traceback
from pathlib import Path
from types import ModuleType

from musket_sim.models.world import PIN_LEVEL, QUIET_FOREVER, UART_DATA, World

_WIRE_PATH = os.path.join(os.path.dirname(__file__), "chip", "_simwire.py")


def _load_wire() -> ModuleType:
    spec = importlib.util.spec_from_file_location("musket_sim._simwire", _WIRE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


W = _load_wire()
_ACCEPT_TIMEOUT_S = 120.0  # a device that never connects has died before its first step


class ModelFailure(RuntimeError):
    """A model raised while serving the device."""


class Coupling:
    """Serves one boot of the device: `name` goes into the device's settings; `serve()` runs
    in a thread of its own until the device's process closes its end."""

    _serial = 0

    def __init__(self, world: World, clock_path: Path) -> None:
        Coupling._serial += 1
        self.world = world
        # The device's clock as it last moved on its own (see _simwire), for a boot that dies.
        self.clock_path = clock_path
        clock_path.write_bytes(world.now_us.to_bytes(8, "little"))
        self.name = f"musket-sim-{os.getpid()}-{Coupling._serial}-{id(self):x}"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind("\0" + self.name)
        self.listener.listen(1)
        self.listener.settimeout(_ACCEPT_TIMEOUT_S)
        self.device_us = world.now_us  # the device's clock, as its last frame gave it
        self.failure: str | None = None
        self._thread: threading.Thread | None = None

    def device_clock(self) -> int:
        """How far the device's clock got: its last frame, or its last step on its own."""
        try:
            stepped = int.from_bytes(self.clock_path.read_bytes()[:8], "little")
        except OSError:
            stepped = 0
        return max(self.device_us, stepped)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve, name=self.name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Ends the boot's coupling: waits for its thread (the device's process has ended)."""
        try:
            self.listener.close()
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- serving -----------------------------------------------------------------------------

    def serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return  # the device died before it connected; the runner reports that
        conn.settimeout(None)
        with conn:
            reader = conn.makefile("rb")
            try:
                while True:
                    head = reader.read(W.HEADER)
                    if len(head) < W.HEADER:
                        return
                    n = head[1] | (head[2] << 8)
                    body = reader.read(n) if n else b""
                    if len(body) < n:
                        return
                    out = self._handle(head[0], body)
                    if out:
                        conn.sendall(out)
            except ModelFailure as e:
                self.failure = str(e)
                text = self.failure.encode()[-W.MAX_PAYLOAD:]
                try:
                    conn.sendall(_frame(W.FAILURE, text))
                except OSError:
                    pass
            except (ConnectionError, OSError):
                return  # the device's process ended mid-frame (killed, power cut)

    def _handle(self, kind: int, body: bytes) -> bytes:
        now = int.from_bytes(body[0:8], "little")
        if now < self.device_us:
            raise ModelFailure(f"the device's clock ran backwards: {now} us after "
                               f"{self.device_us} us")
        self.device_us = now
        world = self.world
        world.now_us = max(world.now_us, now)
        try:
            return self._dispatch(kind, body, now)
        except ModelFailure:
            raise
        except Exception as e:  # noqa: BLE001 - any model error is the simulator's failure
            raise ModelFailure(f"a model failed at {now / 1e6:.6f} s: "
                               + "".join(traceback.format_exception(e))) from e

    def _dispatch(self, kind: int, body: bytes, now: int) -> bytes:
        world = self.world
        if kind == W.IDLE:
            target = int.from_bytes(body[8:16], "little")
            world.poll_real()
            if body[16]:
                # The device moves to the time given: that is its clock from now on.
                self.device_us = world.run_until(target)
                return self._time(self.device_us)
            # Only how long a paced device may wait: until the models' next work is due.
            due = world.next_due()
            t = now if world.outbox else max(now, min(QUIET_FOREVER if due is None else due,
                                                      target))
            return _frame(W.TIME, t.to_bytes(8, "little") + b"\0\0"
                          + world.quiet_until().to_bytes(8, "little"))
        if kind == W.UART_WRITE:
            world.firmware_wrote(body[8], body[9:])
            return _frame(W.QUIET, world.quiet_until().to_bytes(8, "little"))
        if kind == W.PIN_SET:
            world.firmware_drove(body[8], body[9])
            return self._time(now)
        if kind == W.UART_OPEN:
            world.firmware_opened_uart(body[8], int.from_bytes(body[9:13], "little"))
            return b""
        if kind == W.HELLO:
            world.device_boots(body[8])
            for pin, level in world.driven_levels.items():
                world.outbox.insert(0, (PIN_LEVEL, pin, level))
            return self._time(now)
        if kind in (W.I2C_READ, W.I2C_WRITE):
            return self._i2c(kind, body)
        if kind == W.I2C_SCAN:
            return _frame(W.REPLY, b"\0" + bytes(world.i2c_scan(body[8])))
        if kind == W.ADC_READ:
            uv, until, noisy = world.adc_read(body[8])
            uv = max(0, min(int(uv), 0xFFFFFFFF))
            return _frame(W.REPLY, b"\0" + uv.to_bytes(4, "little") + until.to_bytes(8, "little")
                          + (b"\1" if noisy else b"\0"))
        raise ModelFailure(f"the device sent an unknown frame type {kind}")

    def _i2c(self, kind: int, body: bytes) -> bytes:
        bus, address = body[8], body[9]
        register: int | None = int.from_bytes(body[10:12], "little")
        if register == W.NO_REGISTER:
            register = None
        model = self.world.i2c_device(bus, address)
        if model is None:  # ENODEV: no ACK, as the ESP32 port reports it; nobody there at all
            return _frame(W.REPLY, bytes([19, W.NO_DEVICE]))
        try:
            if kind == W.I2C_READ:
                n = int.from_bytes(body[12:14], "little")
                return _frame(W.REPLY, b"\0" + bytes(model.read(register, n))[:n])
            model.write(register, bytes(body[12:]))
            return _frame(W.REPLY, b"\0")
        except OSError as e:
            return _frame(W.REPLY, bytes([(e.errno or 5) & 0xFF]))

    def _time(self, t: int) -> bytes:
        """TIME at t, then what the models sent the device at that instant."""
        frames = []
        for delivery in self.world.take_outbox():
            kind, what = delivery[0], delivery[1]
            if kind == UART_DATA:
                data = delivery[2]
                step = W.MAX_PAYLOAD - 1
                for i in range(0, len(data), step):
                    frames.append(_frame(W.UART_DATA, bytes([what]) + data[i:i + step]))
            elif kind == PIN_LEVEL:
                frames.append(_frame(W.PIN_LEVEL, bytes([what, delivery[2]])))
            else:
                count = delivery[2]
                while count:
                    k = min(count, 0xFFFF)
                    frames.append(_frame(W.PIN_PULSES, bytes([what]) + k.to_bytes(2, "little")))
                    count -= k
        head = _frame(W.TIME, t.to_bytes(8, "little") + len(frames).to_bytes(2, "little")
                      + self.world.quiet_until().to_bytes(8, "little"))
        return head + b"".join(frames)


def _frame(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + len(payload).to_bytes(2, "little") + payload
