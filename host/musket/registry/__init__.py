"""The device registry: SIM inventory, ICCID ↔ IMEI ↔ device ID bindings, credentials (hashed)
and an append-only audit log, on a SQLite file or PostgreSQL.

    from musket.registry import Registry, default_actor

    with Registry.open("musket-registry.sqlite", migrate=True) as registry:
        registry.import_sims("sims.csv", default_actor("line-1", "ana"))
        for device in registry.devices():
            print(device.device_id, device.imei, device.iccid)
"""

from musket.identity import SIM_STATES
from musket.registry.binding import BindingRefused
from musket.registry.core import MANUAL_TRANSITIONS, Registry, default_actor
from musket.registry.database import RegistryError, RegistryRefused, resolve
from musket.registry.records import Actor, AuditEntry, DeviceRecord, SimRecord
from musket.registry.simcsv import SimImportError

__all__ = [
    "MANUAL_TRANSITIONS", "SIM_STATES", "Actor", "AuditEntry", "BindingRefused",
    "DeviceRecord", "Registry", "RegistryError", "RegistryRefused", "SimImportError", "SimRecord",
    "default_actor", "resolve",
]
