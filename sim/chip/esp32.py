# The firmware's `esp32` on the virtual device: partitions of the virtual flash image, the
# app slots' otadata as ESP-IDF keeps it (sim/chip/_simotadata.py), and NVS.
import json
import _simcore
import _simflash
import _simotadata

HEAP_DATA = 4
HEAP_EXEC = 1
WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True

_TYPES = {"app": 0, "data": 1}
_SUBTYPES = {
    "factory": 0x00, "ota_0": 0x10, "ota_1": 0x11, "ota": 0x00, "phy": 0x01, "nvs": 0x02,
    "fat": 0x81, "spiffs": 0x82, "littlefs": 0x83,
}


# The board's MicroPython build has the bootloader's app rollback on
# (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE): set_boot() marks the slot NEW, the bootloader makes
# it PENDING_VERIFY as it boots it, and an app that does not confirm itself before the next
# reset is rolled back (docs/ota.md, "Image updates").
_APP_ROLLBACK = True
_ESP_FAIL = -1
_ESP_ERR_OTA_VALIDATE_FAILED = 0x1503
_ENOENT = 2
_IMAGE_MAGIC = 0xE9


def _ota_slots():
    # The OTA app partitions in slot order (ota_0, ota_1, ...), as ESP-IDF counts them.
    slots = [e for e in _simflash.partition_table()
             if e["type"] == "app" and e["subtype"].startswith("ota_")]
    slots.sort(key=lambda e: int(e["subtype"][4:]))
    return slots


def _otadata():
    for e in _simflash.partition_table():
        if e["type"] == "data" and e["subtype"] == "ota":
            return _simflash.FlashPartition(e["offset"], e["size"])
    return None


def _read_otadata(part):
    buf = bytearray(_simotadata.ENTRY_SIZE)
    entries = []
    for sector in (0, 1):
        part.readblocks(sector, buf)
        entries.append(_simotadata.decode(buf))
    return entries


def _write_otadata(part, sector, entry):
    # rewrite_ota_seq(): the sector is erased, then the entry written at its start. A cut in
    # between leaves that sector erased or torn, so the other one decides, as before the write.
    part.erase(sector)
    part.writeblocks(sector, entry.encode(), 0)


def _boot_partition_name():
    # esp_ota_get_boot_partition(): the slot otadata names, else the default the bootloader
    # starts (factory, else ota_0).
    slots = _ota_slots()
    part = _otadata()
    if slots and part is not None:
        entries = _read_otadata(part)
        now = _simotadata.active(entries)
        if now != -1:
            return slots[_simotadata.slot_of(entries[now], len(slots))]["name"]
    if _simflash.find_partition("factory") is not None:
        return "factory"
    return slots[0]["name"] if slots else "factory"


