"""`musket registry ...` through click's test runner, on a SQLite registry: one clear line for
bad input, --json that scripts can read and that holds no secret, the broker export."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from musket.cli import main
from musket.errors import ExitCode
from musket.registry import Actor, Registry, binding

ICCIDS = ["8949019237115905561", "8949017000000000001"]
IMEI = "869715053990670"


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSKET_REGISTRY", str(tmp_path / "reg.sqlite"))
    monkeypatch.setenv("MUSKET_STATION", "line-1")
    monkeypatch.setenv("MUSKET_OPERATOR", "ana")

    def invoke(*args: str, code: int = 0):
        result = CliRunner().invoke(main, list(args))
        assert result.exit_code == code, result.output
        return result.output

    invoke("registry", "migrate")
    return invoke


@pytest.fixture
def sims_csv(tmp_path):
    path = tmp_path / "sims.csv"
    path.write_text("ICCID,plan,state\n" + "".join(f"{i},iot-eu,inventory\n" for i in ICCIDS))
    return path


def bound_device(tmp_path) -> str:
    with Registry.open(tmp_path / "reg.sqlite") as registry, registry.transaction() as conn:
        unit = binding.Unit(ICCIDS[0], IMEI, None, "240ac4000001", "esp32-sim7080g")
        plan = binding.plan(conn, unit)
        binding.apply(conn, plan, unit, Actor("line-1", "ana"),
                      new_credentials=binding.Credentials("$7$101$c2FsdA==$aGFzaA==",
                                                          "cd" * 32))
    return plan.device_id


def test_import_list_state_and_audit(run, sims_csv):
    assert run("registry", "import-sims", str(sims_csv)) == "imported 2 SIMs (2 inventory)\n"
    sims = json.loads(run("registry", "list", "--sims", "--json"))
    assert [(s["iccid"], s["state"]) for s in sims] == [(i, "inventory") for i in sorted(ICCIDS)]
    out = run("registry", "sim-state", ICCIDS[0], "suspended", "--reason", "vendor hold")
    assert out == f"SIM {ICCIDS[0]}: inventory → suspended\n"
    audit = json.loads(run("registry", "audit", "--json"))
    assert [(a["action"], a["station"], a["operator"]) for a in audit] == [
        ("sim-import", "line-1", "ana"), ("sim-state", "line-1", "ana")]
    assert "sim-state 8949019237115905561: state inventory → suspended, reason vendor hold" in run(
        "registry", "audit", "--subject", ICCIDS[0])


def test_bad_csv_is_one_clear_error_and_imports_nothing(run, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(f"ICCID,plan,state\n{ICCIDS[0]},iot,inventory\n{ICCIDS[0][:-1]}7,iot,x\n")
    out = run("registry", "import-sims", str(bad), code=ExitCode.BAD_INPUT)
    assert out.startswith("error: bad.csv: nothing imported, 1 bad row: line 3: ICCID "
                          "8949019237115905567: wrong check digit (Luhn)")
    assert json.loads(run("registry", "list", "--sims", "--json")) == []


def test_show_and_exports_of_a_bound_device(run, sims_csv, tmp_path):
    run("registry", "import-sims", str(sims_csv))
    device_id = bound_device(tmp_path)
    shown = json.loads(run("registry", "show", IMEI, "--json"))
    assert (shown["device_id"], shown["iccid"], shown["sim_state"]) == (device_id, ICCIDS[0],
                                                                       "bound")
    listed = run("registry", "list", "--json")
    for text in (json.dumps(shown), listed, run("registry", "audit", "--json")):
        assert "$7$" not in text and "cd" * 32 not in text
    assert run("registry", "export-bindings") == (f"iccid,imei,device_id\n"
                                                  f"{ICCIDS[0]},{IMEI},{device_id}\n")
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    out = run("registry", "export-broker", "--passwd", str(passwd), "--acl", str(acl))
    assert out.startswith("1 device:")
    assert passwd.read_text() == f"{device_id}:$7$101$c2FsdA==$aGFzaA==\n"
    assert f"user {device_id}" in acl.read_text()
    assert "no device or SIM 'nope'" in run("registry", "show", "nope",
                                                code=ExitCode.REGISTRY_REFUSED)


def test_migrate_reports_the_revision(run, tmp_path):
    other = str(tmp_path / "new-registry.sqlite")
    from musket.registry import database

    head = database.head_revision()
    assert f"schema empty → {head}" in run("registry", "migrate", "--registry", other)
    assert "nothing to do" in run("registry", "migrate", "--registry", other)


def test_provision_refuses_options_that_do_not_fit(run, tmp_path):
    out = run("provision", "--port", "/dev/null", "--broker-host", "h", "--tls",
              code=ExitCode.BAD_INPUT)
    assert "TLS needs the broker's CA certificate" in out
    out = run("provision", "--port", "/dev/null", "--broker-host", "h", "--rebind",
              code=ExitCode.BAD_INPUT)
    assert "--rebind needs --reason" in out
