"""Power is cut at every flash write of a store update in turn, on the virtual flash under the
real littlefs of each interpreter; after the reboot the store reads back the old value or the
new one, never garbage, never an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from checksuite import call

OLD = b"old:" + bytes(range(256)) * 2  # several littlefs program units, so a write can tear
NEW = b"new:" + bytes(range(255, -1, -1)) * 2

# The update and the reads run on the device (checks/store_steps.py).
STEPS = [Path(__file__).parent / "checks" / "store_steps.py"]
READ = call("store_steps.read_record", OLD, NEW)
APPEND = call("store_steps.append_three")
LIST = call("store_steps.list_events")


def _script_line(result, prefix: str) -> str:
    lines = [ln for ln in result.script_output.splitlines() if ln.startswith(prefix)]
    assert lines, f"no {prefix} line in device output:\n{result.script_output}\n{result.errors}"
    return lines[-1]


def _cut_points(device, script: str) -> int:
    """Runs the update once uncut on a copy of the image to count its flash writes."""
    saved = device.image.read_bytes()
    result = device.run(60, script=script)
    assert not result.errors, result.errors
    device.image.write_bytes(saved)
    return result.flash_writes


def test_store_record_reads_old_or_new_after_a_cut_at_every_write(make_device):
    device = make_device(device_modules=STEPS)
    first = device.run(60, script=call("store_steps.write_record", OLD))
    assert _script_line(first, "WROTE") and not first.errors
    baseline = device.image.read_bytes()
    update = call("store_steps.write_record", NEW)
    writes = _cut_points(device, update)
    assert writes >= 3, "an update is a temp file, its data and a rename: several writes"
    for cut in range(1, writes + 1):
        device.image.write_bytes(baseline)
        cut_run = device.run(60, script=update, cut_at_write=cut, max_boots=1)
        assert cut_run.exit_reason == "power_cut", (cut, cut_run.boot_log)
        after = device.run(60, script=READ)
        line = _script_line(after, "VALUE")
        assert line in ("VALUE old", "VALUE new"), f"cut at write {cut}/{writes}: {line}"
    # Uncut, the same update reads back new: the cuts above were what kept the old value.
    device.image.write_bytes(baseline)
    device.run(60, script=update)
    assert _script_line(device.run(60, script=READ),
                        "VALUE") == "VALUE new"


def test_journal_keeps_every_committed_event_after_a_cut_at_every_write(make_device):
    device = make_device(device_modules=STEPS)
    baseline = device.image.read_bytes()
    writes = _cut_points(device, APPEND)
    counts = []
    for cut in range(1, writes + 1):
        device.image.write_bytes(baseline)
        device.run(60, script=APPEND, cut_at_write=cut, max_boots=1)
        after = device.run(60, script=LIST)
        events = eval(_script_line(after, "EVENTS")[len("EVENTS "):])  # a list literal
        # Whatever survived is a prefix of what was appended: nothing torn, nothing reordered.
        assert events == [f"event-{i}" for i in range(1, len(events) + 1)], (cut, events)
        counts.append(len(events))
    assert counts == sorted(counts), "a later cut never keeps fewer events than an earlier one"
    assert counts[0] == 0 and counts[-1] >= 2


@pytest.mark.parametrize("cut", [1, 2])
def test_a_cut_ends_the_boot_and_the_next_boot_runs_the_application(make_device, cut):
    device = make_device(device_modules=STEPS)
    result = device.run(3600, script=call("store_steps.write_record", NEW), cut_at_write=cut)
    reasons = [b.reason for b in result.boot_log]
    assert reasons[0] == "power_cut"
    assert result.boot_log[1].reset_cause == 1  # PWRON_RESET
    assert result.boot_log[1].mode == "app"
    assert not result.errors, result.errors


def test_random_power_cuts_are_repeatable_and_never_corrupt_the_store(make_device):
    """A day of rebooting the application with power failing at random flash writes: the
    boot count in the store only ever moves forward and the same seed fails at the same
    writes."""
    runs = []
    for name in ("a", "b"):
        device = make_device(name=name, seed=11)
        result = device.run(3600, cut_chance=0.3, max_boots=12)
        assert result.errors == [], result.errors
        runs.append([b.reason for b in result.boot_log])
        counts = [int(line.split("boot #")[1].split(",")[0])
                  for line in device.console_log.read_text().splitlines() if "boot #" in line]
        assert counts == sorted(counts) and counts[0] == 1, counts
    assert runs[0] == runs[1]
    assert "power_cut" in runs[0]
