"""The device side of the uplink's acceptance tests (checks/app_with_events.py): the whole
application with counter events committed at a steady pace. The module goes on the device's
flash (`make_device(device_modules=[APP])`); `device_script` is the script that starts it."""

from pathlib import Path

from checksuite import call

APP = Path(__file__).parent / "checks" / "app_with_events.py"


def device_script(event_every_s: int = 0, events_until_s: int = 0) -> str:
    return call("app_with_events.start", event_every_s, events_until_s)
