# The firmware's `esp32` on the virtual device: partitions of the virtual flash image, and NVS.
import json
import _simcore
import _simflash

HEAP_DATA = 4
HEAP_EXEC = 1
WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True

_TYPES = {"app": 0, "data": 1}
_SUBTYPES = {
    "factory": 0x00, "ota_0": 0x10, "ota_1": 0x11, "ota": 0x00, "phy": 0x01, "nvs": 0x02,
    "fat": 0x81, "spiffs": 0x82, "littlefs": 0x83,
}


class Partition(_simflash.FlashPartition):
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=4096):
        if id == Partition.BOOT or id == Partition.RUNNING:
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
        _simcore.report("set_boot", partition=self._entry["name"])
        _simcore.settings["next_app"] = self._entry["name"]

    def get_next_update(self):
        running = _simcore.settings.get("running_app", "factory")
        for entry in _simflash.partition_table():
            if entry["subtype"].startswith("ota_") and entry["name"] != running:
                return Partition(entry["name"])
        raise OSError(2)

    @staticmethod
    def mark_app_valid_cancel_rollback():
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
