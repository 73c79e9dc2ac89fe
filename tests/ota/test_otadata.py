"""otadata as ESP-IDF keeps it: the codec (sim/chip/_simotadata.py) against entries built here
from ESP-IDF's documented layout, the boot stage's choices (the second-stage bootloader with
app rollback enabled, musket_sim.bootrom), and esp32.Partition's set_boot(),
get_next_update() and mark_app_valid_cancel_rollback() on a virtual device under both
interpreters, each boot's slot chosen by the boot stage from what they wrote."""

from __future__ import annotations

import binascii
import struct

import pytest

from musket.boards import load_board
from musket_sim import bootrom
from musket_sim.chip import _simotadata as otadata
from musket_sim.esp_formats import stand_in_image

BOARD = "esp32-sim7080g"
SECTOR = 0x1000


def esp_idf_entry(seq: int, state: int, crc: int | None = None) -> bytes:
    """An esp_ota_select_entry_t (esp_flash_partitions.h) as ESP-IDF writes it: ota_seq,
    seq_label[20] (left erased), ota_state, crc, little-endian; crc from
    bootloader_common_ota_select_crc(): esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4)."""
    if crc is None:
        crc = binascii.crc32(seq.to_bytes(4, "little"), 0xFFFFFFFF)
    return seq.to_bytes(4, "little") + b"\xff" * 20 + state.to_bytes(4, "little") + \
        crc.to_bytes(4, "little")


# -- the codec ------------------------------------------------------------------------------

def test_an_entry_is_32_bytes_laid_out_as_esp_idf_writes_it():
    # The first sector of a device that booted ota_0 once from blank otadata (the bootloader's
    # set_actual_ota_seq()): 01 00 00 00, 20 x ff, 02 00 00 00, 9a 98 43 47.
    raw = otadata.Entry(1, otadata.VALID).encode()
    assert raw == esp_idf_entry(1, 2)
    assert raw[-4:] == bytes.fromhex("9a984347")
    assert struct.calcsize(otadata.ENTRY_FORMAT) == otadata.ENTRY_SIZE == len(raw) == 32


def test_entries_decode_with_their_state_and_crc_check():
    assert otadata.decode(esp_idf_entry(7, 1)).valid()
    entry = otadata.decode(esp_idf_entry(7, 1))
    assert (entry.seq, entry.state) == (7, otadata.PENDING_VERIFY)
    assert not otadata.decode(esp_idf_entry(7, 1, crc=0x12345678)).valid()  # torn or damaged
    assert not otadata.decode(b"\xff" * 32).valid()  # erased
    assert otadata.decode(b"\xff" * 32).initial()
    for state in (otadata.INVALID, otadata.ABORTED):
        assert not otadata.decode(esp_idf_entry(7, state)).valid()
    for state in (otadata.NEW, otadata.VALID, otadata.UNDEFINED):
        assert otadata.decode(esp_idf_entry(7, state)).valid()


def test_the_valid_entry_with_the_higher_sequence_number_is_active():
    entries = [otadata.decode(esp_idf_entry(4, 2)), otadata.decode(esp_idf_entry(5, 2))]
    assert otadata.active(entries) == 1
    assert otadata.slot_of(entries[1], 2) == 0  # (5 - 1) % 2
    entries[1] = otadata.decode(esp_idf_entry(5, otadata.ABORTED))
    assert otadata.active(entries) == 0
    entries[0] = otadata.decode(b"\xff" * 32)
    assert otadata.active(entries) == -1


def test_set_boot_numbers_follow_esp_idf():
    # esp_rewrite_ota_data()'s own example: otadata[0] at 4, otadata[1] at 5, 8 slots; to run
    # ota[7] the inactive sector (0) gets 8.
    entries = [otadata.decode(esp_idf_entry(4, 2)), otadata.decode(esp_idf_entry(5, 2))]
    assert otadata.rewrite_for(entries, 7, 8) == (0, 8)
    # Two slots, as the boards have: blank otadata, then each switch in turn.
    blank = [otadata.decode(b"\xff" * 32)] * 2
    assert otadata.rewrite_for(blank, 1, 2) == (0, 2)
    one = [otadata.decode(esp_idf_entry(1, 2)), otadata.decode(b"\xff" * 32)]
    assert otadata.rewrite_for(one, 1, 2) == (1, 2)
    two = [otadata.decode(esp_idf_entry(1, 2)), otadata.decode(esp_idf_entry(2, 2))]
    assert otadata.rewrite_for(two, 0, 2) == (0, 3)
    # The slot it runs already: ESP-IDF writes the same number to the other sector (a tie
    # goes to sector 0, which names the same slot).
    assert otadata.rewrite_for(two, 1, 2) == (0, 2)


# -- the boot stage ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ota_flash(tmp_path_factory) -> bytearray:
    """A built flash image of the OTA layout with valid app images in both slots."""
    from musket_sim.flash_image import FlashImage

    board = load_board(BOARD)
    path = tmp_path_factory.mktemp("flash") / "flash.bin"
    FlashImage(board, True, path).create("micropython", "ota_0", None, with_firmware=False)
    flash = bytearray(path.read_bytes())
    slot = board.partition("ota_1", True)
    app = stand_in_image(board.chip, "micropython", "v1.28.1")
    flash[slot.offset:slot.offset + len(app)] = app
    return flash


def _with_otadata(flash: bytearray, first: bytes, second: bytes) -> bytearray:
    at = load_board(BOARD).partition("otadata", True).offset
    out = bytearray(flash)
    out[at:at + SECTOR * 2] = b"\xff" * SECTOR * 2
    out[at:at + len(first)] = first
    out[at + SECTOR:at + SECTOR + len(second)] = second
    return out


