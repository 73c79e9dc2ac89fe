"""Shared fixtures: firmware tests run once per interpreter, on a fresh virtual device."""

from __future__ import annotations

import pytest
from checksuite import DEFAULT_BOARD, modules

from musket.firmware import default_cache_dir
from musket_sim import VirtualDevice
from musket_sim.device import INTERPRETERS


@pytest.fixture(params=INTERPRETERS)
def interpreter(request) -> str:
    """The interpreter a firmware test runs under: the real MicroPython unix port (64K heap)
    and CPython, so the same firmware is shown to work on both."""
    return request.param


@pytest.fixture
def make_device(tmp_path, interpreter):
    """Makes virtual devices with fresh flash images under the test's temporary folder."""
    made = []

    def make(board: str = DEFAULT_BOARD, name: str = "dev", device_modules=(),
             **kwargs) -> VirtualDevice:
        """`device_modules`: paths of device-side test modules to put on the flash, compiled
        for the interpreter as the firmware is (see checksuite.modules)."""
        files = dict(kwargs.pop("files", None) or {})
        files.update(modules(interpreter, device_modules, default_cache_dir()))
        device = VirtualDevice(board, tmp_path / name, interpreter=interpreter, **kwargs)
        device.create_flash(files)
        made.append(device)
        return device

    yield make
    for device in made:
        device.close()


# Fixtures shared by a module's items; a worker builds one the first time one of its items
# needs it, so items split over workers would build it once per worker (the demo's two runs,
# a console device booted per interpreter, a week of pages served) for nothing.
SHARED_SCOPES = ("module", "package")


def pytest_itemcollected(item):
    """Puts a module's items that share a module-scoped fixture in one xdist group (one per
    value of a parametrized one), so that fixture is built once, not once per worker."""
    if item.get_closest_marker("xdist_group"):
        return
    defs = getattr(item, "_fixtureinfo", None)
    shared = sorted(name for name, chain in (defs.name2fixturedefs.items() if defs else ())
                    if chain and chain[-1].scope in SHARED_SCOPES)
    if not shared:
        return
    params = getattr(item, "callspec", None)
    values = [str(params.params[name]) for name in shared
              if params is not None and name in params.params]
    # Group names may not hold '@', '[' or ']' (xdist reads the group after the last '@').
    name = "::".join([item.nodeid.split("::")[0], *values])
    item.add_marker(pytest.mark.xdist_group(name.translate(str.maketrans("@[]", "___"))))


# After pytest's own ordering by shared fixtures, which would undo it.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Puts the items in a group (a shared fixture, a check suite's run) and the items marked
    slow before the others, each keeping its order, so a module's grouped items stay together.
    Under --dist loadgroup the biggest groups are handed out first, then the single items in
    this order: the long runs start early rather than leaving one worker to finish one alone
    at the end."""
    items.sort(key=lambda item: not item.get_closest_marker("xdist_group")
               and item.get_closest_marker("slow") is None)
