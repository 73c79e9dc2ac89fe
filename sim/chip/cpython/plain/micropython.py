"""MicroPython's own `micropython` module, for firmware modules run by plain CPython.

The firmware writes `from micropython import const` as it would on the device; under plain
CPython (host tools that use the firmware's own code, test runners of device-side checks)
this module answers instead. The virtual device's CPython side builds its `micropython` from
this one (sim/chip/cpython/mp_modules.py), adding `schedule` on the virtual clock. Put this folder
on the path with `musket_sim.chip.cpython.plain.pythonpath()`.
"""


def const(x):
    return x


def native(f):
    return f


viper = native


def mem_info(verbose=None):
    print("heap: CPython (no fixed heap)")


def qstr_info(verbose=None):
    return None


def stack_use():
    return 0


def heap_lock():
    return 0


def heap_unlock():
    return 0


def kbd_intr(char):
    return None


def alloc_emergency_exception_buf(size):
    return None


def opt_level(level=None):
    return 0


def schedule(func, arg):
    # No interrupts here to defer from: the call runs at once.
    func(arg)
