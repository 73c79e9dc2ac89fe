# Device-side steps for the simulator's failure tests (tests/sim/test_sim_failures.py): an
# interpreter that dies, and an application whose loop stalls once under the watchdog.
import asyncio
import sys
import time

STALLED = "stalled"  # marks that the stall happened, so the next boot runs clean


def die_after(seconds):
    """Sleeps, then kills the interpreter outright; prints "NOT REACHED" if it lives on."""
    time.sleep(seconds)
    if sys.implementation.name == "micropython":
        import os

        os.system("kill -9 $PPID")
    else:
        import signal  # type: ignore[import-not-found]  # CPython's, for CPython only

        signal.raise_signal(signal.SIGKILL)
    time.sleep(1)
    print("NOT REACHED")


async def _stall(at_s):
    await asyncio.sleep(at_s)
    open(STALLED, "w").close()
    time.sleep(60)  # blocks every task: the watchdog resets the chip


async def _app(at_s):
    from app import main

    try:
        open(STALLED).close()
    except OSError:
        asyncio.create_task(_stall(at_s))
    await main.App().main()


def stalling_app(at_s):
    """The application, with its loop stalled `at_s` seconds after the first boot."""
    asyncio.run(_app(at_s))
