"""Device commands through a real Mosquitto: a rule's `command` action and the counter
command an installed order queues (for a device that counts its consumable itself) reach the
device's command topic once each, with ids derived from their keys."""

from __future__ import annotations

import json
import queue

import fleethelp
import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import insert
from svchelp import T0, Device, import_sites, take

from musket.registry.core import now
from musket.registry.services_schema import svc_consumables, svc_orders
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
    client.on_message = lambda c, u, m: inbox.put((m.topic, json.loads(m.payload)))
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
        got = sorted((inbox.get(timeout=10), inbox.get(timeout=10)),
                     key=lambda x: x[1]["op"])
    finally:
        publish.close()
    (topic1, config), (topic2, counter) = got
    assert topic1 == topic2 == "d/dev-a/c"
    assert {k: counter[k] for k in ("op", "name", "value")} == {"op": "counter",
                                                                 "name": "beans", "value": 0}
    assert config["op"] == "config" and config["set"] == {"health_interval_s": 600}
    assert config["id"].startswith("svc-") and len(config["id"]) <= 32
    assert counter["id"] != config["id"] and counter["reason"] == f"order {order_id} installed"
    assert inbox.empty()
