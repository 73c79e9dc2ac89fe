"""The registry side of the console and the end-of-line test, on SQLite and PostgreSQL: SIM
swaps recorded (or queued, or refused with nothing lost), end-of-line results, the shippable
mark and the yield report."""

from __future__ import annotations

import json

import pytest
from console_units import ACTOR, ICCIDS

from musket.console import rebind
from musket.errors import ExitCode
from musket.registry import Actor, BindingRefused, RegistryRefused, binding
from musket.registry.eol import EolResult, record, results, shippable, yield_report

IMEIS = ["869715053990670", "490154203237518"]


def provision(registry, iccid, imei, chip):
    unit = binding.Unit(iccid=iccid, imei=imei, imsi=None, chip_id=chip, board="esp32-sim7080g")
    with registry.transaction() as conn:
        plan = binding.plan(conn, unit)
        binding.apply(conn, plan, unit, ACTOR)
    return plan.device_id


def swap(device_id, old, new):
    return rebind.Swap.seen_now(device_id, old, new, "Rui Costa", "SIM cracked", "van-7")


def test_a_swap_is_a_rebind_with_the_old_and_new_iccid_and_the_technician(registry):
    device_id = provision(registry, ICCIDS[0], IMEIS[0], "240ac4000001")
    outcome = rebind.record(registry, swap(device_id, ICCIDS[0], ICCIDS[1]))
    assert outcome.state == "recorded"
    device = registry.device(device_id)
    assert device.iccid == ICCIDS[1]
    assert [(b.iccid, b.unbound is not None) for b in device.bindings] == [
        (ICCIDS[0], True), (ICCIDS[1], False)]
    assert registry.sim(ICCIDS[0]).state == "retired"
    entry = registry.audit(subject=device_id)[-1]
    assert (entry.action, entry.operator, entry.station) == ("rebind", "Rui Costa", "van-7")
    assert entry.changes["iccid"] == [ICCIDS[0], ICCIDS[1]]
    assert entry.changes["reason"] == "SIM cracked"
    # Seen again (the next session, a retried sync): nothing more is written.
    audit_rows = len(registry.audit())
    assert rebind.record(registry, swap(device_id, ICCIDS[0], ICCIDS[1])).state == "unchanged"
    assert len(registry.audit()) == audit_rows


def test_a_sim_bound_elsewhere_is_refused_and_the_swap_is_kept(registry, location, tmp_path):
    first = provision(registry, ICCIDS[0], IMEIS[0], "240ac4000001")
    provision(registry, ICCIDS[1], IMEIS[1], "240ac4000002")
    counts = registry.counts()
    queue = tmp_path / "queue.jsonl"
    with pytest.raises(BindingRefused, match=f"SIM {ICCIDS[1]} is already bound") as e:
        rebind.record_or_queue(location, swap(first, ICCIDS[0], ICCIDS[1]), queue)
    assert e.value.exit_code == ExitCode.REGISTRY_REFUSED
    assert "kept in" in e.value.hint
    assert registry.counts() == counts
    assert [s.new_iccid for s in rebind.pending(queue)] == [ICCIDS[1]]
    # A sync refuses it again and keeps it.
    outcomes = rebind.sync(location, queue)
    assert [o.state for o in outcomes] == ["refused"]
    assert len(rebind.pending(queue)) == 1 and registry.counts() == counts


def test_a_swap_waits_in_the_queue_until_the_registry_is_reachable(registry, location,
                                                                     tmp_path):
    device_id = provision(registry, ICCIDS[0], IMEIS[0], "240ac4000001")
    queue = tmp_path / "queue.jsonl"
    missing = str(tmp_path / "nowhere" / "registry.sqlite")
    outcome = rebind.record_or_queue(missing, swap(device_id, ICCIDS[0], ICCIDS[2]), queue)
    assert outcome.state == "queued" and str(queue) in outcome.detail
    assert registry.device(device_id).iccid == ICCIDS[0]
    outcomes = rebind.sync(location, queue)
    assert [o.state for o in outcomes] == ["recorded"]
    assert registry.device(device_id).iccid == ICCIDS[2]
    assert rebind.pending(queue) == []


def test_a_damaged_queue_line_is_a_clear_error_and_nothing_is_lost(tmp_path, location):
    queue = tmp_path / "queue.jsonl"
    queue.write_text('{"device_id": "msk-1"}\nnot json\n')
    with pytest.raises(rebind.BadInput, match="line 1"):
        rebind.sync(location, queue)
    assert queue.read_text() == '{"device_id": "msk-1"}\nnot json\n'


def test_only_a_passed_unit_is_shippable_and_its_latest_test_counts(registry):
    device_id = provision(registry, ICCIDS[0], IMEIS[0], "240ac4000001")
    failed = record(registry, EolResult(device_id, False, ["SENSOR-TEMP-OPEN"],
                                        {"sensors": {"temp": None}}, 12.5), ACTOR)
    assert not shippable(registry, device_id)
    assert failed.id and failed.station == "line-1"
    passed = record(registry, EolResult(device_id, True, [], {"signal": {"rsrp": -92}}, 9.0),
                    Actor("eol-2", "bo"))
    assert shippable(registry, device_id)
    assert [(r.passed, r.codes) for r in results(registry, device_id)] == [
        (False, ["SENSOR-TEMP-OPEN"]), (True, [])]
    assert results(registry, device_id)[1].measurements == {"signal": {"rsrp": -92}}
    assert [a.action for a in registry.audit(subject=device_id)][-2:] == ["eol-fail",
                                                                         "eol-pass"]
    assert passed.as_dict()["at"]


def test_an_unknown_device_gets_no_result(registry):
    with pytest.raises(RegistryRefused, match="not in the registry"):
        record(registry, EolResult("msk-nobody", True, [], {}, 1.0), ACTOR)
    assert not shippable(registry, "msk-nobody")


def test_the_yield_report_counts_per_station_and_day(registry):
    a = provision(registry, ICCIDS[0], IMEIS[0], "240ac4000001")
    b = provision(registry, ICCIDS[1], IMEIS[1], "240ac4000002")
    record(registry, EolResult(a, False, ["SENSOR-TEMP-OPEN"], {}, 1.0), ACTOR)
    record(registry, EolResult(b, False, ["SENSOR-TEMP-OPEN", "MODEM-NO-REG"], {}, 1.0), ACTOR)
    record(registry, EolResult(a, True, [], {}, 1.0), ACTOR)
    record(registry, EolResult(b, True, [], {}, 1.0), Actor("line-2", "bo"))
    rows = [r.as_dict() for r in yield_report(registry)]
    assert len(rows) == 2
    line1 = next(r for r in rows if r["station"] == "line-1")
    line2 = next(r for r in rows if r["station"] == "line-2")
    assert (line1["passed"], line1["failed"]) == (1, 2)
    assert line1["codes"] == {"SENSOR-TEMP-OPEN": 2, "MODEM-NO-REG": 1}
    assert (line2["passed"], line2["failed"], line2["yield"]) == (1, 0, 1.0)
    assert json.dumps(rows)
    assert yield_report(registry, station="line-9") == []
