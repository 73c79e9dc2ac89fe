# Diagnostics callable from the console's raw REPL, for provisioning stations and field
# technicians (musket provision, musket console): each prints one JSON line.
#
#   mpremote connect <port> exec "from app import diag; diag.modem()"
#
# They drive the modem directly, so they are meant for when the application is stopped
# (Ctrl-C at the console stops main.py, as on any MicroPython board).
import asyncio
import json

from app import board as board_mod
from app import log as log_mod

_REPORT_TIMEOUT_MS = 60000  # power-on, sync and a few reads, even on a slow modem


async def _modem_report(with_signal):
    from app.modem import open_modem
    from app.modem.at import ATTimeout

    log = log_mod.Log(capacity=8, echo=False)
    driver = open_modem(board_mod.load(), log)
    try:
        try:
            await driver.power_on()
        except ATTimeout:
            # Interrupting the application can leave the modem mid power-on or mid PWRKEY
            # press; one power cycle puts it in a known state.
            await driver.power_cycle()
        report = {"family": driver.FAMILY, "identity": await driver.identity()}
        if with_signal:
            report["signal"] = await driver.signal()
            report["registration"] = await driver.registration()
        return report
    finally:
        driver.ch.stop()


def _release_application():
    # The application stopped at Ctrl-C, but its parts (modem stack, buffers) are still
    # referenced from the registry of running parts (app.parts) and from its tasks in
    # asyncio's queues; drop both so the diagnostics, and whatever the console runs next, have
    # the heap to work in.
    import gc

    from app import parts

    parts.clear()
    asyncio.new_event_loop()
    gc.collect()


def modem(with_signal=True):
    # Identity (ICCID, IMEI, IMSI, firmware revision) and, by default, signal and
    # registration; an error is reported in the JSON, never raised at the console.
    _release_application()
    try:
        report = asyncio.run(asyncio.wait_for_ms(_modem_report(with_signal),
                                                 _REPORT_TIMEOUT_MS))
        report["ok"] = True
    except Exception as e:  # noqa: BLE001 - the caller reads the reason from the JSON line
        report = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
    _release_application()
    print(json.dumps(report))
    return report
