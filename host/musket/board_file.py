"""Reading a board file (boards/*.toml) into a checked `musket.boards.Board`, table by
table, with errors that name the file and the field (`musket.boards.load_board` calls
`read_board`)."""

import difflib
import itertools
import re
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

from musket.boards import (
    ACTIVE_LEVELS,
    APP_ALIGNMENT,
    BOARD_NAME_FORM,
    BOARD_NAME_PATTERN,
    CHIPS,
    CONSOLE_UART,
    FILESYSTEM_PARTITION,
    FIRST_PARTITION_OFFSET,
    FLASH_SIZES,
    LAYOUT_PARTITIONS,
    MAX_HEAP,
    MIB,
    MICROPYTHON_VARIANT_FORM,
    MICROPYTHON_VARIANT_PATTERN,
    MICROPYTHON_VERSION_FORM,
    MICROPYTHON_VERSION_PATTERN,
    MIN_HEAP,
    MODEM_FAMILIES,
    PARTITION_ROLES,
    PARTITION_SUBTYPES,
    PARTITION_TABLE_OFFSET,
    PIN_ROLES,
    SECTOR_SIZE,
    SENSOR_KINDS,
    SIZE_PATTERN,
    SIZE_UNITS,
    Board,
    BoardError,
    ChipSpec,
    ControlPin,
    I2cBus,
    Modem,
    Partition,
    PinRole,
    Pins,
    Sensor,
)

# --- reading TOML tables with errors that name the field ---------------------------------

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", dict: "a table"}


def _describe(value: Any) -> str:
    kinds = {bool: "boolean", dict: "table", list: "array", str: "string", float: "float"}
    return f"{kinds.get(type(value), type(value).__name__)} {value!r}"


def _is_a(value: Any, expected: type) -> bool:
    if isinstance(value, bool):  # TOML booleans are never numbers
        return expected is bool
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)


