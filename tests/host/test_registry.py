"""The registry on SQLite and on a real PostgreSQL server: SIM import (all or nothing), SIM
states, binding rules, exports, the append-only audit log, migrations."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import text

from musket import broker
from musket.errors import SchemaMismatch
from musket.registry import (
    Actor,
    BindingRefused,
    Registry,
    RegistryError,
    SimImportError,
    binding,
    database,
)
from musket.registry.schema import metadata

ACTOR = Actor("line-1", "ana")
# Valid ICCIDs (Luhn check digit last) and IMEIs.
ICCIDS = ["8949019237115905561", "8949017000000000001", "89882280666012345678"]
IMEI_A, IMEI_B = "869715053990670", "490154203237518"




@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "registry.sqlite")
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def registry(location):
    with Registry.open(location, migrate=True) as r:
        yield r


def write_csv(tmp_path, rows, header="ICCID,plan,state", name="sims.csv"):
    path = tmp_path / name
    path.write_text(header + "\n" + "".join(line + "\n" for line in rows))
    return path


def unit(iccid=ICCIDS[0], imei=IMEI_A, chip="240ac4000001"):
    return binding.Unit(iccid=iccid, imei=imei, imsi="262014389323129", chip_id=chip,
                        board="esp32-sim7080g")


def credentials(secret="s3cret-for-test"):
    return binding.Credentials(broker.hash_password(secret), "ab" * 32)


def bind(registry, u, **options):
    with registry.transaction() as conn:
        plan = binding.plan(conn, u, **options)
        action = binding.apply(conn, plan, u, ACTOR, new_credentials=credentials(),
                               reason=options.get("rebind") and "swap", changes={})
    return plan, action


# -- schema and migrations ---------------------------------------------------------------


def test_migrations_build_the_schema_the_code_queries(registry):
    with registry.engine.connect() as conn:
        from sqlalchemy import inspect

        inspector = inspect(conn)
        for table in metadata.sorted_tables:
            columns = {c["name"] for c in inspector.get_columns(table.name)}
            assert columns == set(table.columns.keys()), table.name
    assert database.current_revision(registry.engine) == database.head_revision()


def test_opening_again_keeps_data_and_migrate_reports_nothing_to_do(location, tmp_path):
    with Registry.open(location, migrate=True) as r:
        r.import_sims(write_csv(tmp_path, [f"{ICCIDS[0]},iot-1,inventory"]), ACTOR)
    engine = database.connect(location)
    try:
        before, after = database.migrate(engine)
    finally:
        engine.dispose()
    assert before == after == database.head_revision()
    with Registry.open(location) as r:
        assert [s.iccid for s in r.sims()] == [ICCIDS[0]]


def test_a_registry_without_schema_is_refused_when_not_migrating(location):
    with pytest.raises(SchemaMismatch, match="no registry at|has no schema yet") as refused:
        Registry.open(location)
    assert "musket registry migrate" in refused.value.hint


def test_postgres_urls_get_the_psycopg_driver():
    assert database.resolve("postgresql://u@db/musket").startswith("postgresql+psycopg://")
    assert database.resolve("reg.sqlite").startswith("sqlite:////")


# -- SIM import ----------------------------------------------------------------------------


def test_import_sims_and_list_them_by_state(registry, tmp_path):
    path = write_csv(tmp_path, [f"{ICCIDS[0]},iot-1,inventory", f" {ICCIDS[1]} ,iot-2,Retired",
                                "", f"{ICCIDS[2]},iot-1,inventory"])
    summary = registry.import_sims(path, ACTOR)
    assert (summary.count, summary.first, summary.last) == (3, ICCIDS[0], ICCIDS[2])
    assert summary.states == {"inventory": 2, "retired": 1}
    assert {s.iccid for s in registry.sims("inventory")} == {ICCIDS[0], ICCIDS[2]}
    assert [s.iccid for s in registry.sims("retired")] == [ICCIDS[1]]
    (entry,) = registry.audit()
    assert (entry.action, entry.station, entry.operator) == ("sim-import", "line-1", "ana")
    assert entry.changes["sims"] == 3


@pytest.mark.parametrize("rows, problem", [
    ([f"{ICCIDS[0][:-1]}0,iot,inventory"],
     "line 3: ICCID 8949019237115905560: wrong check digit"),
    (["89490192371159055,iot,inventory"], "line 3: ICCID 89490192371159055: 17 digits"),
    (["89490192371159055G1,iot,inventory"], "only digits allowed"),
    (["7949019237115905561,iot,inventory"], "does not start with 89"),
    ([f"{ICCIDS[0]},,inventory"], "empty plan"),
    ([f"{ICCIDS[0]},iot,bound"], "state 'bound' cannot be imported"),
    ([f"{ICCIDS[0]},iot"], "line 3: 2 columns"),
    ([f"{ICCIDS[0]},iot,inventory", f"{ICCIDS[1]},iot,inventory",
      f"{ICCIDS[0]},iot,inventory"], "line 5: ICCID 8949019237115905561 appears again (first "
                                     "on line 3)"),
])
def test_a_bad_row_imports_nothing_and_is_named_by_line(registry, tmp_path, rows, problem):
    good = f"{ICCIDS[2]},iot,inventory"
    with pytest.raises(SimImportError) as caught:
        registry.import_sims(write_csv(tmp_path, [good, *rows]), ACTOR)
    assert any(problem in p for p in caught.value.problems), caught.value.problems
    assert "nothing imported" in str(caught.value)
    assert registry.sims() == [] and registry.audit() == []


def test_every_bad_row_is_reported(registry, tmp_path):
    path = write_csv(tmp_path, ["123,iot,inventory", f"{ICCIDS[0]},iot,inventory",
                                f"{ICCIDS[1]},iot,lost"])
    with pytest.raises(SimImportError) as caught:
        registry.import_sims(path, ACTOR)
    assert [p.split(":")[0] for p in caught.value.problems] == ["line 2", "line 4"]


def test_iccids_already_in_the_registry_are_refused(registry, tmp_path):
    registry.import_sims(write_csv(tmp_path, [f"{ICCIDS[0]},iot,inventory"]), ACTOR)
    again = write_csv(tmp_path, [f"{ICCIDS[1]},iot,inventory", f"{ICCIDS[0]},iot,inventory"],
                      name="again.csv")
    with pytest.raises(SimImportError, match=r"line 3: ICCID 8949019237115905561 is already "
                                             r"in the registry \(state inventory\)"):
        registry.import_sims(again, ACTOR)
    assert [s.iccid for s in registry.sims()] == [ICCIDS[0]]


@pytest.mark.parametrize("content, problem", [
    (b"", "empty file"),
    (b"iccid,plan\n8949019237115905561,iot\n", "missing column state"),
    (b"iccid,plan,state\n", "no SIMs in the file"),
    (b"iccid,plan,state\n\xff\xfe,x,y\n", "not UTF-8"),
])
def test_malformed_files_are_refused(registry, tmp_path, content, problem):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(SimImportError, match=problem):
        registry.import_sims(path, ACTOR)


def test_a_bom_and_extra_columns_are_accepted(registry, tmp_path):
    path = tmp_path / "vendor.csv"
    path.write_bytes(("\ufeffMSISDN, ICCID ,State,Plan\n+4915100000001,%s,inventory,iot-eu\n"
                      % ICCIDS[0]).encode())
    registry.import_sims(path, ACTOR)
    (sim,) = registry.sims()
    assert (sim.iccid, sim.plan, sim.state) == (ICCIDS[0], "iot-eu", "inventory")


# -- SIM states ----------------------------------------------------------------------------


def test_sim_state_changes_follow_the_lifecycle_and_are_audited(registry, tmp_path):
    registry.import_sims(write_csv(tmp_path, [f"{ICCIDS[0]},iot,inventory"]), ACTOR)
    registry.set_sim_state(ICCIDS[0], "suspended", "vendor hold", ACTOR)
    with pytest.raises(RegistryError, match="is in no device"):
        registry.set_sim_state(ICCIDS[0], "active", "try", ACTOR)
    registry.set_sim_state(ICCIDS[0], "retired", "lost in stores", ACTOR)
    with pytest.raises(RegistryError, match="retired for good"):
        registry.set_sim_state(ICCIDS[0], "inventory", "found", ACTOR)
    with pytest.raises(RegistryError, match="reason is required"):
        registry.set_sim_state(ICCIDS[0], "inventory", " ", ACTOR)
    states = [e.changes["state"] for e in registry.audit(subject=ICCIDS[0])]
    assert states == [["inventory", "suspended"], ["suspended", "retired"]]


def test_a_bound_sim_can_be_activated_but_not_put_back_in_stock(registry, tmp_path):
    registry.import_sims(write_csv(tmp_path, [f"{ICCIDS[0]},iot,inventory"]), ACTOR)
    bind(registry, unit())
    assert registry.set_sim_state(ICCIDS[0], "active", "shipped", ACTOR).state == "active"
    with pytest.raises(RegistryError, match="not allowed"):
        registry.set_sim_state(ICCIDS[0], "inventory", "x", ACTOR)
    registry.set_sim_state(ICCIDS[0], "suspended", "unpaid", ACTOR)
    with pytest.raises(RegistryError, match="is in device"):
        registry.set_sim_state(ICCIDS[0], "retired", "x", ACTOR)


# -- binding -------------------------------------------------------------------------------


def test_a_seeded_id_choice_gives_the_same_ids_and_a_taken_one_is_drawn_again(tmp_path):
    import random

    drawn = []
    for run in ("a", "b"):
        with Registry.open(tmp_path / f"{run}.sqlite", migrate=True) as registry:
            registry.import_sims(write_csv(tmp_path, [f"{i},iot,inventory" for i in ICCIDS],
                                           name=f"{run}.csv"), ACTOR)
            seeded = random.Random("line-7")
            first, _ = bind(registry, unit(), id_choice=seeded.choice)
            # The same draws again: the first ID is taken, so the next one is drawn.
            again = random.Random("line-7")
            second, _ = bind(registry, unit(iccid=ICCIDS[1], imei=IMEI_B, chip="240ac4000002"),
                             id_choice=again.choice)
            drawn.append((first.device_id, second.device_id))
    assert drawn[0] == drawn[1]
    assert drawn[0][0] != drawn[0][1] and drawn[0][1].startswith("msk-")


def test_binding_rules(registry, tmp_path):
    registry.import_sims(write_csv(tmp_path, [f"{i},iot,inventory" for i in ICCIDS]), ACTOR)
    plan, action = bind(registry, unit())
    assert action == "provision" and plan.new_device
    assert plan.device_id.startswith("msk-") and len(plan.device_id) == 12

    # The same unit again: the same device, nothing new.
    with registry.transaction() as conn:
        again = binding.plan(conn, unit())
    assert (again.device_id, again.new_device, again.swap_from) == (plan.device_id, False, None)
    assert again.secret_check == "ab" * 32

    refusals = {
        "SIM 8949019237115905561 is already bound to device " + plan.device_id:
            unit(imei=IMEI_B, chip="240ac4000002"),
        f"IMEI {IMEI_A} is already bound to device {plan.device_id}":
            unit(iccid=ICCIDS[1], chip="240ac4000002"),
        "its modem now reports IMEI " + IMEI_B: unit(iccid=ICCIDS[1], imei=IMEI_B),
        "a SIM swap run again with --rebind": unit(iccid=ICCIDS[1]),
    }
    counts = registry.counts()
    for reason, other in refusals.items():
        with pytest.raises(BindingRefused, match=reason.replace("a SIM swap", "for a SIM swap")):
            bind(registry, other)
    assert registry.counts() == counts

    plan2, action = bind(registry, unit(iccid=ICCIDS[1]), rebind=True)
    assert (action, plan2.swap_from) == ("rebind", ICCIDS[0])
    device = registry.device(plan.device_id)
    assert device.iccid == ICCIDS[1]
    assert [(b.iccid, b.unbound is not None) for b in device.bindings] == [
        (ICCIDS[0], True), (ICCIDS[1], False)]
    assert registry.sim(ICCIDS[0]).state == "retired"
    assert registry.device(ICCIDS[1]).device_id == plan.device_id
    assert registry.device(IMEI_A).device_id == plan.device_id


def test_unknown_and_unavailable_sims(registry, tmp_path):
    with pytest.raises(BindingRefused, match="not in the registry"):
        bind(registry, unit())
    registry.import_sims(write_csv(tmp_path, [f"{ICCIDS[1]},iot,suspended"]), ACTOR)
    with pytest.raises(BindingRefused, match="is suspended, not in inventory"):
        bind(registry, unit(iccid=ICCIDS[1]))
    plan, _ = bind(registry, unit(), allow_unknown_sim=True)
    assert registry.sim(ICCIDS[0]).state == "bound"
    assert [e.action for e in registry.audit()][-2:] == ["sim-added", "provision"]


# -- exports and the audit log -------------------------------------------------------------


def test_exports(registry, tmp_path):
    registry.import_sims(write_csv(tmp_path, [f"{i},iot,inventory" for i in ICCIDS]), ACTOR)
    plan_a, _ = bind(registry, unit())
    plan_b, _ = bind(registry, unit(iccid=ICCIDS[2], imei=IMEI_B, chip="240ac4000002"))
    out = io.StringIO()
    assert registry.write_bindings_csv(out) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["iccid", "imei", "device_id"]
    assert sorted(rows[1:]) == sorted([[ICCIDS[0], IMEI_A, plan_a.device_id],
                                       [ICCIDS[2], IMEI_B, plan_b.device_id]])

    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    assert registry.export_broker(passwd, acl) == 2
    lines = dict(line.split(":", 1) for line in passwd.read_text().splitlines())
    assert set(lines) == {plan_a.device_id, plan_b.device_id}
    assert broker.verify_password("s3cret-for-test", lines[plan_a.device_id])
    assert passwd.stat().st_mode & 0o777 == 0o600
    assert f"topic write d/{plan_a.device_id}/t" in acl.read_text()


def test_the_audit_log_is_append_only_in_the_database(registry, tmp_path):
    registry.import_sims(write_csv(tmp_path, [f"{ICCIDS[0]},iot,inventory"]), ACTOR)
    for statement in ("UPDATE audit SET operator = 'mallory'", "DELETE FROM audit"):
        with pytest.raises(RegistryError, match="append-only"):
            with registry.transaction() as conn:
                conn.execute(text(statement))
    assert [e.operator for e in registry.audit()] == ["ana"]


def test_no_secret_or_hash_leaves_the_registry_in_records(registry, tmp_path):
    registry.import_sims(write_csv(tmp_path, [f"{ICCIDS[0]},iot,inventory"]), ACTOR)
    plan, _ = bind(registry, unit())
    dumped = json.dumps([registry.device(plan.device_id).as_dict(),
                         [e.as_dict() for e in registry.audit()],
                         [d.as_dict() for d in registry.devices()]])
    stored = registry.secret_hash(plan.device_id)
    assert stored.startswith("$7$")
    assert stored not in dumped and "$7$" not in dumped and "ab" * 32 not in dumped
    assert "s3cret" not in dumped
