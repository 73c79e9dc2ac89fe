"""Runs the checks of a check module on the device, one result line per check.

A check is a module-level function named ``check_<name>``; it fails by raising (or by
returning False) and passes otherwise. A coroutine function runs under asyncio. A module
can define ``run_check(fn)`` to give each check its own fixtures (a fresh fake modem, an empty
folder) and run it. Whatever a check prints comes before its result line:

    @check <name> pass
    @check <name> fail "<message and traceback, as a JSON string>"

and ``@check-done`` ends the run. A failing check does not stop the next one; a check with
no result line did not run (the process died), which the host reports as a failure.
"""

import gc
import io
import json
import sys

MARK = "@check"
PREFIX = "check_"


def trace(e):
    """The exception's traceback as text, the way each interpreter prints it."""
    buf = io.StringIO()
    if hasattr(sys, "print_exception"):
        sys.print_exception(e, buf)
    else:
        import traceback  # type: ignore[import-not-found]  # CPython's, for CPython only

        buf.write("".join(traceback.format_exception(type(e), e, e.__traceback__)))
    return buf.getvalue()


def call(fn, *args):
    """fn(*args); a coroutine runs to its end under asyncio. Returns what fn returned."""
    result = fn(*args)
    if hasattr(result, "send"):
        import asyncio

        result = asyncio.run(result)
    return result


def names(module, skip=()):
    """The module's checks, by name, sorted; none whose name starts with one in `skip`."""
    found = []
    for attr in dir(module):
        if attr.startswith(PREFIX):
            name = attr[len(PREFIX):]
            if not any(name.startswith(s) for s in skip):
                found.append(name)
    return sorted(found)


def run(module, label="", skip=()):
    """Runs each check of `module` in turn, but those whose name starts with one in `skip`;
    `label` goes before each name reported. The names come from the module itself, so that
    the script that starts a run stays a line or two (a 64K heap compiles it)."""
    hook = getattr(module, "run_check", None)
    for name in names(module, skip):
        gc.collect()
        fn = getattr(module, PREFIX + name)
        try:
            if (hook(fn) if hook else call(fn)) is False:
                raise AssertionError("the check returned False")
            print(MARK, label + name, "pass")
        except Exception as e:  # noqa: BLE001 - a failing check is reported, the next one runs
            print(MARK, label + name, "fail", json.dumps(trace(e)))
    print(MARK + "-done")
