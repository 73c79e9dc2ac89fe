"""Device commands through a real Mosquitto: a rule's `command` action and the counter
command an installed order queues (for a device that counts its consumable itself) reach the
device's command topic once each, with ids derived from their keys, together in one batch
(musket.batches); and, with a stand-in publisher, a pass's commands for a device go several
to a message, one too large for the device is given up alone, and a failed publish leaves its
commands to try again."""

from __future__ import annotations

import json
import queue

import fleethelp
import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import insert, select
from svchelp import T0, Device, import_sites, take

from musket.batches import commands_in
from musket.registry.core import now
from musket.registry.services_schema import svc_consumables, svc_orders, svc_outbox
from musket.services import rules, views
from musket.services.dispatch import CommandPublisher, Dispatcher
from musket.services.engine import RulesEngine

RULES = """\
product: coffee
rules:
  - name: health-check
    when: {counter: brews, every: 20}
    do: [{command: {op: config, args: {set: {health_interval_s: 600}}}}]
"""


@pytest.fixture
def location(tmp_path):
    return str(tmp_path / "registry.sqlite")


def device_inbox(port: int, device_id: str) -> queue.Queue:
    """What the broker delivers to the device's command topic, logged in as the device."""
    inbox: queue.Queue = queue.Queue()
    subscribed = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id,
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(device_id, fleethelp.broker_module().DEVICES[device_id])
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"d/{device_id}/c", qos=1)
    client.on_subscribe = lambda *a: subscribed.put(True)
    client.on_message = lambda c, u, m: inbox.put((m.topic, commands_in(m.payload)))
    client.connect("127.0.0.1", port)
    client.loop_start()
    subscribed.get(timeout=10)
    return inbox


def test_commands_reach_the_device_once(registry, tmp_path, mosquitto):
    m = fleethelp.broker_module()
    import_sites(registry.engine, tmp_path, [("dev-a", "acme", "coffee", "HQ")])
    inbox = device_inbox(mosquitto.port, "dev-a")
    a = Device("dev-a")
    take(registry.engine, a.use("brews", 25, T0), a.use("beans", 1, T0 + 60))
    engine = RulesEngine(registry.engine, {"coffee": rules.parse(RULES, "c.yaml")})
    assert engine.run_once().queued == 1
    with registry.engine.begin() as conn:
        conn.execute(insert(svc_consumables).values(
            device_id="dev-a", consumable="beans", counter="brews", installed_total=0,
            installed=now(), generation=0))
        order_id = conn.execute(insert(svc_orders).values(
            device_id="dev-a", customer_id="acme", consumable="beans", generation=0,
            quantity=1, state="placed", placed=now(), arrives=now())
            .returning(svc_orders.c.order_id)).scalar_one()
    views.set_order_state(registry.engine, order_id, "installed", "ana")
    publish = CommandPublisher("127.0.0.1", mosquitto.port, m.SERVICE_USER, m.SERVICE_PASSWORD)
    try:
        dispatcher = Dispatcher(registry.engine, tmp_path, publish)
        assert dispatcher.run_once().delivered == 2
        assert dispatcher.run_once().delivered == 0
        topic_name, carried = inbox.get(timeout=10)  # the two in one message
    finally:
        publish.close()
    assert topic_name == "d/dev-a/c"
    config, counter = sorted(carried, key=lambda c: c["op"])
    assert {k: counter[k] for k in ("op", "name", "value")} == {"op": "counter",
                                                                 "name": "beans", "value": 0}
    assert config["op"] == "config" and config["set"] == {"health_interval_s": 600}
    assert config["id"].startswith("svc-") and len(config["id"]) <= 32
    assert counter["id"] != config["id"] and counter["reason"] == f"order {order_id} installed"
    assert inbox.empty()


def _queue_commands(engine, commands: list[tuple[str, str, dict]]) -> None:
    with engine.begin() as conn:
        for key, device_id, command in commands:
            conn.execute(insert(svc_outbox).values(
                key=key, kind="command", target=device_id, payload=json.dumps(command),
                state="pending", attempts=0, max_attempts=5, next_at=now(), created=now()))


def _states(engine) -> dict[str, tuple[str, int]]:
    with engine.connect() as conn:
        return {r.key: (r.state, r.attempts) for r in conn.execute(
            select(svc_outbox.c.key, svc_outbox.c.state, svc_outbox.c.attempts))}


def test_a_pass_sends_a_devices_commands_together(registry, tmp_path):
    config = {"op": "config", "set": {"report_interval_s": 900}}
    too_large = {"op": "config", "set": {"log_level": "x" * 400}}
    _queue_commands(registry.engine, [(f"a{i}", "dev-a", config) for i in range(10)]
                    + [("big", "dev-a", too_large), ("b0", "dev-b", config)])
    sent = []

    def publish(topic_name: str, payload: bytes) -> None:
        if topic_name == "d/dev-b/c":
            raise ConnectionError("the broker went away")
        sent.append((topic_name, [c["op"] for c in commands_in(payload)]))

    result = Dispatcher(registry.engine, tmp_path, publish).run_once()
    assert sent == [("d/dev-a/c", ["config"] * 10)]
    assert (result.delivered, result.given_up, result.retrying) == (10, 1, 1)
    states = _states(registry.engine)
    assert {states[f"a{i}"] for i in range(10)} == {("done", 1)}
    assert states["big"] == ("given_up", 1) and states["b0"] == ("pending", 1)
