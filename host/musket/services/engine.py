"""The rules engine: reads what the fleet service committed (counter events, readings, health,
sessions, data use) past its own cursors, evaluates each product's rules, and acts on each
trigger exactly once.

A trigger is (rule, device, occurrence): the counter's N-th threshold, the consumable's
installation, the ticket's number, the silence that began at a time. Its row goes in under a
unique key in the same transaction as what it does (an order, a ticket, outbox rows for the
dispatcher), so a pass repeated after a crash, a replayed message the store already dropped,
or a second engine on the same database finds the key taken and does nothing. Cursors move
only after the pass's triggers are committed: a crash between the two costs a re-evaluation,
never an action.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, and_, func, insert, select, update
from sqlalchemy.exc import OperationalError

from musket.fleet.sql import aware, insert_new
from musket.fleet.store import SIGNAL_KEYS
from musket.fleet.views import iso_utc
from musket.registry.fleet_schema import (
    fleet_devices,
    fleet_events,
    fleet_plans,
    fleet_readings,
    fleet_usage,
)
from musket.registry.schema import devices, sims
from musket.registry.services_schema import (
    svc_cursors,
    svc_outbox,
    svc_reboots,
    svc_sites,
    svc_tariffs,
    svc_triggers,
)
from musket.services import replenish, state, tickets
from musket.services.rules import Product, Rule

FIRE_ATTEMPTS = 3  # a batch's transaction is tried this often when the database fails it
FIRE_BATCH = 100  # triggers acted on per transaction


@dataclass
class Trigger:
    rule: Rule
    product: Product
    device_id: str
    occurrence: str
    detail: dict = field(default_factory=dict)


@dataclass
class PassResult:
    events: int = 0  # counter events evaluated
    triggers: int = 0  # triggers that acted (this engine's inserts that won)
    orders: int = 0
    tickets_opened: int = 0
    tickets_closed: int = 0
    queued: int = 0  # outbox rows for the dispatcher

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Device:
    device_id: str
    customer_id: str
    product: Product
    location: str
    row: object = None  # its fleet_devices row, None before it was heard from
    new_totals: dict[str, float] = field(default_factory=dict)
    readings: list = field(default_factory=list)


class RulesEngine:
    """`products`: {name: Product} from musket.services.rules; `clock`: now (UTC), replaceable
    for a simulated week."""

    def __init__(self, engine: Engine, products: dict[str, Product], clock=None) -> None:
        self.engine = engine
        self.products = products
        self.clock = clock or (lambda: datetime.now(UTC))

    def sync_tariffs(self) -> None:
        """Writes each product's tariff (its `tariff` section) and its customers' own
        (`customer_tariffs`) where billing reads them."""
        tariffs = {}
        for name, product in sorted(self.products.items()):
            if product.tariff:
                tariffs[f"product:{name}"] = product.tariff
            for customer, tariff in product.customer_tariffs.items():
                tariffs[f"customer:{customer}"] = tariff
        with self.engine.begin() as conn:
            for scope, tariff in sorted(tariffs.items()):
                values = {"currency": tariff["currency"], "minimum": float(tariff["minimum"]),
                          "prices": json.dumps(tariff["prices"], sort_keys=True)}
                insert_new(conn, svc_tariffs, [{"scope": scope, **values}])
                conn.execute(update(svc_tariffs).where(svc_tariffs.c.scope == scope)
                             .values(**values))

    def run_once(self) -> PassResult:
        now = self.clock()
        result = PassResult()
        with self.engine.begin() as conn:
            cursors = state.Cursors(conn)
            subjects = self._subjects(conn)
            result.events, seq_moves = self._new_events(conn, cursors, subjects)
            self._new_readings(conn, cursors, subjects)
            for d in subjects.values():
                if d.row is not None:
                    state.record_reboots(conn, cursors, d.device_id, d.row.reboot_reasons,
                                         aware(d.row.status_at))
                    state.track_codes(cursors, d.device_id, json.loads(d.row.diagnosis or "[]"),
                                      _epoch(d.row.status_at or now))
            cursors.save(conn)  # derived health: safe to keep before the triggers act
            later: dict[tuple[str, str], float | None] = dict(seq_moves)
            found = self._evaluate(conn, cursors, subjects, now, later)
        # In one order whichever engine fires them: two engines' batches then take the
        # trigger keys' locks in the same order and do not deadlock each other.
        found.sort(key=lambda t: (t.device_id, t.product.name, t.rule.name, t.occurrence))
        self._fire(found, now, result)
        with self.engine.begin() as conn:
            for (device_id, name), value in later.items():
                cursors.set(device_id, name, value)
            cursors.save(conn)
            result.tickets_closed = tickets.close_healthy(conn, self._healthy_after(), now)
        return result

    # -- reading what the fleet committed ------------------------------------------------------

    def _subjects(self, conn: Connection) -> dict[str, _Device]:
        s = svc_sites.c
        out = {d: _Device(d, c, self.products[p], loc) for d, c, p, loc in conn.execute(
            select(s.device_id, s.customer_id, s.product, s.location)) if p in self.products}
        for row in conn.execute(select(fleet_devices)):
            if row.device_id in out:
                out[row.device_id].row = row
        return out

    def _new_events(self, conn: Connection, cursors: state.Cursors,
                    subjects: dict[str, _Device]) -> tuple[int, dict]:
        e = fleet_events.c
        newest: dict[str, float] = {}
        n = 0
        for device_id, seq, name, total in conn.execute(
                select(e.device_id, e.seq, e.name, e.total).where(e.kind == "use")
                .where(e.seq > func.coalesce(
                    select(svc_cursors.c.position).where(and_(
                        svc_cursors.c.device_id == e.device_id,
                        svc_cursors.c.name == state.SEQ)).scalar_subquery(), -1))):
            d = subjects.get(device_id)
            if d is None:
                continue
            n += 1
            d.new_totals[name] = max(d.new_totals.get(name, 0.0), total)
            newest[device_id] = max(newest.get(device_id, -1), seq)
        return n, {(d, state.SEQ): float(s) for d, s in newest.items()}

    def _new_readings(self, conn: Connection, cursors: state.Cursors,
                      subjects: dict[str, _Device]) -> None:
        if not any(r.condition == "signal_below" for p in self.products.values()
                   for r in p.rules):
            return
        r = fleet_readings.c
        for device_id, rseq, t, values in conn.execute(
                select(r.device_id, r.rseq, r.time, r.values_json).order_by(r.device_id, r.rseq)
                .where(r.rseq > func.coalesce(
                    select(svc_cursors.c.position).where(and_(
                        svc_cursors.c.device_id == r.device_id,
                        svc_cursors.c.name == state.RSEQ)).scalar_subquery(), -1))):
            if device_id in subjects:
                subjects[device_id].readings.append((rseq, t, json.loads(values)))

    # -- the conditions ------------------------------------------------------------------------

    def _evaluate(self, conn, cursors, subjects, now, later) -> list[Trigger]:
        out: list[Trigger] = []
        rebooted = {d for (d,) in conn.execute(
            select(svc_reboots.c.device_id).distinct().where(
                svc_reboots.c.at >= now - timedelta(days=7)))}
        data = _data_share(conn, now) if any(
            r.condition == "data_share" for p in self.products.values() for r in p.rules) else {}
        for d in subjects.values():
            for rule in d.product.rules:
                check = getattr(self, "_when_" + rule.condition)
                for occurrence, detail in check(conn, cursors, d, rule, now, later,
                                                rebooted=rebooted, data=data):
                    out.append(Trigger(rule, d.product, d.device_id, occurrence, detail))
            for counter, total in d.new_totals.items():
                later[(d.device_id, f"total:{counter}")] = total
            if d.readings:
                later[(d.device_id, state.RSEQ)] = float(d.readings[-1][0])
        return out

    def _when_counter(self, conn, cursors, d, rule, now, later, **_):
        counter, every = rule.params["counter"], rule.params["every"]
        if counter not in d.new_totals:
            return
        before = cursors.get(d.device_id, f"total:{counter}", 0.0)
        for k in range(int(before // every) + 1, int(d.new_totals[counter] // every) + 1):
            yield f"{k * every:g}", {"counter": counter, "crossed": k * every}

    def _when_consumable(self, conn, cursors, d, rule, now, later, **_):
        consumable = d.product.consumables[rule.params["consumable"]]
        total = d.new_totals.get(consumable.counter)
        if total is None:
            return
        lvl = replenish.level(conn, d.device_id, consumable, total, now)
        if lvl.due(consumable, now):
            yield f"g{lvl.generation}", {"consumable": consumable.name, "level": lvl,
                                         "remaining": round(lvl.remaining, 6),
                                         "runout_predicted": iso_utc(lvl.runout)}

    def _when_reboots(self, conn, cursors, d, rule, now, later, rebooted, **_):
        if d.device_id not in rebooted:
            return
        since = now - timedelta(hours=rule.params["within_hours"])
        ticket, last_closed = _ticket_state(conn, d, rule)
        if last_closed is not None:
            since = max(since, last_closed)
        rows = state.reboots_since(conn, d.device_id, since)
        if len(rows) >= rule.params["reboots"]:
            yield (f"t{ticket}" if ticket is not None else f"b{rows[0].boot}",
                   {"reboots": [{"at": iso_utc(aware(at)), "reason": why} for _, at, why in rows]})

    def _when_diagnosis(self, conn, cursors, d, rule, now, later, **_):
        yield from self._codes(conn, cursors, d, rule, rule.params["diagnosis"], now, 0)

    def _when_sensor_fault(self, conn, cursors, d, rule, now, later, **_):
        yield from self._codes(conn, cursors, d, rule, rule.params["sensor_fault"], now,
                               rule.params["for_hours"] * 3600)

    def _codes(self, conn, cursors, d, rule, pattern, now, lasting_s):
        if d.row is None:
            return
        codes = [c for c in json.loads(d.row.diagnosis or "[]") if _matches(pattern, c)]
        spells = [cursors.get(d.device_id, f"code:{c}") for c in codes]
        lasting = [(c, s) for c, s in zip(codes, spells, strict=True)
                   if s is not None and _epoch(now) - s >= lasting_s]
        if not lasting:
            return
        ticket, _ = _ticket_state(conn, d, rule)
        first = min(s for _, s in lasting)
        yield (f"t{ticket}" if ticket is not None else f"s{first:.0f}",
               {"codes": [c for c, _ in lasting]})

    def _when_signal_below(self, conn, cursors, d, rule, now, later, **_):
        name = f"low:{rule.name}"
        since = later.get((d.device_id, name), cursors.get(d.device_id, name))
        for _, t, values in d.readings:
            signal = next((values[k] for k in SIGNAL_KEYS if k in values), None)
            if signal is None:
                continue
            if signal < rule.params["signal_below"]:
                since = t if since is None else since
            else:
                since = None
        later[(d.device_id, name)] = since
        if since is not None and _epoch(now) - since >= rule.params["for_days"] * 86400:
            yield f"l{since:.0f}", {"low_since": iso_utc(replenish.utc(since))}

    def _when_silent_hours(self, conn, cursors, d, rule, now, later, **_):
        if d.row is None:
            return
        last = aware(d.row.last_seen)
        if now - last >= timedelta(hours=rule.params["silent_hours"]):
            yield f"q{_epoch(last):.0f}", {"last_seen": iso_utc(last)}

    def _when_data_share(self, conn, cursors, d, rule, now, later, data, **_):
        used, included = data.get(d.device_id, (0, 0))
        if included and used * 100 >= included * rule.params["data_share"]:
            yield now.strftime("%Y-%m"), {"used_bytes": used, "included_bytes": included}

    # -- acting --------------------------------------------------------------------------------

    def _fire(self, found: list[Trigger], now: datetime, result: PassResult) -> None:
        # FIRE_BATCH triggers a transaction: a key another engine holds is skipped by the
        # insert (ON CONFLICT DO NOTHING) without ending the transaction, so the batch's
        # other triggers still act.
        for i in range(0, len(found), FIRE_BATCH):
            batch = found[i:i + FIRE_BATCH]
            for attempt in range(FIRE_ATTEMPTS):
                acted = PassResult()
                try:
                    with self.engine.begin() as conn:
                        for trigger in batch:
                            self._fire_once(conn, trigger, now, acted)
                    break
                except OperationalError:
                    # PostgreSQL ended the transaction to break a deadlock with another
                    # engine (or lost the connection): nothing of it stands, so trying
                    # again is safe.
                    if attempt + 1 == FIRE_ATTEMPTS:
                        raise
            for name, value in acted.as_dict().items():
                setattr(result, name, getattr(result, name) + value)

    def _fire_once(self, conn: Connection, trigger: Trigger, now: datetime,
                   result: PassResult) -> None:
        rule, d = trigger.rule, trigger.device_id
        rule_key = f"{trigger.product.name}/{rule.name}"[:64]
        won = insert_new(conn, svc_triggers, [{"rule": rule_key, "subject": d,
                                               "occurrence": trigger.occurrence,
                                               "fired": now}]).first()
        if won is None:
            return
        site = conn.execute(select(svc_sites).where(svc_sites.c.device_id == d)).one()
        detail = {k: v for k, v in trigger.detail.items() if k != "level"}
        for i, action in enumerate(rule.actions):
            if action.kind == "order":
                consumable = trigger.product.consumables[rule.params["consumable"]]
                detail["order_id"] = replenish.place(
                    conn, d, site.customer_id, consumable, trigger.detail["level"], now,
                    action.params["quantity"])
                result.orders += 1
            elif action.kind == "ticket":
                detail["ticket_id"] = tickets.open_ticket(
                    conn, d, site.customer_id, site.location, rule_key,
                    action.params["problem"], now)
                result.tickets_opened += 1
            else:
                key = f"{rule_key}/{d}/{trigger.occurrence}/{i}"
                payload = {"key": key, "rule": rule_key, "device_id": d,
                           "customer_id": site.customer_id, "location": site.location,
                           "occurrence": trigger.occurrence, "fired": iso_utc(now), **detail}
                conn.execute(insert(svc_outbox).values(
                    key=key, kind=action.kind,
                    target=d if action.kind == "command" else _target(action),
                    payload=json.dumps(_command(action) if action.kind == "command"
                                       else payload, sort_keys=True, default=str),
                    state="pending", attempts=0,
                    max_attempts=action.params.get("tries", 1) or 1, next_at=now,
                    created=now))
                result.queued += 1
        result.triggers += 1

    def _healthy_after(self) -> dict[str, float]:
        return {f"{p.name}/{r.name}"[:64]: a.params["healthy_after_hours"]
                for p in self.products.values() for r in p.rules for a in r.actions
                if a.kind == "ticket"}


def _ticket_state(conn, d: _Device, rule: Rule) -> tuple[int | None, datetime | None]:
    # For a rule that opens tickets: the number of the next ticket (one open at a time) and
    # when the last one closed (what happened before it is dealt with).
    if not any(a.kind == "ticket" for a in rule.actions):
        return None, None
    return tickets.generation(conn, d.device_id, f"{d.product.name}/{rule.name}"[:64])


def _data_share(conn: Connection, now: datetime) -> dict[str, tuple[int, int]]:
    # device -> (bytes this month by its SIM, its plan's included bytes)
    u = fleet_usage.c
    month = now.date().replace(day=1)
    used = {i: int(n or 0) for i, n in conn.execute(
        select(u.iccid, func.sum(u.device_tx + u.device_rx)).where(u.day >= month)
        .group_by(u.iccid))}
    out = {}
    for device_id, iccid, included in conn.execute(
            select(devices.c.device_id, devices.c.iccid, fleet_plans.c.included_bytes)
            .join(sims, sims.c.iccid == devices.c.iccid)
            .join(fleet_plans, fleet_plans.c.name == sims.c.plan)):
        out[device_id] = (used.get(iccid, 0), int(included))
    return out


def _matches(pattern: str, code: str) -> bool:
    base = code.split(":")[0]
    if pattern == "any":
        return True
    if pattern.endswith("*"):
        return base.startswith(pattern[:-1])
    return base == pattern


def _target(action) -> str:
    # Where an action goes: a webhook's URL, a sink's file (a command's device is the
    # trigger's subject, written by the caller).
    return action.params.get("url") or action.params.get("path") or ""


def _command(action) -> dict:
    # The dispatcher adds the id (from the outbox key) as it sends it.
    return {**(action.params["args"] or {}), "op": action.params["op"]}


def _epoch(t: datetime) -> float:
    return aware(t).timestamp()