class Partition(_simflash.FlashPartition):
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=4096):
        if id == Partition.BOOT:
            id = _boot_partition_name()
        elif id == Partition.RUNNING:
            id = _simcore.settings.get("running_app", "factory")
        entry = _simflash.find_partition(id)
        if entry is None:
            raise ValueError("partition not found")
        super().__init__(entry["offset"], entry["size"])
        self._entry = entry

    @staticmethod
    def find(type=TYPE_APP, subtype=0xFF, label=None, block_size=4096):
        found = []
        for entry in _simflash.partition_table():
            if _TYPES[entry["type"]] != type:
                continue
            if subtype != 0xFF and _SUBTYPES.get(entry["subtype"], -1) != subtype:
                continue
            if label is not None and entry["name"] != label:
                continue
            found.append(Partition(entry["name"]))
        return found

    def info(self):
        e = self._entry
        return (_TYPES[e["type"]], _SUBTYPES.get(e["subtype"], 0xFF), e["offset"], e["size"],
                e["name"], False)

    def set_boot(self):
        # esp_ota_set_boot_partition(): written to otadata, read by the bootloader at the next
        # boot. Like ESP-IDF, it refuses a slot that holds no app image; the bootloader checks
        # the whole image (segments, checksum, SHA-256) as it boots it.
        e = self._entry
        if e["type"] != "app":
            raise OSError(_ESP_FAIL)
        head = bytearray(1)
        self.readblocks(0, head)
        if head[0] != _IMAGE_MAGIC:
            raise OSError(_ESP_ERR_OTA_VALIDATE_FAILED)
        part = _otadata()
        if part is None:
            raise OSError(_ENOENT)
        if e["subtype"] == "factory":
            for sector in range(part.block_count):  # an erased otadata boots factory
                part.erase(sector)
        else:
            slots = _ota_slots()
            entries = _read_otadata(part)
            index = [s["name"] for s in slots].index(e["name"])
            sector, seq = _simotadata.rewrite_for(entries, index, len(slots))
            entry = entries[sector]
            entry.seq = seq
            entry.state = _simotadata.NEW if _APP_ROLLBACK else _simotadata.UNDEFINED
            _write_otadata(part, sector, entry)
        _simcore.report("set_boot", partition=e["name"])

    def get_next_update(self):
        # esp_ota_get_next_update_partition(NULL): the OTA slot after the running one, else
        # the first.
        slots = _ota_slots()
        if not slots:
            raise OSError(_ENOENT)
        running = _simcore.settings.get("running_app", "factory")
        names = [s["name"] for s in slots]
        if running in names:
            return Partition(names[(names.index(running) + 1) % len(names)])
        return Partition(names[0])

    @staticmethod
    def mark_app_valid_cancel_rollback():
        # esp_ota_mark_app_valid_cancel_rollback(): the active entry becomes VALID (written
        # only when it is not already), so the bootloader keeps this slot.
        part = _otadata()
        if part is None or not _ota_slots():
            raise OSError(_ESP_FAIL)
        entries = _read_otadata(part)
        now = _simotadata.active(entries)
        if now == -1:
            raise OSError(_ESP_FAIL)  # running the factory app
        if entries[now].state != _simotadata.VALID:
            entries[now].state = _simotadata.VALID
            _write_otadata(part, now, entries[now])
        _simcore.report("app_valid")


class NVS:
    # Values live in the board's nvs partition as one JSON document in a power-safe pair of
    # slots; the real ESP-IDF format differs, the behaviour (survives reboots, commit needed)
    # does not.
    _SLOT = 4096

    def __init__(self, namespace):
        self._ns = namespace
        self._pending = None

    @staticmethod
    def _part():
        entry = _simflash.find_partition("nvs")
        if entry is None:
            raise OSError(2)
        return _simflash.FlashPartition(entry["offset"], entry["size"])

    @classmethod
    def _load(cls):
        part = cls._part()
        best = (-1, {})
        buf = bytearray(cls._SLOT)
        for block in (0, 1):
            part.readblocks(block, buf)
            end = buf.find(b"\xff")
            try:
                doc = json.loads(bytes(buf[:end if end >= 0 else len(buf)]))
            except ValueError:
                continue
            if doc.get("gen", -1) > best[0]:
                best = (doc["gen"], doc.get("data", {}))
        return best

    def _values(self):
        if self._pending is None:
            self._pending = self._load()[1]
        return self._pending.setdefault(self._ns, {})

    def set_i32(self, key, value):
        self._values()[key] = ["i32", int(value)]

    def get_i32(self, key):
        entry = self._values().get(key)
        if entry is None or entry[0] != "i32":
            raise OSError(-4354)  # ESP_ERR_NVS_NOT_FOUND
        return entry[1]

    def set_blob(self, key, value):
        import binascii
        self._values()[key] = ["blob", binascii.hexlify(bytes(value)).decode()]

    def get_blob(self, key, buffer):
        import binascii
        entry = self._values().get(key)
        if entry is None or entry[0] != "blob":
            raise OSError(-4354)
        data = binascii.unhexlify(entry[1])
        buffer[:len(data)] = data
        return len(data)

    def erase_key(self, key):
        if self._values().pop(key, None) is None:
            raise OSError(-4354)

    def commit(self):
        gen, _ = self._load()
        doc = json.dumps({"gen": gen + 1, "data": self._pending or {}}).encode()
        if len(doc) > self._SLOT:
            raise OSError(-4357)  # ESP_ERR_NVS_NOT_ENOUGH_SPACE
        # Alternate slots so that a cut mid-commit leaves the previous generation intact.
        self._part().writeblocks((gen + 1) % 2, doc)


def raw_temperature():
    return 120


def idf_heap_info(capabilities):
    return [(0, 0, 0, 0)]


def wake_on_ext0(pin, level):
    pass


def wake_on_ext1(pins, level):
    pass
