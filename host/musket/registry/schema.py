"""The registry's tables (SQLAlchemy Core), as the newest migration leaves them.

The migrations in migrations/versions create and change the tables; this module describes the
result for the queries. A test checks that the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

# A SIM's life: in stock, bound to a device at provisioning, active in service, suspended
# (billing paused), retired (never to be used again).

metadata = MetaData()

devices = Table(
    "devices", metadata,
    Column("device_id", String(64), primary_key=True),
    Column("imei", String(15), nullable=False, unique=True),
    # The SIM in the unit now; its history is in bindings.
    Column("iccid", String(20), ForeignKey("sims.iccid"), unique=True),
    Column("imsi", String(15)),
    Column("board", String(64)),
    # The ESP32's factory MAC (machine.unique_id() as hex): the board the device ID belongs to.
    Column("chip_id", String(32), nullable=False, unique=True),
    Column("created", DateTime(timezone=True), nullable=False),
)

sims = Table(
    "sims", metadata,
    Column("iccid", String(20), primary_key=True),
    Column("plan", String(64)),
    Column("state", String(16), nullable=False),
    Column("imsi", String(15)),
    Column("updated", DateTime(timezone=True), nullable=False),
)

bindings = Table(
    "bindings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(64), ForeignKey("devices.device_id"), nullable=False),
    Column("iccid", String(20), ForeignKey("sims.iccid"), nullable=False),
    Column("imei", String(15), nullable=False),
    Column("bound", DateTime(timezone=True), nullable=False),
    Column("unbound", DateTime(timezone=True)),
    Column("reason", Text),
)

credentials = Table(
    "credentials", metadata,
    Column("username", String(64), ForeignKey("devices.device_id"), primary_key=True),
    # The broker's hash of the secret (Mosquitto's PBKDF2-SHA512 "$7$" line); never the secret.
    Column("secret_hash", Text, nullable=False),
    # sha256 of the secret, hex: a station checks the secret a unit holds against it without
    # the unit revealing it (the unit answers sha256(nonce + sha256(secret))).
    Column("secret_check", String(64), nullable=False),
    Column("issued", DateTime(timezone=True), nullable=False),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("station", String(64), nullable=False),
    Column("operator", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    # What the action was about: a device ID or an ICCID.
    Column("subject", String(64), nullable=False),
    # JSON: what changed ({"state": ["inventory", "bound"], ...}); never a secret.
    Column("changes", Text, nullable=False),
)

# Update campaigns (musket.ota.campaign): a bundle, its stages (JSON: ["1", "25%", "100%"]),
# how many failures a stage tolerates, and running / completed / aborted with the reason.
ota_campaigns = Table(
    "ota_campaigns", metadata,
    Column("name", String(28), primary_key=True),
    Column("version", String(32), nullable=False),
    Column("bundle_sha256", String(64), nullable=False),
    Column("stages", Text, nullable=False),
    Column("abort_after", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

# Each device of a campaign: its stage, and where its update stands (pending, offered,
# downloading, downloaded, verifying, staged, booting, confirmed, rolled_back, rejected,
# timed_out, skipped).
ota_devices = Table(
    "ota_devices", metadata,
    Column("campaign", String(28), ForeignKey("ota_campaigns.name"), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("stage", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("updated", DateTime(timezone=True), nullable=False),
)

# ---- end-of-line test (migration 0004; musket.eol) -----------------------------------------

# One row per end-of-line test of a unit: passed or not, the diagnosis codes that failed it
# (JSON list), its measurements (JSON: signal, sensor readings, the acknowledged telemetry).
eol_results = Table(
    "eol_results", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(64), ForeignKey("devices.device_id"), nullable=False,
           index=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("station", String(64), nullable=False),
    Column("operator", String(64), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("codes", Text, nullable=False),
    Column("measurements", Text, nullable=False),
    Column("seconds", Float, nullable=False),
)

# Whether a unit may ship: its latest end-of-line test passed. Written with each result.
eol_units = Table(
    "eol_units", metadata,
    Column("device_id", String(64), ForeignKey("devices.device_id"), primary_key=True),
    Column("shippable", Boolean, nullable=False),
    Column("result_id", Integer, ForeignKey("eol_results.id"), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)
# ---- end of the end-of-line test's tables ---------------------------------------------------

# Free labels on devices that pick cohorts (musket.registry.tags; migration 0008).
device_tags = Table(
    "device_tags", metadata,
    Column("device_id", String(64), ForeignKey("devices.device_id"), primary_key=True),
    Column("tag", String(32), primary_key=True, index=True),
    Column("added", DateTime(timezone=True), nullable=False),
)

# -- the other parts' tables: the fleet service's (issue 14, migration 0003), the services'
# (0005), the team pages' operators (musket fleet web, 0006). Defined on this MetaData in their
# own modules; imported here so that every user of `metadata` sees them.
from musket.registry import fleet_schema, services_schema, web_schema  # noqa: E402,F401
