# The otadata partition as ESP-IDF lays it out: which OTA app slot boots, and how far the app
# there has got on its trial. Two 4 KB sectors, each opening with one esp_ota_select_entry_t
# (esp_flash_partitions.h): ota_seq u32, seq_label[20], ota_state u32, crc u32, little-endian,
# the crc being CRC-32 of ota_seq's four bytes from 0xFFFFFFFF (bootloader_common.c:
# esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4), which is zlib's crc32(bytes, 0xFFFFFFFF)).
# The entry with the higher ota_seq among the valid ones is active and names the slot
# (ota_seq - 1) % number of OTA slots.
#
# One codec for both sides of the virtual chip: esp32.Partition's set_boot() and
# mark_app_valid_cancel_rollback() (MicroPython and CPython), and the host's boot stage, which
# plays the second-stage bootloader (musket_sim.bootrom).
import binascii
import struct

SECTOR = 4096
ENTRY_FORMAT = "<I20sII"
ENTRY_SIZE = 32
EMPTY = 0xFFFFFFFF  # an erased word: no sequence number, or no state

# esp_ota_img_states_t
NEW = 0  # set_boot() with rollback enabled: not yet booted
PENDING_VERIFY = 1  # booted once by the bootloader: waits for the app to confirm itself
VALID = 2
INVALID = 3  # the app asked for a rollback
ABORTED = 4  # still pending at the next boot: the bootloader gave up on it
UNDEFINED = EMPTY  # set_boot() with rollback disabled

STATE_NAMES = {NEW: "new", PENDING_VERIFY: "pending_verify", VALID: "valid",
               INVALID: "invalid", ABORTED: "aborted", UNDEFINED: "undefined"}

_NO_LABEL = b"\xff" * 20


def crc(seq):
    return binascii.crc32(struct.pack("<I", seq), EMPTY) & 0xFFFFFFFF


class Entry:
    def __init__(self, seq=EMPTY, state=UNDEFINED, label=_NO_LABEL, check=None):
        self.seq = seq
        self.state = state
        self.label = label
        self.crc = crc(seq) if check is None else check

    def encode(self):
        # The crc is always recomputed from the sequence number, as rewrite_ota_seq() does.
        return struct.pack(ENTRY_FORMAT, self.seq, self.label, self.state, crc(self.seq))

    def invalid(self):
        # bootloader_common_ota_select_invalid(): not a candidate to boot.
        return self.seq == EMPTY or self.state == INVALID or self.state == ABORTED

    def valid(self):
        # bootloader_common_ota_select_valid()
        return not self.invalid() and self.crc == crc(self.seq)

    def initial(self):
        # Erased, or torn: the bootloader treats both as "no otadata yet".
        return self.seq == EMPTY or self.crc != crc(self.seq)


def decode(raw):
    seq, label, state, check = struct.unpack(ENTRY_FORMAT, bytes(raw[:ENTRY_SIZE]))
    return Entry(seq, state, label, check)


def select(entries, ok, highest=True):
    # bootloader_common_select_otadata(): of the entries `ok` marks, the one with the higher
    # (or lower) sequence number, the first on a tie; -1 when none is marked.
    if ok[0] and ok[1]:
        pick = max(entries[0].seq, entries[1].seq) if highest else \
            min(entries[0].seq, entries[1].seq)
        return 0 if pick == entries[0].seq else 1
    for i in (0, 1):
        if ok[i]:
            return i
    return -1


def active(entries):
    # bootloader_common_get_active_otadata(): the entry that says which slot boots, or -1.
    return select(entries, [entries[0].valid(), entries[1].valid()])


def slot_of(entry, slots):
    return (entry.seq - 1) % slots


def rewrite_for(entries, slot, slots):
    # esp_rewrite_ota_data(): (sector, sequence number) that make `slot` the one that boots:
    # the inactive sector gets the smallest number above the active one's that maps to it.
    now = active(entries)
    if now == -1:
        return 0, slot + 1
    seq = entries[now].seq
    i = 0
    while seq > (slot + 1) % slots + i * slots:
        i += 1
    return (~now) & 1, (slot + 1) % slots + i * slots
