"""The services' tables (issue 15): customers and their sites, the rules engine's cursors and
triggers, its outbox, orders of consumables, technician tickets and tariffs. Defined on the
registry's MetaData, so the test that compares migrations with the code's tables covers them.

Unique keys carry "exactly once", however many engines run: a trigger is stored once per
(rule, subject, occurrence), and whatever it does (an outbox row, an order, a ticket) is written
in the same transaction, so the engine whose insert of the trigger wins is the one that acts.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from musket.registry.schema import metadata

_TIME = DateTime(timezone=True)

svc_customers = Table(
    "svc_customers", metadata,
    Column("customer_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
)

# Where each device is: its customer, its product (whose rules file applies) and a location
# label a technician can find it by.
svc_sites = Table(
    "svc_sites", metadata,
    Column("device_id", String(64), primary_key=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("product", String(32), nullable=False),
    Column("location", String(128), nullable=False),
)

# How far the engine has read the fleet's committed rows: per device, the newest counter event
# (seq) and, per counter, the total it has evaluated.
svc_cursors = Table(
    "svc_cursors", metadata,
    Column("device_id", String(64), primary_key=True),
    Column("name", String(40), primary_key=True),  # "seq", or "total:<counter>"
    Column("position", Float, nullable=False),
)

# Each trigger once: the key decides which engine acts.
svc_triggers = Table(
    "svc_triggers", metadata,
    Column("rule", String(64), primary_key=True),
    Column("subject", String(64), primary_key=True),
    Column("occurrence", String(64), primary_key=True),
    Column("fired", _TIME, nullable=False),
)

# Actions to deliver (webhook, sink, command), each with its idempotency key. state: pending,
# done, given_up (with the reason); attempts and the next try's time drive the backoff.
svc_outbox = Table(
    "svc_outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(160), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("target", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("next_at", _TIME, nullable=False),
    Column("claimed_until", _TIME),
    Column("reason", Text),
    Column("created", _TIME, nullable=False),
    Column("done", _TIME),
)

# Each device's consumables: the counter total at the last installation (the level counts
# from there) and how many installations there have been (one order per installation).
svc_consumables = Table(
    "svc_consumables", metadata,
    Column("device_id", String(64), primary_key=True),
    Column("consumable", String(32), primary_key=True),
    Column("counter", String(32), nullable=False),  # the counter its use is counted by
    Column("installed_total", Float, nullable=False),
    Column("installed", _TIME, nullable=False),
    Column("generation", Integer, nullable=False),
)

svc_orders = Table(
    "svc_orders", metadata,
    Column("order_id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(64), nullable=False, index=True),
    Column("customer_id", String(64), nullable=False),
    Column("consumable", String(32), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("quantity", Float, nullable=False),
    Column("state", String(16), nullable=False),  # placed, shipped, installed
    Column("placed", _TIME, nullable=False),
    Column("shipped", _TIME),
    Column("installed", _TIME),
    Column("runout_predicted", _TIME),
    Column("arrives", _TIME, nullable=False),  # placed + the supplier's lead time
    UniqueConstraint("device_id", "consumable", "generation"),
)

svc_tickets = Table(
    "svc_tickets", metadata,
    Column("ticket_id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(64), nullable=False, index=True),
    Column("customer_id", String(64), nullable=False),
    Column("problem", String(64), nullable=False),
    Column("codes", Text, nullable=False),  # JSON [code]
    Column("repair", Text, nullable=False),
    Column("parts", Text, nullable=False),  # JSON [part]
    Column("location", String(128), nullable=False),
    Column("connections", Text, nullable=False),  # JSON [{connected, disconnected, why}]
    Column("opened", _TIME, nullable=False),
    Column("closed", _TIME),
)

# Prices per counter for a customer ("customer:<id>") or a product ("product:<name>"); the
# customer's tariff wins. prices: JSON {counter: unit price}.
svc_tariffs = Table(
    "svc_tariffs", metadata,
    Column("scope", String(100), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("minimum", Float, nullable=False),
    Column("prices", Text, nullable=False),
)

# Unexpected reboots as the engine saw them in the devices' reboot counts (the fleet keeps
# only the totals): the window rules count these.
svc_reboots = Table(
    "svc_reboots", metadata,
    Column("device_id", String(64), primary_key=True),
    Column("boot", BigInteger, primary_key=True, autoincrement=False),  # n-th seen
    Column("at", _TIME, nullable=False),
    Column("reason", String(32), nullable=False),
)
