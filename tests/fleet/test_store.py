"""The fleet's store on SQLite and PostgreSQL: telemetry made by the firmware's own codec is
stored once however often it arrives, gaps are found, every kind of bad input is counted with
its reason and stored as nothing, and a device's status opens and closes its sessions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fleethelp import device_iccid, status, telemetry
from sqlalchemy import func, select

from musket.fleet import views
from musket.fleet.store import FleetStore, Incoming
from musket.registry.fleet_schema import (
    fleet_events,
    fleet_messages,
    fleet_readings,
    fleet_usage,
)

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def msg(topic, payload, minutes=0, retain=False):
    return Incoming(topic, payload, retain, T0 + timedelta(minutes=minutes))


def count(registry, table, **where):
    with registry.engine.connect() as conn:
        q = select(func.count()).select_from(table)
        for k, v in where.items():
            q = q.where(table.c[k] == v)
        return conn.execute(q).scalar_one()


def test_each_message_is_stored_once_and_gaps_are_found(registry):
    store = FleetStore(registry.engine)
    m1 = telemetry(1, events=[(1, "brews", 1), (2, "brews", 2)],
                   readings=[(1, {"temp": 21.5})])
    m2 = telemetry(2, events=[(3, "brews", 3)])
    m5 = telemetry(5, events=[(6, "brews", 6)], as_json=True)
    first = store.take([msg("d/dev-a/e", m1), msg("d/dev-a/e", m2)])
    again = store.take([msg("d/dev-a/e", m1), msg("d/dev-a/e", m2, 1), msg("d/dev-a/e", m5)])
    assert (first.stored, first.duplicates) == (2, 0)
    assert (again.stored, again.duplicates) == (1, 2)
    assert count(registry, fleet_messages, device_id="dev-a") == 3
    assert count(registry, fleet_events, device_id="dev-a") == 4
    assert count(registry, fleet_readings, device_id="dev-a") == 1
    with registry.engine.connect() as conn:
        assert views.gaps(conn) == {"dev-a": 2}  # mseq 3 and 4 never came
        assert views.counters(conn) == {"dev-a": {"brews": 6}}
    row = next(r for r in views.fleet_status(registry.engine) if r["device_id"] == "dev-a")
    assert row["counters"] == {"brews": 6} and row["gaps"] == 2


def test_bad_input_of_each_kind_is_counted_with_its_reason_and_not_stored(registry):
    store = FleetStore(registry.engine)
    good = telemetry(1, events=[(1, "brews", 1)])
    outcome = store.take([
        msg("d/stranger/t", good),  # not in the registry
        msg("d/dev-a/t", b"\xff\x00 not cbor"),  # undecodable
        msg("d/dev-a/s", b"\xa1\x62on\x63yes"),  # a status with on: "yes"
        msg("d/dev-a/r", b"{\"ok\": 1}"),  # a reply without an id
        msg("x/dev-a/t", good),  # a topic outside the scheme
        msg("d/dev-a/t", good),  # the one good message
        msg("d/dev-a/t", telemetry(1, events=[(9, "brews", 9)]), 1),  # mseq 1 replayed
    ])
    assert outcome.stored == 1
    assert dict(outcome.rejected) == {"unknown": 1, "undecodable": 3, "topic": 1,
                                      "replayed": 1}
    assert count(registry, fleet_messages) == 1
    assert count(registry, fleet_events) == 1  # nothing of the replay
    seen = {(r["source"], r["reason"]): r for r in views.rejected(registry.engine)}
    assert seen[("stranger", "unknown")]["count"] == 1
    assert seen[("dev-a", "undecodable")]["count"] == 3
    assert "telemetry: undecodable" in seen[("dev-a", "undecodable")]["detail"] or \
        "reply" in seen[("dev-a", "undecodable")]["detail"]
    assert seen[("x/dev-a/t", "topic")]["count"] == 1
    assert views.device_detail(registry.engine, "stranger") is None  # nothing made for it
    assert "sequence 1" in seen[("dev-a", "replayed")]["detail"]
    # Counted across batches: the same refusal again adds to its count.
    store.take([msg("d/stranger/t", good, 2)])
    seen = {(r["source"], r["reason"]): r for r in views.rejected(registry.engine)}
    assert seen[("stranger", "unknown")]["count"] == 2


def test_status_opens_and_closes_sessions_and_keeps_health(registry):
    store = FleetStore(registry.engine)
    s1 = status(fw="1.4.0", bc=7, rc="watchdog", rr={"power-on": 1, "watchdog": 6},
                cr={"t": 1796000000, "e": "OSError: 110"}, hp={"f": 21000, "lb": 900},
                dx=[], tx=1000, rx=400)
    store.take([msg("d/dev-a/s", s1)])
    store.take([msg("d/dev-a/s", s1, 1, retain=True)])  # the retained copy at a resubscribe
    store.take([msg("d/dev-a/s", b"0", 30, retain=True)])  # the will
    s2 = status(fw="1.4.0", bc=8, rc="power-on", tx=1600, rx=500, dp=1)
    store.take([msg("d/dev-a/s", s2, 40)])
    store.broker_lost_at = T0 + timedelta(minutes=50)
    store.take([msg("d/dev-a/s", status(fw="1.4.1", bc=8, tx=1700, rx=520), 52)])
    d = views.device_detail(registry.engine, "dev-a")
    assert [(s["why"]) for s in d["sessions"]] == [None, "broker-restart", "will"]
    assert d["sessions"][1]["disconnected"].startswith("2026-12-03T08:50")
    assert d["online"] is True and d["firmware"] == "1.4.1"
    assert d["health"]["reboot_reasons"] == {"power-on": 1, "watchdog": 6}
    assert d["health"]["crash"] == "OSError: 110"
    assert d["health"]["heap_largest"] == 900
    assert d["data"]["paused"] is False  # the newest status no longer says paused
    with registry.engine.connect() as conn:
        day = conn.execute(select(fleet_usage.c.device_tx, fleet_usage.c.device_rx).where(
            fleet_usage.c.iccid == device_iccid("dev-a"))).one()
    # The first totals are the base; the deltas of the later ones add up.
    assert tuple(day) == (1700 - 1000, 520 - 400)


def test_a_bare_one_keeps_what_was_known_of_health(registry):
    store = FleetStore(registry.engine)
    store.take([msg("d/dev-b/s", status(fw="1.3.0", bc=2))])
    store.take([msg("d/dev-b/s", b"1", 5)])
    d = views.device_detail(registry.engine, "dev-b")
    assert d["firmware"] == "1.3.0" and d["health"]["boot_count"] == 2
    assert [s["why"] for s in d["sessions"]] == [None, "reconnect"]
    assert json.dumps(d)  # --json can print it


def test_the_firmware_image_version_is_stored_and_shown(registry, location):
    from click.testing import CliRunner

    from musket.cli import main

    store = FleetStore(registry.engine)
    store.take([msg("d/dev-a/s", status(fw="1.0.0", bc=1, up=10))])  # no "im": factory image
    store.take([msg("d/dev-b/s", status(fw="1.0.0", bc=1, up=10))])
    assert views.device_detail(registry.engine, "dev-a")["image"] == "factory"
    store.take([msg("d/dev-a/s", status(fw="1.0.0", im="1.29.0", bc=3, up=10), 30)])
    store.take([msg("d/dev-a/s", b"1", 40)])  # a bare 1 says nothing of it: it stays
    detail = views.device_detail(registry.engine, "dev-a")
    assert (detail["firmware"], detail["image"]) == ("1.0.0", "1.29.0")
    rows = {r["device_id"]: r for r in views.fleet_status(registry.engine)}
    assert (rows["dev-a"]["image"], rows["dev-b"]["image"]) == ("1.29.0", "factory")
    assert rows["dev-c"]["image"] is None  # never heard from

    def run(*args):
        result = CliRunner().invoke(main, ["fleet", *args, "--registry", location],
                                    env={"COLUMNS": "160"})  # the table's rows unwrapped
        assert result.exit_code == 0, result.output
        return result.stdout

    assert json.loads(run("device", "dev-a", "--json"))["image"] == "1.29.0"
    assert "firmware 1.0.0, image 1.29.0" in run("device", "dev-a")
    assert [r["image"] for r in json.loads(run("status", "--json"))
            if r["device_id"] in ("dev-a", "dev-b")] == ["1.29.0", "factory"]
    lines = run("status").splitlines()
    heading = [c.strip() for c in next(x for x in lines if "┃" in x).split("┃")[1:-1]]
    rows = {row[0]: dict(zip(heading, row, strict=True))
            for row in ([c.strip() for c in x.split("│")[1:-1]] for x in lines if "│" in x)}
    assert (rows["dev-a"]["firmware"], rows["dev-a"]["image"]) == ("1.0.0", "1.29.0"), rows
    assert rows["dev-b"]["image"] == "factory" and rows["dev-c"]["image"] == "", rows
    # Flashed again on the line (its state gone with the rest): the factory image once more.
    store.take([msg("d/dev-a/s", status(fw="1.0.0", bc=1, up=5), 60)])
    assert views.device_detail(registry.engine, "dev-a")["image"] == "factory"


def test_a_health_update_in_the_same_session_is_no_new_session(registry):
    store = FleetStore(registry.engine)
    store.take([msg("d/dev-c/s", status(bc=4, up=100, tx=10, rx=10))])
    store.take([msg("d/dev-c/s", status(bc=4, up=21700, tx=500, rx=300), 360)])
    assert [s["why"] for s in views.device_detail(registry.engine, "dev-c")["sessions"]] \
        == [None]
    store.take([msg("d/dev-c/s", status(bc=4, up=50, tx=600, rx=350), 400)])  # rebooted
    d = views.device_detail(registry.engine, "dev-c")
    assert [s["why"] for s in d["sessions"]] == [None, "reconnect"]
    assert d["health"]["uptime_s"] == 50


def test_a_carrier_data_stop_the_device_counted_names_the_session_it_ended(registry):
    store = FleetStore(registry.engine)
    store.take([msg("d/dev-a/s", status(bc=1, up=10, tx=100, rx=50))])  # no "ds": none yet
    store.take([msg("d/dev-a/s", b"0", 60, retain=True)])  # the will: data stopped
    store.take([msg("d/dev-a/s", status(bc=2, up=5, tx=300, rx=90, ds=1), 200)])
    store.take([msg("d/dev-a/s", b"0", 260, retain=True)])  # an ordinary loss
    store.take([msg("d/dev-a/s", status(bc=3, up=5, tx=400, rx=99, ds=1), 300)])
    d = views.device_detail(registry.engine, "dev-a")
    assert [s["why"] for s in d["sessions"]] == [None, "will", "data-stop"]
    assert d["data"]["carrier_stops"] == 1
    # A device first heard with stops behind it: that count is the base, nothing is blamed.
    store.take([msg("d/dev-b/s", status(bc=9, up=5, tx=10, rx=10, ds=4))])
    store.take([msg("d/dev-b/s", b"0", 10, retain=True)])
    store.take([msg("d/dev-b/s", status(bc=10, up=5, tx=20, rx=20, ds=4), 20)])
    d = views.device_detail(registry.engine, "dev-b")
    assert [s["why"] for s in d["sessions"]] == [None, "will"]
    assert d["data"]["carrier_stops"] == 4


def test_a_device_s_statuses_in_one_batch_leave_what_they_leave_one_batch_each(registry):
    """After an outage the status owner takes a device's statuses together: applied in order
    within one batch, they open, close and blame the same sessions and leave the same health
    and data use as taken one at a time."""
    from musket.registry.fleet_schema import fleet_devices, fleet_sessions

    statuses = [(0, status(bc=1, up=10, tx=100, rx=50), False),
                (60, b"0", True),  # the will
                (200, status(bc=2, up=5, tx=300, rx=90, ds=1), False),  # a stop: at 60
                (230, status(bc=2, up=35, tx=350, rx=95, ds=1), False),  # same session
                (260, b"0", True),  # the will: the carrier stopped the data
                (300, status(bc=3, up=5, tx=400, rx=99, ds=2), False),  # ...and it says so
                (310, b"1", False)]  # a reconnection
    store = FleetStore(registry.engine)
    store.take([msg("d/dev-a/s", payload, m, retain=r) for m, payload, r in statuses])
    for m, payload, r in statuses:
        store.take([msg("d/dev-b/s", payload, m, retain=r)])

    def left(device_id):
        with registry.engine.connect() as conn:
            row = conn.execute(select(fleet_devices).where(
                fleet_devices.c.device_id == device_id)).one()._asdict()
            s = fleet_sessions.c
            sessions = conn.execute(select(s.connected, s.disconnected, s.why).where(
                s.device_id == device_id).order_by(s.id)).all()
            use = conn.execute(select(fleet_usage.c.device_tx, fleet_usage.c.device_rx).where(
                fleet_usage.c.iccid == device_iccid(device_id))).one()
        del row["device_id"]
        return row, [tuple(x) for x in sessions], tuple(use)

    batched, one_by_one = left("dev-a"), left("dev-b")
    assert batched == one_by_one
    row, sessions, use = batched
    assert [why for _, _, why in sessions] == ["data-stop", "data-stop", "reconnect", None]
    assert row["online"] is True and row["boot_count"] == 3 and row["data_stops"] == 2
    assert use == (400 - 100, 99 - 50)


def test_service_events_stay_open_until_closed_by_someone(registry):
    from fleethelp import codec

    from musket.errors import BadInput
    from musket.fleet import service_events

    c = codec()
    t0 = 1_796_000_000
    events = [(1, t0, "use", "brews", 1, 500, None),
              (2, t0, "service", "brews", 500, 500, "descale")]
    payload, _, _ = c.encode(1, t0, events, [], 448)
    FleetStore(registry.engine).take([msg("d/dev-a/e", bytes(payload))])
    assert [e["info"] for e in service_events.open_events(registry.engine, "dev-a")] == [
        "descale"]
    assert views.fleet_status(registry.engine)[0]["open_service_events"] == 1
    with pytest.raises(BadInput, match="no open service event 1"):
        service_events.close(registry.engine, "dev-a", "ana", 1)  # a use, not a service
    assert service_events.close(registry.engine, "dev-a", "J. Ortega") == [2]
    assert service_events.open_events(registry.engine, "dev-a") == []
    assert views.device_detail(registry.engine, "dev-a")["open_service_events"] == 0


def test_a_status_delivered_again_is_nothing_new_unless_the_broker_restarted(registry):
    store = FleetStore(registry.engine)
    s = status(bc=1, up=10)
    store.take([msg("d/dev-b/s", s)])
    store.take([msg("d/dev-b/s", s, 1)])  # redelivered live (not acknowledged before)
    store.take([msg("d/dev-b/s", b"1", 2)])  # an older firmware's bare 1: a new session
    store.take([msg("d/dev-b/s", b"1", 3)])  # the same, redelivered: nothing new
    assert [x["why"] for x in views.device_detail(registry.engine, "dev-b")["sessions"]] \
        == [None, "reconnect"]
    store.broker_lost_at = T0 + timedelta(minutes=4)
    store.take([msg("d/dev-b/s", b"1", 5)])  # after the broker came back: a new session
    assert [x["why"] for x in views.device_detail(registry.engine, "dev-b")["sessions"]] \
        == [None, "broker-restart", "reconnect"]
