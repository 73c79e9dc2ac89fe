# A version on trial (the update's boot stage booted it: otaboot.py) confirms itself only
# when it works: it booted, its counters opened, and the broker acknowledged a session within
# ota_trial_s. Otherwise it asks for the previous version back and resets. The update's
# state (otastate.py) is loaded only for that one decision, so it holds no heap while the
# device runs.
import asyncio

import machine
from app.ota.download import outcome_report


def _decide(confirm, reason=None):
    import otastate

    state = otastate.load()
    if state.get("phase") != otastate.TRIAL:
        return None
    steps = otastate
    if state["trial"].get("kind") == otastate.IMAGE:
        from app.ota import slots  # a firmware image: otadata says which slot boots

        steps = slots
    if confirm:
        steps.confirm(state)
    else:
        steps.rollback(state, reason)
    return state


async def _acknowledged(session_up, download):
    await session_up.wait()
    await download.phases_sent.wait()  # the fleet heard the update's steps: the state drops them


async def run(session_up, counters_ok, trial_s, download, log, identity=None):
    """`session_up`: an event the uplink sets when the broker acknowledged its session (and
    then the reports of the update's steps);
    `download`: app.ota.download's Download, whose reports tell the fleet;
    `identity`: the status's identity section, whose firmware (or image, for an image
    update) becomes the confirmed version (the uplink sends the status again behind the
    confirmed report)."""
    if not counters_ok:
        reason = "the counters did not open"
    else:
        try:
            await asyncio.wait_for(_acknowledged(session_up, download), trial_s)
            state = _decide(True)
            if state is not None:
                log.info("ota", "version %s confirmed" % state["version"])
                if identity is not None:
                    identity["firmware"] = state["version"]
                    if state.get("image_version"):
                        identity["image"] = state["image_version"]
                report = outcome_report(state)
                if report is not None:
                    download.reports.append(report)
                    download.status["state"] = "confirmed"
            return
        except asyncio.TimeoutError:
            reason = "no broker session in %d s" % trial_s
    log.error("ota", "version on trial rolled back: %s" % reason)
    if _decide(False, reason) is not None:
        machine.reset()
