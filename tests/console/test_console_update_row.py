"""The status screen's update row (musket.console.view): where an update stands on the unit,
as its status's "ota" section says (firmware/app/ota/download.py); the unit itself answering
it mid-download is tests/console_device/test_update_progress.py."""

from __future__ import annotations

import re

from musket.console.view import status_screen, to_ansi

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _update_row(status: dict) -> str | None:
    screen = ANSI.sub("", to_ansi(status_screen(status), 120))
    lines = [ln for ln in screen.splitlines() if ln.startswith("update ")]
    return lines[0].split("update", 1)[1].strip() if lines else None


def test_a_download_shows_its_campaign_version_and_bytes_held_of_the_bundle():
    ota = {"state": "downloading", "campaign": "fix-1-1", "version": "1.1.0", "at": 31200,
           "size": 62415}
    row = _update_row({"ota": ota})
    assert row == "downloading  campaign fix-1-1  version 1.1.0  held 31,200 of 62,415 bytes (49%)"


def test_an_idle_unit_says_so_and_a_finished_download_has_no_byte_count():
    assert _update_row({"ota": {"state": "idle"}}) == "idle"
    row = _update_row({"ota": {"state": "downloaded", "campaign": "c1", "version": "1.1.0"}})
    assert row == "downloaded  campaign c1  version 1.1.0"


def test_a_unit_without_the_section_or_with_garbage_in_it_gets_no_row():
    assert _update_row({}) is None
    assert _update_row({"ota": "broken"}) is None
    assert _update_row({"ota": {"state": "downloading", "at": "x", "size": 0}}) == "downloading"
