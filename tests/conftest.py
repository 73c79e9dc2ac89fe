"""Shared fixtures: firmware tests run once per interpreter, on a fresh virtual device."""

from __future__ import annotations

import pytest
from checksuite import DEFAULT_BOARD, modules

from musket_sim import VirtualDevice
from musket_sim.device import INTERPRETERS


@pytest.fixture(params=INTERPRETERS)
def interpreter(request) -> str:
    """The interpreter a firmware test runs under: the real MicroPython unix port (64K heap)
    and CPython, so the same firmware is shown to work on both."""
    return request.param


@pytest.fixture
def make_device(tmp_path, tmp_path_factory, interpreter):
    """Makes virtual devices with fresh flash images under the test's temporary folder."""
    made = []

    def make(board: str = DEFAULT_BOARD, name: str = "dev", device_modules=(),
             **kwargs) -> VirtualDevice:
        """`device_modules`: paths of device-side test modules to put on the flash, compiled
        for the interpreter as the firmware is (see checksuite.modules)."""
        files = dict(kwargs.pop("files", None) or {})
        # Compiled once per worker: its base folder is its own under xdist.
        cache = tmp_path_factory.getbasetemp() / ".mpy-cache-tests"
        files.update(modules(interpreter, device_modules, cache))
        device = VirtualDevice(board, tmp_path / name, interpreter=interpreter, **kwargs)
        device.create_flash(files)
        made.append(device)
        return device

    yield make
    for device in made:
        device.close()