def _boot(flash: bytearray) -> tuple[bootrom.BootOutcome, list]:
    outcome = bootrom.boot(bytes(flash), "esp32", 1)
    for offset, data in outcome.writes:
        flash[offset:offset + len(data)] = data
    part = load_board(BOARD).partition("otadata", True)
    return outcome, bootrom.read_otadata(bytes(flash), part)


def test_blank_otadata_boots_ota_0_and_records_it(ota_flash):
    flash = _with_otadata(ota_flash, b"", b"")
    outcome, entries = _boot(flash)
    assert outcome.app == "ota_0"
    assert "I (78) boot: Set actual ota_seq=1 in otadata[0]" in outcome.lines
    assert (entries[0].seq, entries[0].state) == (1, otadata.VALID)
    outcome, _ = _boot(flash)
    assert outcome.app == "ota_0" and not outcome.writes  # nothing more to write


def test_a_new_slot_boots_pending_and_is_aborted_at_the_next_boot(ota_flash):
    flash = _with_otadata(ota_flash, esp_idf_entry(1, otadata.VALID),
                          esp_idf_entry(2, otadata.NEW))
    outcome, entries = _boot(flash)
    assert outcome.app == "ota_1"
    assert entries[1].state == otadata.PENDING_VERIFY
    outcome, entries = _boot(flash)  # never confirmed: rolled back
    assert outcome.app == "ota_0"
    assert entries[1].state == otadata.ABORTED and entries[0].state == otadata.VALID
    outcome, _ = _boot(flash)
    assert outcome.app == "ota_0" and not outcome.writes


def test_a_confirmed_slot_keeps_booting(ota_flash):
    flash = _with_otadata(ota_flash, esp_idf_entry(1, otadata.VALID),
                          esp_idf_entry(2, otadata.VALID))
    for _ in range(2):
        outcome, entries = _boot(flash)
        assert outcome.app == "ota_1" and not outcome.writes


def test_a_slot_whose_image_fails_its_checks_is_not_booted(ota_flash):
    flash = _with_otadata(ota_flash, esp_idf_entry(1, otadata.VALID),
                          esp_idf_entry(2, otadata.NEW))
    slot = load_board(BOARD).partition("ota_1", True)
    flash[slot.offset + 100] ^= 0x01  # one bit of the new image's code
    outcome, _ = _boot(flash)
    assert outcome.app == "ota_0"
    assert any("checksum failed" in line or "hash failed" in line for line in outcome.lines)
    assert "E (64) boot: OTA app ota_1 partition is not bootable" in outcome.lines


def test_a_torn_entry_leaves_the_other_in_charge(ota_flash):
    torn = esp_idf_entry(2, otadata.NEW)[:10] + b"\xff" * 22
    flash = _with_otadata(ota_flash, esp_idf_entry(1, otadata.VALID), torn)
    outcome, _ = _boot(flash)
    assert outcome.app == "ota_0"


# -- esp32.Partition on the virtual device, both interpreters ------------------------------------

SWITCH = """
import esp32
running = esp32.Partition(esp32.Partition.RUNNING)
target = running.get_next_update()
print("RUNNING", running.info()[4], "NEXT", target.info()[4])
buf = bytearray(4096)
for block in range(%d):
    running.readblocks(block, buf)
    target.ioctl(6, block)
    target.writeblocks(block, buf, 0)
target.set_boot()
print("BOOT", esp32.Partition(esp32.Partition.BOOT).info()[4])
"""

WHO = """
import esp32
print("RUNNING", esp32.Partition(esp32.Partition.RUNNING).info()[4])
"""

CONFIRM = WHO + "esp32.Partition.mark_app_valid_cancel_rollback()\nprint('CONFIRMED')\n"


def _entries(device) -> list:
    part = device.board.partition("otadata", True)
    return bootrom.read_otadata(device.image.read_bytes(), part)


def _script(device, source: str) -> str:
    result = device.run(30, script=source)
    assert not result.errors, result.errors
    return result.script_output


def test_set_boot_switches_slots_and_the_boot_stage_rolls_back(make_device):
    device = make_device(BOARD, ota=True)
    image_blocks = 2  # the stand-in app image is under 8 KB
    out = _script(device, SWITCH % image_blocks)
    assert "RUNNING ota_0 NEXT ota_1" in out and "BOOT ota_1" in out, out
    entries = _entries(device)
    assert (entries[1].seq, entries[1].state) == (2, otadata.NEW)

    out = _script(device, WHO)  # the new slot's first boot: not confirmed
    assert "RUNNING ota_1" in out, out
    assert device.last_boot.app == "ota_1"
    assert _entries(device)[1].state == otadata.PENDING_VERIFY

    out = _script(device, WHO)  # the next boot rolls it back
    assert "RUNNING ota_0" in out, out
    assert _entries(device)[1].state == otadata.ABORTED


def test_a_slot_that_confirms_itself_stays(make_device):
    device = make_device(BOARD, ota=True)
    _script(device, SWITCH % 2)
    out = _script(device, CONFIRM)
    assert "RUNNING ota_1" in out and "CONFIRMED" in out, out
    assert _entries(device)[1].state == otadata.VALID
    for _ in range(2):
        out = _script(device, WHO)
        assert "RUNNING ota_1" in out, out
    result = device.run(1, script=WHO)
    assert [b.app for b in result.boot_log] == ["ota_1"]
