"""The status screen's identity row (musket.console.view): the application's version and,
apart from it, the firmware image's, as the unit's status's "identity" section says
(firmware/app/console_status.py); the unit itself answering it is
tests/console_device/test_console_image.py."""

from __future__ import annotations

import re

from musket.console.view import status_screen, to_ansi

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _identity_row(status: dict) -> str:
    screen = ANSI.sub("", to_ansi(status_screen(status), 160))
    return next(ln for ln in screen.splitlines() if ln.startswith("identity ")).split(
        "identity", 1)[1].strip()


def test_a_unit_that_confirmed_an_image_update_shows_its_image_beside_its_firmware():
    row = _identity_row({"identity": {"device_id": "dev-a", "firmware": "1.0.0",
                                      "image": "1.29.0"}})
    assert row == "device dev-a  firmware 1.0.0  image 1.29.0"


def test_a_unit_on_the_image_flashed_on_the_line_says_factory():
    row = _identity_row({"identity": {"device_id": "dev-a", "firmware": "1.0.0",
                                      "image": None}})
    assert row == "device dev-a  firmware 1.0.0  image factory"


def test_a_firmware_that_does_not_report_its_image_gets_no_image_at_all():
    row = _identity_row({"identity": {"device_id": "dev-a", "firmware": "1.0.0"}})
    assert row == "device dev-a  firmware 1.0.0"