def _parse_size(value: Any) -> int | None:
    """Bytes from 4096, "0x1000", "4K", "4KiB", "1M" or "4MB"; None if unreadable."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return None
    match = SIZE_PATTERN.fullmatch(value.strip())
    if match is None:
        return None
    if match["hex"] is not None:
        return int(match["hex"], 16)
    unit = SIZE_UNITS.get(match["unit"].lower())
    return None if unit is None else int(match["dec"]) * unit


class Table:
    """One TOML table being read; every error it raises names the file and the field."""

    def __init__(self, data: dict[str, Any], path: str, source: str) -> None:
        self.data = data
        self.path = path  # dotted field path, "" for the top level
        self.source = source  # file name

    def field_name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str | None, problem: str) -> BoardError:
        """An error about ``key`` of this table, or about the table itself if key is None."""
        where = self.path if key is None else self.field_name(key)
        return BoardError(
            f"{self.source}: {where}: {problem}" if where else f"{self.source}: {problem}"
        )

    def check_keys(self, allowed: Iterable[str]) -> None:
        """Reject keys nobody reads, so that a typo is reported rather than ignored."""
        allowed = sorted(allowed)
        for key in self.data:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.error(key, f"unknown key ({hint}expected one of: {', '.join(allowed)})")

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, expected: type) -> Any:
        """The value of a required field, which must be of type ``expected``."""
        if key not in self.data:
            raise self.error(key, "missing required field")
        value = self.data[key]
        if not _is_a(value, expected):
            raise self.error(key, f"expected {_TYPE_NAMES[expected]}, got {_describe(value)}")
        return float(value) if expected is float else value

    def text(self, key: str, pattern: re.Pattern[str] | None = None, form: str = "") -> str:
        """A required non-empty string; if ``pattern`` is given, it must match, as ``form`` says."""
        value: str = self.get(key, str)
        if not value.strip():
            raise self.error(key, "must not be empty")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(key, f"{value!r} is not {form}")
        return value

    def positive_int(self, key: str) -> int:
        value: int = self.get(key, int)
        if value <= 0:
            raise self.error(key, f"{value} must be greater than 0")
        return value

    def size(self, key: str) -> int:
        """A size or offset in bytes, written as an integer or a string like "24K"."""
        if key not in self.data:
            raise self.error(key, "missing required field")
        value = _parse_size(self.data[key])
        if value is None or value < 0:
            spellings = "an integer, '0x9000', '24K', '1M' or '4MB'"
            raise self.error(
                key, f"cannot read {_describe(self.data[key])} as a size ({spellings})"
            )
        return value

    def table(self, key: str, allowed: Iterable[str] | None = None) -> "Table":
        """A required sub-table, with its keys checked against ``allowed`` if given."""
        child = Table(self.get(key, dict), self.field_name(key), self.source)
        if allowed is not None:
            child.check_keys(allowed)
        return child

    def tables(self, key: str) -> list["Table"]:
        """An optional array of tables; missing means empty."""
        items = self.data.get(key, [])
        if not isinstance(items, list):
            raise self.error(key, f"expected an array of tables, got {_describe(items)}")
        children = []
        for index, item in enumerate(items):
            where = f"{self.field_name(key)}[{index}]"
            if not isinstance(item, dict):
                raise BoardError(f"{self.source}: {where}: expected a table, got {_describe(item)}")
            children.append(Table(item, where, self.source))
        return children


def _field_names(cls: type) -> list[str]:
    return [item.name for item in fields(cls)]


# --- the board file, table by table -------------------------------------------------------

TOP_LEVEL_KEYS = (
    "name", "description", "chip", "flash_size", "micropython",
    "modem", "pins", "i2c", "sensors", "partitions",
)  # fmt: skip


def read_board(top: Table, path: Path) -> Board:
    top.check_keys(TOP_LEVEL_KEYS)
    name = _read_name(top, path)
    description = top.text("description")
    chip = _read_chip(top)
    flash_size = _read_flash_size(top)
    micropython = top.table("micropython", ("variant", "version", "heap"))
    variant = micropython.text("variant", MICROPYTHON_VARIANT_PATTERN, MICROPYTHON_VARIANT_FORM)
    version = micropython.text("version", MICROPYTHON_VERSION_PATTERN, MICROPYTHON_VERSION_FORM)
    heap = _read_heap(micropython)
    modem = _read_modem(top.table("modem", _field_names(Modem)), chip)
    pins = _read_pins(top.table("pins", PIN_ROLES), chip)
    i2c = _read_i2c(top.table("i2c", _field_names(I2cBus)), chip)
    _check_gpios_unique(top, pins, i2c)
    sensors = _read_sensors(top.tables("sensors"), pins)
    plain, ota = _read_partitions(top.table("partitions", LAYOUT_PARTITIONS), flash_size)
    return Board(
        name=name,
        description=description,
        chip=chip.name,
        flash_size=flash_size,
        micropython_variant=variant,
        micropython_version=version,
        heap=heap,
        modem=modem,
        pins=pins,
        i2c=i2c,
        sensors=sensors,
        partitions_plain=plain,
        partitions_ota=ota,
        path=path,
    )


def _read_heap(micropython: Table) -> int:
    heap = micropython.size("heap")
    if not MIN_HEAP <= heap <= MAX_HEAP:
        raise micropython.error("heap", f"{heap:,} bytes is outside {MIN_HEAP >> 10}K to "
                                        f"{MAX_HEAP >> 10}K (an ESP32's heap without PSRAM is "
                                        "about 110K)")
    return heap


def _read_name(top: Table, path: Path) -> str:
    name = top.text("name", BOARD_NAME_PATTERN, BOARD_NAME_FORM)
    if name != path.stem:
        raise top.error("name", f"{name!r} differs from the file name {path.name!r}")
    return name


def _read_chip(top: Table) -> ChipSpec:
    name = top.get("chip", str)
    if name not in CHIPS:
        raise top.error("chip", f"unknown chip {name!r} (expected one of: {', '.join(CHIPS)})")
    return CHIPS[name]


def _read_flash_size(top: Table) -> int:
    size = top.size("flash_size")
    if size not in FLASH_SIZES:
        choices = ", ".join(f"{choice // MIB}MB" for choice in FLASH_SIZES)
        raise top.error(
            "flash_size", f"{size} bytes is not a flash size (expected one of: {choices})"
        )
    return size


def _read_modem(table: Table, chip: ChipSpec) -> Modem:
    family = table.get("family", str)
    if family not in MODEM_FAMILIES:
        known = ", ".join(sorted(MODEM_FAMILIES))
        raise table.error("family", f"unknown family {family!r} (expected one of: {known})")
    uart = table.get("uart", int)
    if uart not in chip.modem_uarts:
        why = "is the REPL console" if uart == CONSOLE_UART else f"does not exist on {chip.name}"
        choices = ", ".join(map(str, chip.modem_uarts))
        raise table.error("uart", f"UART {uart} {why} (use one of: {choices})")
    modem = Modem(
        family=family,
        uart=uart,
        baudrate=table.positive_int("baudrate"),
        pwrkey_on_ms=table.positive_int("pwrkey_on_ms"),
        pwrkey_off_ms=table.positive_int("pwrkey_off_ms"),
        boot_ms=table.positive_int("boot_ms"),
        power_off_ms=table.positive_int("power_off_ms"),
    )
    window = MODEM_FAMILIES[family]
    _check_window(table, "pwrkey_on_ms", modem.pwrkey_on_ms, window.on, family)
    _check_window(table, "pwrkey_off_ms", modem.pwrkey_off_ms, window.off, family)
    return modem


def _check_window(
    table: Table, key: str, value: int, window: tuple[int, int | None], family: str
) -> None:
    low, high = window
    if low <= value and (high is None or value <= high):
        return
    limits = f"at least {low} ms" if high is None else f"{low}-{high} ms"
    raise table.error(key, f"{value} ms is outside the {family} datasheet window ({limits})")


def _read_pins(table: Table, chip: ChipSpec) -> Pins:
    lines: dict[str, Any] = {}
    for name, role in PIN_ROLES.items():
        if not table.has(name):
            if role.required:
                raise table.error(name, "missing required field")
        elif role.control:
            lines[name] = _read_control_pin(table, name, role, chip)
        else:
            lines[name] = _read_gpio(table, name, role, chip)
    return Pins(**lines)


def _read_control_pin(table: Table, name: str, role: PinRole, chip: ChipSpec) -> ControlPin:
    if not isinstance(table.data[name], dict):
        shape = '{ pin = N, active = "high" | "low" }'
        raise table.error(name, f"expected {shape}, got {_describe(table.data[name])}")
    line = table.table(name, _field_names(ControlPin))
    gpio = _read_gpio(line, "pin", role, chip)
    active = line.get("active", str)
    if active not in ACTIVE_LEVELS:
        raise line.error("active", f"{active!r} is not an active level (expected 'high' or 'low')")
    return ControlPin(pin=gpio, active=active)


def _read_gpio(table: Table, key: str, role: PinRole, chip: ChipSpec) -> int:
    gpio: int = table.get(key, int)
    problem = chip.gpio_problem(gpio, output=role.output, adc=role.adc)
    if problem:
        raise table.error(key, problem)
    return gpio


def _read_i2c(table: Table, chip: ChipSpec) -> I2cBus:
    bus_id = table.get("id", int)
    if bus_id not in chip.i2c_ids:
        choices = ", ".join(map(str, chip.i2c_ids))
        raise table.error(
            "id", f"I2C {bus_id} does not exist on {chip.name} (use one of: {choices})"
        )
    # The controller drives SCL and SDA low, so both need output-capable GPIOs.
    bus_line = PinRole(output=True)
    return I2cBus(
        id=bus_id,
        scl=_read_gpio(table, "scl", bus_line, chip),
        sda=_read_gpio(table, "sda", bus_line, chip),
        freq=table.positive_int("freq"),
    )


def _check_gpios_unique(top: Table, pins: Pins, i2c: I2cBus) -> None:
    users = {
        f"pins.{name}" + (".pin" if PIN_ROLES[name].control else ""): gpio
        for name, gpio in pins.gpios().items()
    }
    users.update({"i2c.scl": i2c.scl, "i2c.sda": i2c.sda})
    first_user: dict[int, str] = {}
    for where, gpio in users.items():
        if gpio in first_user:
            problem = f"GPIO {gpio} is already used by {first_user[gpio]}"
            raise BoardError(f"{top.source}: {where}: {problem}")
        first_user[gpio] = where


def _read_sensors(tables: list[Table], pins: Pins) -> tuple[Sensor, ...]:
    sensors: list[Sensor] = []
    claimed: dict[str, str] = {}  # resource -> the sensor that uses it
    for table in tables:
        sensor = _read_sensor(table, pins)
        resource = sensor.resource()
        if resource in claimed:
            raise table.error(None, f"{resource} is already used by {claimed[resource]}")
        claimed[resource] = table.path
        sensors.append(sensor)
    return tuple(sensors)


def _read_sensor(table: Table, pins: Pins) -> Sensor:
    kind_name = table.get("kind", str)
    kind = SENSOR_KINDS.get(kind_name)
    if kind is None:
        known = ", ".join(sorted(SENSOR_KINDS))
        raise table.error("kind", f"unknown sensor kind {kind_name!r} (expected one of: {known})")
    table.check_keys(["kind", *_field_names(kind)])
    if kind.pin_name is not None and getattr(pins, kind.pin_name) is None:
        raise table.error(
            "kind", f"a {kind_name} sensor needs pins.{kind.pin_name}, which is unset"
        )
    params = {}
    param_types = get_type_hints(kind)
    for param in fields(kind):
        value = table.get(param.name, param_types[param.name])
        problem = param.metadata["check"](value)
        if problem:
            raise table.error(param.name, problem)
        params[param.name] = value
    return kind(**params)


def _read_partitions(
    table: Table, flash_size: int
) -> tuple[tuple[Partition, ...], tuple[Partition, ...]]:
    plain = _read_layout(table, "plain", flash_size)
    ota = _read_layout(table, "ota", flash_size)
    return plain, ota


def _read_layout(table: Table, layout: str, flash_size: int) -> tuple[Partition, ...]:
    if not table.has(layout):
        raise table.error(layout, "missing required field")
    entries = [(entry, _read_partition(entry, flash_size)) for entry in table.tables(layout)]
    _check_names_unique(entries)
    _check_roles(table, layout, entries)
    _check_no_overlap(entries)
    _check_filesystem_fills_flash(entries, flash_size)
    return tuple(sorted((partition for _, partition in entries), key=lambda p: p.offset))


def _read_partition(entry: Table, flash_size: int) -> Partition:
    entry.check_keys(_field_names(Partition))
    kind = entry.get("type", str)
    if kind not in PARTITION_SUBTYPES:
        raise entry.error("type", f"unknown partition type {kind!r} (expected 'app' or 'data')")
    subtype = entry.get("subtype", str)
    if subtype not in PARTITION_SUBTYPES[kind]:
        known = ", ".join(PARTITION_SUBTYPES[kind])
        raise entry.error(
            "subtype", f"{subtype!r} is not an {kind} subtype (expected one of: {known})"
        )
    partition = Partition(
        name=entry.text("name"),
        type=kind,
        subtype=subtype,
        offset=entry.size("offset"),
        size=entry.size("size"),
    )
    _check_placement(entry, partition, flash_size)
    return partition


def _check_placement(entry: Table, partition: Partition, flash_size: int) -> None:
    offset, size = partition.offset, partition.size
    if partition.type == "app" and offset % APP_ALIGNMENT:
        reason = "app partitions must be 64 KiB aligned"
        raise entry.error("offset", f"{offset:#x} is not aligned to {APP_ALIGNMENT:#x} ({reason})")
    if offset % SECTOR_SIZE:
        reason = "partitions start on a 4 KiB flash sector"
        raise entry.error("offset", f"{offset:#x} is not aligned to {SECTOR_SIZE:#x} ({reason})")
    if offset < FIRST_PARTITION_OFFSET:
        reason = f"the bootloader and the partition table at {PARTITION_TABLE_OFFSET:#x} come first"
        raise entry.error("offset", f"{offset:#x} is below {FIRST_PARTITION_OFFSET:#x} ({reason})")
    if size <= 0 or size % SECTOR_SIZE:
        reason = "flash erases in 4 KiB sectors"
        raise entry.error(
            "size", f"{size:#x} is not a positive multiple of {SECTOR_SIZE:#x} ({reason})"
        )
    if partition.end > flash_size:
        raise entry.error(
            "size",
            f"{partition.name!r} ends at {partition.end:#x}, past the flash end {flash_size:#x}",
        )


def _check_names_unique(entries: list[tuple[Table, Partition]]) -> None:
    first_entry: dict[str, str] = {}
    for entry, partition in entries:
        if partition.name in first_entry:
            where = first_entry[partition.name]
            raise entry.error("name", f"duplicate partition name {partition.name!r} (also {where})")
        first_entry[partition.name] = entry.path


def _check_roles(table: Table, layout: str, entries: list[tuple[Table, Partition]]) -> None:
    by_name = {partition.name: (entry, partition) for entry, partition in entries}
    for name in LAYOUT_PARTITIONS[layout]:
        if name not in by_name:
            raise table.error(layout, f"missing partition {name!r}")
        entry, partition = by_name[name]
        expected_type, expected_subtype = PARTITION_ROLES[name]
        if (partition.type, partition.subtype) != (expected_type, expected_subtype):
            found = f"{partition.type}/{partition.subtype}"
            key = "type" if partition.type != expected_type else "subtype"
            raise entry.error(
                key, f"{name!r} must be {expected_type}/{expected_subtype}, not {found}"
            )


def _check_no_overlap(entries: list[tuple[Table, Partition]]) -> None:
    in_flash_order = sorted(entries, key=lambda item: item[1].offset)
    for (_, before), (entry, after) in itertools.pairwise(in_flash_order):
        if after.offset < before.end:
            span = f"{before.offset:#x}-{before.end:#x}"
            raise entry.error(
                "offset", f"{after.name!r} at {after.offset:#x} overlaps {before.name!r} ({span})"
            )


def _check_filesystem_fills_flash(entries: list[tuple[Table, Partition]], flash_size: int) -> None:
    for entry, partition in entries:
        if partition.name == FILESYSTEM_PARTITION and partition.end != flash_size:
            problem = f"ends at {partition.end:#x}, but the filesystem must run to the flash end"
            raise entry.error("size", f"{partition.name!r} {problem} {flash_size:#x}")
