"""The fleet service's tables (issue 14), kept beside the registry's in one database and one
migration chain (revision 0003). Defined on the registry's MetaData, so the test that compares
migrations with the code's tables covers them too.

Unique keys carry the service's guarantees, so they hold however many copies of the service
run: a telemetry message is stored once per (device, mseq), a counter event once per
(device, seq), a reading once per (device, rseq), a plan alert once per (subject, month,
threshold).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    Text,
)

from musket.registry.schema import metadata

_TIME = DateTime(timezone=True)

# One row per device that has been heard from: the latest of what it said. JSON columns hold
# what the status message sent as maps or lists, as sent.
fleet_devices = Table(
    "fleet_devices", metadata,
    Column("device_id", String(64), primary_key=True),
    Column("online", Boolean, nullable=False),
    Column("last_seen", _TIME, nullable=False),
    Column("status_at", _TIME),  # when the last status was received
    # Its digest: the broker hands the retained status again at each subscribe, and that is
    # no new session.
    Column("status_digest", String(32)),
    Column("firmware", String(32)),
    # The firmware image's version (status "im"), or FACTORY_IMAGE when the device said it runs
    # the image flashed on the line (musket.fleet.statuses).
    Column("image", String(32)),
    Column("boot_count", Integer),
    Column("reset_cause", String(16)),
    Column("reboot_reasons", Text),  # JSON {reason: n}
    Column("crash_time", BigInteger),
    Column("crash", Text),
    Column("uptime_s", BigInteger),
    Column("session_s", BigInteger),
    Column("connect_failures", Integer),
    Column("rejects", Text),  # JSON {cause: n}
    Column("heap_free", Integer),
    Column("heap_largest", Integer),
    Column("diagnosis", Text),  # JSON list of codes
    Column("signal", Float),  # the newest reading's signal (dBm), if the device sends one
    # The device's cumulative data counters as last reported (contract C), the base for the
    # next day's delta, and whether the carrier had stopped its data.
    Column("data_tx", BigInteger),
    Column("data_rx", BigInteger),
    Column("data_paused", Boolean, nullable=False, default=False),
    Column("data_stops", Integer),  # the carrier's data stops the device counted (status "ds")
)

# Connection history: opened by an online status, closed by the will (offline), by the
# broker's restart (the service lost the broker meanwhile) or by a new session (reconnect).
fleet_sessions = Table(
    "fleet_sessions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(64), nullable=False, index=True),
    Column("connected", _TIME, nullable=False),
    Column("disconnected", _TIME),
    Column("why", String(16)),
)

# Every telemetry message taken, once: the key drops a redelivery; the digest tells a
# redelivery (same bytes) from a replay of an old sequence number with other content.
fleet_messages = Table(
    "fleet_messages", metadata,
    Column("device_id", String(64), primary_key=True),
    Column("mseq", BigInteger, primary_key=True, autoincrement=False),
    Column("leaf", String(1), nullable=False),
    Column("digest", String(32), nullable=False),
    Column("received", _TIME, nullable=False),
)

fleet_events = Table(
    "fleet_events", metadata,
    Column("device_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time", BigInteger, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("name", String(32), nullable=False),
    Column("delta", Float, nullable=False),
    Column("total", Float, nullable=False),
    Column("info", Text),
    # For a service event: when someone closed it (and who); open while NULL.
    Column("closed", _TIME),
    Column("closed_by", String(64)),
)

fleet_readings = Table(
    "fleet_readings", metadata,
    Column("device_id", String(64), primary_key=True),
    Column("rseq", BigInteger, primary_key=True, autoincrement=False),
    Column("time", BigInteger, nullable=False),
    Column("values_json", Text, nullable=False),
)

# Messages the service would not store, counted per source (a device ID, or the topic when
# it names none) and reason; `detail` is the newest one's message.
fleet_rejected = Table(
    "fleet_rejected", metadata,
    Column("source", String(128), primary_key=True),
    Column("reason", String(32), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("first", _TIME, nullable=False),
    Column("last", _TIME, nullable=False),
    Column("detail", Text),
)

# Data per SIM per day (UTC): what its device reported (deltas of its cumulative counters)
# and what the carrier billed (its usage file).
fleet_usage = Table(
    "fleet_usage", metadata,
    Column("iccid", String(20), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("device_tx", BigInteger, nullable=False, default=0),
    Column("device_rx", BigInteger, nullable=False, default=0),
    Column("carrier_bytes", BigInteger),
)

# Plans as data; a SIM's plan is sims.plan (the vendor's list names it).
fleet_plans = Table(
    "fleet_plans", metadata,
    Column("name", String(64), primary_key=True),
    Column("monthly_fee", Float, nullable=False),
    Column("included_bytes", BigInteger, nullable=False),
    Column("overage_per_mb", Float, nullable=False),
    Column("pooled", Boolean, nullable=False),
    Column("currency", String(3), nullable=False),
)

# Each alert raised once: a SIM (or "pool:<plan>") crossing a share of its plan in a month.
fleet_alerts = Table(
    "fleet_alerts", metadata,
    Column("subject", String(80), primary_key=True),
    Column("month", String(7), primary_key=True),  # "2026-12"
    Column("threshold", Integer, primary_key=True, autoincrement=False),  # percent
    Column("raised", _TIME, nullable=False),
    Column("used_bytes", BigInteger, nullable=False),
    Column("included_bytes", BigInteger, nullable=False),
)
