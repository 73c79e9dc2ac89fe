"""musket's virtual device: the firmware, unchanged, under MicroPython or CPython, on a
modelled board with a virtual clock, virtual flash and a console on a pty."""

from musket_sim.device import RunResult, SimError, VirtualDevice

__all__ = ["RunResult", "SimError", "VirtualDevice"]
