"""`musket console` and `musket factory` through click's runner, where no unit is needed: bad
input, a missing port, the queue of SIM swaps, the yield report."""

from __future__ import annotations

import json

from click.testing import CliRunner
from console_units import ACTOR, ICCIDS, make_registry

from musket.cli import main
from musket.console import rebind
from musket.errors import ExitCode
from musket.registry import Registry, binding
from musket.registry.eol import EolResult, record


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_a_command_without_a_port_is_a_usage_error():
    out = invoke("console", "status")
    assert out.exit_code == ExitCode.USAGE
    assert "--port" in out.output


def test_an_unknown_port_is_exit_code_5_with_a_hint(tmp_path):
    out = invoke("console", "status", "--port", str(tmp_path / "ttyUSB7"), "--json")
    assert out.exit_code == ExitCode.UNIT_SILENT
    assert "cannot open console" in out.output and "hint: check the USB cable" in out.output


def test_sync_applies_a_queued_swap_and_reports_it(tmp_path):
    registry_file = make_registry(tmp_path)
    unit = binding.Unit(iccid=ICCIDS[0], imei="869715053990670", imsi=None,
                        chip_id="240ac4000001", board="esp32-sim7080g")
    with Registry.open(registry_file) as registry, registry.transaction() as conn:
        plan = binding.plan(conn, unit)
        binding.apply(conn, plan, unit, ACTOR)
    queue = tmp_path / "queue.jsonl"
    rebind.append(queue, rebind.Swap.seen_now(plan.device_id, ICCIDS[0], ICCIDS[1], "Rui",
                                              "SIM cracked", "van-7"))
    out = invoke("console", "--registry", str(registry_file), "--queue", str(queue), "sync",
                 "--json")
    assert out.exit_code == 0, out.output
    (applied,) = json.loads(out.output)
    assert (applied["state"], applied["old_iccid"], applied["new_iccid"]) == (
        "recorded", ICCIDS[0], ICCIDS[1])
    again = invoke("console", "sync", "--registry", str(registry_file), "--queue", str(queue))
    assert again.exit_code == 0 and again.output.startswith("no queued SIM swaps")


def test_the_yield_report_as_json_and_a_bad_day(tmp_path):
    registry_file = make_registry(tmp_path)
    unit = binding.Unit(iccid=ICCIDS[0], imei="869715053990670", imsi=None,
                        chip_id="240ac4000001", board="esp32-sim7080g")
    with Registry.open(registry_file) as registry:
        with registry.transaction() as conn:
            plan = binding.plan(conn, unit)
            binding.apply(conn, plan, unit, ACTOR)
        record(registry, EolResult(plan.device_id, False, ["SENSOR_MISSING:sht"], {}, 2.0),
               ACTOR)
    out = invoke("factory", "yield", "--registry", str(registry_file), "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["codes"] == {"SENSOR_MISSING:sht": 1}
    table = invoke("factory", "yield", "--registry", str(registry_file))
    assert "SENSOR_MISSING:sht ×1" in table.output
    bad = invoke("factory", "yield", "--registry", str(registry_file), "--since", "yesterday")
    assert bad.exit_code == ExitCode.USAGE and "expected a date" in bad.output


def test_watching_a_broker_needs_the_service_password(tmp_path, monkeypatch):
    monkeypatch.delenv("MUSKET_SERVICE_PASSWORD", raising=False)
    out = invoke("factory", "verify", "--port", str(tmp_path / "tty"), "--broker-host",
                 "127.0.0.1", "--no-tls", "--registry", str(make_registry(tmp_path)))
    assert out.exit_code == ExitCode.BAD_INPUT
    assert "MUSKET_SERVICE_PASSWORD" in out.output
