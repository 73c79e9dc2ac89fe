"""What the chip does at reset before any Python runs, on the virtual flash as written: the
ROM checks the second-stage bootloader's image header, the bootloader reads the partition
table at 0x8000 and otadata (which OTA slot boots, and how far its app got on its trial:
the bootloader writes the changes ESP-IDF's makes with app rollback enabled), and boots an app
partition whose image checks out (magic, segments, checksum, SHA-256). Each step prints what
the chip (ESP32 or ESP32-S3) prints on UART0; a flash without a valid bootloader, table or
app does not boot the firmware and says why in the same words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from musket.parttable import PartitionTableError, decode
from musket_sim.chip import _simotadata as otadata_codec
from musket_sim.esp_formats import BOOTLOADER_OFFSETS, AppImage, ImageError, read_image

PARTITION_TABLE_OFFSET = 0x8000
PARTITION_TABLE_SIZE = 0xC00


@dataclass(frozen=True)
class RomLog:
    """How one chip's ROM opens its boot log on UART0: its banner, the boot mode its
    strapping pins select for a flash boot, and its name for each reset reason."""

    banner: tuple[str, ...]
    boot_mode: str
    reset_reasons: dict[int, str]  # machine.reset_cause() value (see device.py) -> ROM's words

    def reset_line(self, reset_cause: int) -> str:
        reason = self.reset_reasons.get(reset_cause, self.reset_reasons[1])
        return f"rst:{reason},{self.boot_mode}"


ROM_LOGS = {
    "esp32": RomLog(
        banner=("ets Jul 29 2019 12:21:46", ""),
        boot_mode="boot:0x13 (SPI_FAST_FLASH_BOOT)",
        reset_reasons={1: "0x1 (POWERON_RESET)", 2: "0x1 (POWERON_RESET)",
                       3: "0x7 (TG0WDT_SYS_RESET)", 4: "0x5 (DEEPSLEEP_RESET)",
                       5: "0xc (SW_CPU_RESET)"}),
    "esp32s3": RomLog(
        banner=("ESP-ROM:esp32s3-20210327", "Build:Mar 27 2021"),
        boot_mode="boot:0x8 (SPI_FAST_FLASH_BOOT)",
        reset_reasons={1: "0x1 (POWERON)", 2: "0x1 (POWERON)", 3: "0x7 (TG0WDT_SYS_RST)",
                       4: "0x5 (DSLEEP)", 5: "0xc (RTC_SW_CPU_RST)"}),
}


@dataclass
class BootOutcome:
    lines: list[str] = field(default_factory=list)  # the boot log, as UART0 shows it
    partitions: list[dict] | None = None  # the flashed table, when it was read
    app: str | None = None  # the partition booted
    image: AppImage | None = None
    error: str | None = None  # why the firmware does not run
    # What the bootloader wrote to flash (otadata: a slot's trial state), (offset, bytes), in
    # order: the caller writes them to the flash image.
    writes: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def bootable(self) -> bool:
        return self.error is None


def boot(flash: bytes, chip: str, reset_cause: int) -> BootOutcome:
    """Runs the ROM and bootloader stages over `flash`: the bootloader picks the app partition
    as ESP-IDF's does with app rollback enabled (otadata, see `_start_index`) and boots the
    first whose image is valid, trying the others after it as ESP-IDF does."""
    out = BootOutcome()
    rom = ROM_LOGS[chip]
    out.lines += [*rom.banner, rom.reset_line(reset_cause)]
    base = BOOTLOADER_OFFSETS[chip]
    try:
        read_image(flash, base, chip, limit=PARTITION_TABLE_OFFSET - base)
    except ImageError as e:
        word = int.from_bytes(flash[base:base + 4], "little")
        out.lines.append(f"invalid header: {word:#010x}")
        out.error = f"no valid bootloader at {base:#x} ({e}): the ROM prints 'invalid " \
                    f"header: {word:#010x}' and resets, over and over"
        return out
    out.lines.append("I (31) boot: ESP-IDF v5.4.1 2nd stage bootloader")
    try:
        table = decode(flash[PARTITION_TABLE_OFFSET:PARTITION_TABLE_OFFSET
                             + PARTITION_TABLE_SIZE])
        for p in table:
            if p.offset + p.size > len(flash):
                raise PartitionTableError(f"partition {p.name} at {p.offset:#x} lies past the "
                                          f"end of the {len(flash) >> 20} MB flash")
    except PartitionTableError as e:
        out.lines += [f"E (42) flash_parts: {e}", "E (42) boot: Failed to verify partition "
                      "table", "E (42) boot: load partition table error!"]
        out.error = f"partition table at {PARTITION_TABLE_OFFSET:#x} unreadable: {e}"
        return out
    out.partitions = [{"name": p.name, "type": p.type, "subtype": p.subtype,
                       "offset": p.offset, "size": p.size} for p in table]
    factory = next((p for p in table if p.type == "app" and p.subtype == "factory"), None)
    slots = sorted((p for p in table if p.type == "app" and p.subtype.startswith("ota_")),
                   key=lambda p: int(p.subtype[4:]))
    otadata = next((p for p in table if p.type == "data" and p.subtype == "ota"), None)
    start, initial = _start_index(flash, otadata, slots, factory is not None, out)
    # bootloader_utility_load_boot_image(): from the chosen index down to the factory app
    # (index -1), then up through the OTA slots after it.
    order = [*range(start, -2, -1), *range(start + 1, len(slots))]
    for index in order:
        p = factory if index == -1 else slots[index]
        if p is None:
            continue
        try:
            image = read_image(flash, p.offset, chip, limit=p.size)
        except ImageError as e:
            label = "Factory app" if index == -1 else f"OTA app {p.name}"
            out.lines += [f"E (64) esp_image: {e}",
                          f"E (64) boot: {label} partition is not bootable"]
            continue
        if index >= 0 and initial and otadata is not None:
            # set_actual_ota_seq(): no factory app and no otadata yet: the slot that boots
            # is written down as valid.
            _write_entry(out, otadata, 0, otadata_codec.Entry(index + 1, otadata_codec.VALID))
            out.lines.append(f"I (78) boot: Set actual ota_seq={index + 1} in otadata[0]")
        out.app, out.image = p.name, image
        out.lines += [f"I (80) boot: Loaded app from partition at offset {p.offset:#x}",
                      f"I (91) app_init: Project name:     {image.project or '?'}",
                      f"I (91) app_init: App version:      {image.version or '?'}",
                      f"I (91) app_init: ESP-IDF:          {image.idf_version or '?'}"]
        return out
    out.lines.append("E (70) boot: No bootable app partitions in the partition table")
    out.error = "no bootable app partition: " + (
        "; ".join(line.split(": ", 1)[1] for line in out.lines if "esp_image" in line)
        or "the table has no app partition")
    return out


def read_otadata(flash: bytes, otadata) -> list:
    """The two entries of the otadata partition `otadata` (a table entry)."""
    return [otadata_codec.decode(flash[otadata.offset + i * otadata_codec.SECTOR:][
        :otadata_codec.ENTRY_SIZE]) for i in (0, 1)]


def _write_entry(out: BootOutcome, otadata, sector: int, entry) -> None:
    # write_otadata(): the sector erased, the entry at its start.
    raw = entry.encode()
    out.writes.append((otadata.offset + sector * otadata_codec.SECTOR,
                       raw + b"\xff" * (otadata_codec.SECTOR - len(raw))))


def _start_index(flash: bytes, otadata, slots: list, has_factory: bool,
                 out: BootOutcome) -> tuple[int, bool]:
    """bootloader_utility_get_selected_boot_partition() with CONFIG_BOOTLOADER_APP_ROLLBACK_
    ENABLE: (the index to try first, -1 for the factory app; whether otadata is in its initial
    state). A slot still PENDING_VERIFY (booted once, never confirmed) is ABORTED first, so
    the other slot's entry decides; a NEW slot about to boot becomes PENDING_VERIFY."""
    if otadata is None or not slots:
        return -1, False
    entries = read_otadata(flash, otadata)
    for i, entry in enumerate(entries):
        if entry.state == otadata_codec.PENDING_VERIFY:
            entry.state = otadata_codec.ABORTED
            _write_entry(out, otadata, i, entry)
    if entries[0].invalid() and entries[1].invalid():
        if has_factory:
            return -1, False
        return 0, entries[0].initial() and entries[1].initial()
    active = otadata_codec.active(entries)
    if active == -1:
        what = "falling back to factory" if has_factory else "and no factory, will try " \
            "all partitions"
        out.lines.append(f"E (60) boot: ota data partition invalid, {what}")
        return -1, False
    if entries[active].state == otadata_codec.NEW:
        entries[active].state = otadata_codec.PENDING_VERIFY
        _write_entry(out, otadata, active, entries[active])
    return otadata_codec.slot_of(entries[active], len(slots)), False
