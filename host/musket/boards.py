"""Board definitions: the TOML files in boards/, loaded into typed, checked data.

A board file names the chip, flash size, MicroPython build, modem family and its PWRKEY
timing, pins, I2C bus, sensors and two partition tables (plain and OTA). Adding a board is
adding a file; a bad file is rejected with an error naming the file and the field, e.g.
``esp32-a7670.toml: modem.family: unknown family 'sim9999' (expected one of: ...)``.

Pins: a line whose level means nothing by itself (UART, I2C, ADC, pulse input) is a bare
GPIO number. A control line (pwrkey, status, reset, modem_power) is an inline table
``{ pin = 4, active = "high" }``; ``active`` is the GPIO level, as the ESP32 sees it after
any transistor or level shifter on the board, that asserts the line: PWRKEY pressed, modem
running (status), reset held, modem supply on (modem_power).

Sizes and offsets are integers (TOML accepts ``0x9000``) or strings: ``"0x9000"``,
``"24K"``, ``"1M"``, ``"4MB"``. K, KB and KiB all mean 1024 bytes and M, MB and MiB
1024 * 1024, because flash chips are sized in binary units.
"""

import difflib
import itertools
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

from musket.errors import BadInput

BOARDS_DIR_ENV = "MUSKET_BOARDS_DIR"
BOARD_SUFFIX = ".toml"
BOARD_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")
MICROPYTHON_VARIANT_PATTERN = re.compile(r"[A-Z0-9_]+")
MICROPYTHON_VERSION_PATTERN = re.compile(r"\d+\.\d+(\.\d+)?")
BOARD_NAME_FORM = "lower-case letters, digits and '-', like 'esp32-a7670'"
MICROPYTHON_VARIANT_FORM = "a MicroPython board name like 'ESP32_GENERIC'"
MICROPYTHON_VERSION_FORM = "a version like '1.28'"

KIB = 1024
MIB = 1024 * KIB
# A board's Python heap: below 32K not even the firmware's boot fits; above 8M it is not an
# ESP32's internal RAM nor its PSRAM.
MIN_HEAP = 32 * KIB
MAX_HEAP = 8 * MIB
SIZE_UNITS = {"": 1, "k": KIB, "kb": KIB, "kib": KIB, "m": MIB, "mb": MIB, "mib": MIB}
SIZE_PATTERN = re.compile(r"(?:0x(?P<hex>[0-9a-f]+)|(?P<dec>\d+)\s*(?P<unit>[a-z]*))", re.I)
# The sizes esptool's --flash_size accepts.
FLASH_SIZES = tuple(megabytes * MIB for megabytes in (1, 2, 4, 8, 16, 32, 64, 128))

# ESP-IDF flash layout rules.
SECTOR_SIZE = 0x1000  # flash erases in 4 KiB sectors, so partitions start and end on one
APP_ALIGNMENT = 0x10000  # the cache maps app images in 64 KiB MMU pages
PARTITION_TABLE_OFFSET = 0x8000  # the second-stage bootloader sits below it
FIRST_PARTITION_OFFSET = PARTITION_TABLE_OFFSET + SECTOR_SIZE
FILESYSTEM_PARTITION = "vfs"  # the name MicroPython's ESP32 port mounts as its filesystem
PARTITION_SUBTYPES = {
    "app": ("factory", "test", *(f"ota_{slot}" for slot in range(16))),
    "data": ("ota", "phy", "nvs", "coredump", "nvs_keys", "efuse", "fat", "spiffs", "littlefs",
             "romfs"),
}
ROMFS_PARTITION = "romfs"  # read-only code image the firmware runs from in place (VfsRom)
# Where an application update is staged, and the previous version kept after the swap.
ROMFS_SPARE_PARTITION = "romfs_spare"
# Partitions each layout must have, with the type and subtype the firmware looks them up by.
PARTITION_ROLES = {
    "nvs": ("data", "nvs"),
    "otadata": ("data", "ota"),
    "phy_init": ("data", "phy"),
    "factory": ("app", "factory"),
    "ota_0": ("app", "ota_0"),
    "ota_1": ("app", "ota_1"),
    FILESYSTEM_PARTITION: ("data", "fat"),
    ROMFS_PARTITION: ("data", "romfs"),
    ROMFS_SPARE_PARTITION: ("data", "romfs"),
}
LAYOUT_PARTITIONS = {
    "plain": ("nvs", "phy_init", "factory", ROMFS_PARTITION, ROMFS_SPARE_PARTITION,
              FILESYSTEM_PARTITION),
    "ota": ("nvs", "otadata", "phy_init", "ota_0", "ota_1", ROMFS_PARTITION,
            FILESYSTEM_PARTITION),
}

ACTIVE_LEVELS = ("high", "low")
CONSOLE_UART = 0  # MicroPython's REPL; the modem needs a UART of its own
I2C_ADDRESS_MIN = 0x08  # 0x00-0x07 and 0x78-0x7f are reserved by the I2C specification
I2C_ADDRESS_MAX = 0x77


class BoardError(BadInput):
    """A board definition is missing, unreadable or invalid."""


# --- what the loader knows about chips and modems --------------------------------------


def _span_text(spans: Iterable[tuple[int, int]]) -> str:
    return ", ".join(f"{low}-{high}" for low, high in spans)


def _span_set(spans: Iterable[tuple[int, int]]) -> frozenset[int]:
    return frozenset(gpio for low, high in spans for gpio in range(low, high + 1))


def _reserve(gpios: Iterable[int], user: str) -> dict[int, str]:
    return dict.fromkeys(gpios, user)


@dataclass(frozen=True, eq=False)
class ChipSpec:
    """The facts about one ESP32 family member that decide whether a pin assignment works."""

    name: str
    gpio_spans: tuple[tuple[int, int], ...]  # inclusive ranges of GPIOs that exist
    reserved: dict[int, str]  # GPIO -> what already uses it on every board
    input_only: frozenset[int]
    adc1_spans: tuple[tuple[int, int], ...]  # ADC2 is shared with the radio, so only ADC1
    modem_uarts: tuple[int, ...]
    i2c_ids: tuple[int, ...]

    def gpio_problem(self, gpio: int, *, output: bool, adc: bool) -> str | None:
        """Why ``gpio`` cannot serve a line of this kind, or None if it can."""
        if gpio not in _span_set(self.gpio_spans):
            return (
                f"GPIO {gpio} does not exist on {self.name} (valid: {_span_text(self.gpio_spans)})"
            )
        if gpio in self.reserved:
            return f"GPIO {gpio} is taken by {self.reserved[gpio]} on {self.name}"
        if output and gpio in self.input_only:
            return f"GPIO {gpio} is input-only on {self.name}, but this line is driven"
        if adc and gpio not in _span_set(self.adc1_spans):
            adc1 = _span_text(self.adc1_spans)
            return f"GPIO {gpio} has no ADC1 channel on {self.name} (ADC1: GPIO {adc1})"
        return None


CHIPS = {
    "esp32": ChipSpec(
        name="esp32",
        gpio_spans=((0, 19), (21, 23), (25, 27), (32, 39)),
        reserved={
            **_reserve((1, 3), "UART0, the REPL console"),
            **_reserve(range(6, 12), "the SPI flash"),
        },
        input_only=frozenset(range(34, 40)),
        adc1_spans=((32, 39),),
        modem_uarts=(1, 2),
        i2c_ids=(0, 1),
    ),
    "esp32s3": ChipSpec(
        name="esp32s3",
        gpio_spans=((0, 21), (26, 48)),
        reserved={
            **_reserve((19, 20), "USB, the REPL console"),
            **_reserve(range(26, 33), "the SPI flash"),
            **_reserve((43, 44), "UART0, the ROM loader's port"),
        },
        input_only=frozenset(),
        adc1_spans=((1, 10),),
        modem_uarts=(1, 2),
        i2c_ids=(0, 1),
    ),
}


@dataclass(frozen=True)
class PwrkeyWindow:
    """Datasheet limits for a modem family's PWRKEY pulses: (shortest, longest) in ms.

    None as the longest means the datasheet sets no upper limit.
    """

    on: tuple[int, int | None]
    off: tuple[int, int | None]


MODEM_FAMILIES = {
    "sim7080": PwrkeyWindow(on=(1000, None), off=(1200, None)),
    "sim7600": PwrkeyWindow(on=(500, None), off=(2500, None)),
    # The BG95 folds reset into PWRKEY, so a press held too long is not a plain on/off.
    "bg95": PwrkeyWindow(on=(500, 1000), off=(650, 1500)),
}


# --- the typed board ---------------------------------------------------------------------


@dataclass(frozen=True)
class Partition:
    """One entry of an ESP-IDF partition table; offset and size in bytes."""

    name: str
    type: str
    subtype: str
    offset: int
    size: int

    @property
    def end(self) -> int:
        """First byte after the partition."""
        return self.offset + self.size


@dataclass(frozen=True)
class Modem:
    """Modem family, its UART and its power timing in ms."""

    family: str
    uart: int
    baudrate: int
    pwrkey_on_ms: int  # PWRKEY held asserted this long switches the modem on
    pwrkey_off_ms: int  # ... and this long switches it off
    boot_ms: int  # after the on pulse, how long until the modem answers AT
    power_off_ms: int  # after the off pulse, how long until power may be cut


@dataclass(frozen=True)
class ControlPin:
    """A GPIO whose level means something: ``active`` is the level that asserts it."""

    pin: int
    active: str

    @property
    def active_high(self) -> bool:
        return self.active == "high"


@dataclass(frozen=True)
class Pins:
    """The board's GPIO assignment; optional lines are None where a board lacks them."""

    modem_tx: int  # the ESP32 transmits to the modem here
    modem_rx: int
    pwrkey: ControlPin
    status: ControlPin
    reset: ControlPin | None = None
    modem_power: ControlPin | None = None
    flow_pulse: int | None = None
    current_adc: int | None = None
    supply_adc: int | None = None

    def gpios(self) -> dict[str, int]:
        """GPIO number of every line the board has, by line name."""
        numbers = {}
        for line in fields(self):
            value = getattr(self, line.name)
            if value is not None:
                numbers[line.name] = value.pin if isinstance(value, ControlPin) else value
        return numbers

    def to_dict(self) -> dict[str, Any]:
        """The lines the board has, in the same shape as the TOML."""
        lines = {}
        for line in fields(self):
            value = getattr(self, line.name)
            if value is not None:
                lines[line.name] = asdict(value) if isinstance(value, ControlPin) else value
        return lines


@dataclass(frozen=True)
class PinRole:
    """How a line in ``[pins]`` is used, which decides what a valid GPIO for it is."""

    control: bool = False  # has an active level, so written as { pin = N, active = ... }
    output: bool = False  # driven by the ESP32, so not on an input-only GPIO
    adc: bool = False  # sampled by ADC1
    required: bool = True


PIN_ROLES = {
    "modem_tx": PinRole(output=True),
    "modem_rx": PinRole(),
    "pwrkey": PinRole(control=True, output=True),
    "status": PinRole(control=True),
    "reset": PinRole(control=True, output=True, required=False),
    "modem_power": PinRole(control=True, output=True, required=False),
    "flow_pulse": PinRole(required=False),
    "current_adc": PinRole(adc=True, required=False),
    "supply_adc": PinRole(adc=True, required=False),
}


@dataclass(frozen=True)
class I2cBus:
    """The hardware I2C controller the board's I2C sensors hang on."""

    id: int
    scl: int
    sda: int
    freq: int


def _positive(value: float) -> str | None:
    return None if value > 0 else f"{value} must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else f"{value} must not be negative"


def _scales_down(value: float) -> str | None:
    return None if value >= 1 else f"{value} is below 1, and a resistor divider only scales down"


def _i2c_address(value: int) -> str | None:
    if I2C_ADDRESS_MIN <= value <= I2C_ADDRESS_MAX:
        return None
    usable = f"{I2C_ADDRESS_MIN:#04x}-{I2C_ADDRESS_MAX:#04x}"
    return f"{value:#04x} is outside the usable 7-bit I2C addresses {usable}"


def _param(check: Callable[[Any], str | None]) -> Any:
    """A sensor parameter, with the check its value must pass."""
    return field(metadata={"check": check})


class _Sensor:
    """Behaviour shared by the sensor kinds; each kind is a frozen dataclass below."""

    kind: ClassVar[str]
    pin_name: ClassVar[str | None] = None  # the [pins] line the sensor reads, if any

    def resource(self) -> str:
        """What the sensor occupies exclusively, so that two sensors cannot share it."""
        return f"pins.{self.pin_name}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}  # type: ignore[call-overload]


@dataclass(frozen=True)
class Sht4xSensor(_Sensor):
    """Sensirion SHT4x temperature and humidity sensor on the board's I2C bus."""

    kind: ClassVar[str] = "sht4x"
    address: int = _param(_i2c_address)

    def resource(self) -> str:
        return f"I2C address {self.address:#04x}"


@dataclass(frozen=True)
class FlowPulseSensor(_Sensor):
    """Hall-effect flow meter giving ``k_factor`` pulses per litre on pins.flow_pulse."""

    kind: ClassVar[str] = "flow_pulse"
    pin_name: ClassVar[str | None] = "flow_pulse"
    k_factor: float = _param(_positive)


@dataclass(frozen=True)
class AdcCurrentSensor(_Sensor):
    """Analog current sensor on pins.current_adc: volts = zero_volts + amps * volts_per_amp."""

    kind: ClassVar[str] = "adc_current"
    pin_name: ClassVar[str | None] = "current_adc"
    volts_per_amp: float = _param(_positive)
    zero_volts: float = _param(_non_negative)


@dataclass(frozen=True)
class AdcSupplySensor(_Sensor):
    """Supply voltage through a divider on pins.supply_adc: supply = volts * divider_ratio."""

    kind: ClassVar[str] = "adc_supply"
    pin_name: ClassVar[str | None] = "supply_adc"
    divider_ratio: float = _param(_scales_down)


Sensor = Sht4xSensor | FlowPulseSensor | AdcCurrentSensor | AdcSupplySensor
SENSOR_KINDS: dict[str, type[Sensor]] = {
    kind.kind: kind for kind in (Sht4xSensor, FlowPulseSensor, AdcCurrentSensor, AdcSupplySensor)
}


@dataclass(frozen=True)
class Board:
    """One board definition, checked: everything the host and the firmware need to know."""

    name: str
    description: str
    chip: str
    flash_size: int
    micropython_variant: str
    micropython_version: str
    heap: int  # the Python heap the firmware gets (and the simulator's default)
    modem: Modem
    pins: Pins
    i2c: I2cBus
    sensors: tuple[Sensor, ...]
    partitions_plain: tuple[Partition, ...]
    partitions_ota: tuple[Partition, ...]
    path: Path

    def partitions(self, ota: bool) -> list[Partition]:
        """The partition table for a plain or an OTA build, in flash order."""
        return list(self.partitions_ota if ota else self.partitions_plain)

    def partition(self, name: str, ota: bool) -> Partition:
        """The partition called ``name`` in the plain or OTA table."""
        for partition in self.partitions(ota):
            if partition.name == name:
                return partition
        layout = "ota" if ota else "plain"
        raise BoardError(f"{self.path.name}: partitions.{layout}: no partition named {name!r}")

    def filesystem(self, ota: bool) -> Partition:
        """The partition MicroPython mounts as its filesystem."""
        return self.partition(FILESYSTEM_PARTITION, ota)

    @property
    def summary(self) -> str:
        """The description's first sentence: what the board is, for tables and banners."""
        first = self.description.split(". ")[0].strip()
        return first if first.endswith(".") else first + "."

    def to_device_dict(self) -> dict[str, Any]:
        """What the firmware needs at run time, JSON-serialisable; partitions stay host-side."""
        return {
            "name": self.name,
            "chip": self.chip,
            "modem": asdict(self.modem),
            "pins": self.pins.to_dict(),
            "i2c": asdict(self.i2c),
            "sensors": [sensor.to_dict() for sensor in self.sensors],
        }


# --- finding and loading board files ------------------------------------------------------


def boards_dir() -> Path:
    """The folder of board files: the repository's boards/, or $MUSKET_BOARDS_DIR if set."""
    override = os.environ.get(BOARDS_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "boards"


def list_boards() -> list[str]:
    """Names of the boards in boards_dir(), sorted."""
    folder = boards_dir()
    if not folder.is_dir():
        raise BoardError(f"board folder {folder} does not exist (set by {BOARDS_DIR_ENV}?)")
    return sorted(path.stem for path in folder.glob(f"*{BOARD_SUFFIX}"))


def load_board(name_or_path: str | os.PathLike[str]) -> Board:
    """Load and check a board: a name is looked up in boards_dir(), a .toml path is read."""
    path = _board_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise BoardError(f"{path.name}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise BoardError(f"{path}: cannot read board file: {err.strerror}") from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BoardError(f"{path.name}: invalid TOML: {err}") from err
    return _read_board(_Table(data, "", path.name), path.resolve())


def _board_path(name_or_path: str | os.PathLike[str]) -> Path:
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, os.PathLike) or text.endswith(BOARD_SUFFIX):
        return Path(text)
    if not BOARD_NAME_PATTERN.fullmatch(text):
        raise BoardError(f"{text!r} is neither a board name nor a {BOARD_SUFFIX} file")
    path = boards_dir() / f"{text}{BOARD_SUFFIX}"
    if not path.is_file():
        available = ", ".join(list_boards()) or "none"
        raise BoardError(f"unknown board {text!r} (available: {available})")
    return path


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


class _Table:
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

    def table(self, key: str, allowed: Iterable[str] | None = None) -> "_Table":
        """A required sub-table, with its keys checked against ``allowed`` if given."""
        child = _Table(self.get(key, dict), self.field_name(key), self.source)
        if allowed is not None:
            child.check_keys(allowed)
        return child

    def tables(self, key: str) -> list["_Table"]:
        """An optional array of tables; missing means empty."""
        items = self.data.get(key, [])
        if not isinstance(items, list):
            raise self.error(key, f"expected an array of tables, got {_describe(items)}")
        children = []
        for index, item in enumerate(items):
            where = f"{self.field_name(key)}[{index}]"
            if not isinstance(item, dict):
                raise BoardError(f"{self.source}: {where}: expected a table, got {_describe(item)}")
            children.append(_Table(item, where, self.source))
        return children


def _field_names(cls: type) -> list[str]:
    return [item.name for item in fields(cls)]


# --- the board file, table by table -------------------------------------------------------

TOP_LEVEL_KEYS = (
    "name", "description", "chip", "flash_size", "micropython",
    "modem", "pins", "i2c", "sensors", "partitions",
)  # fmt: skip


def _read_board(top: _Table, path: Path) -> Board:
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


def _read_heap(micropython: _Table) -> int:
    heap = micropython.size("heap")
    if not MIN_HEAP <= heap <= MAX_HEAP:
        raise micropython.error("heap", f"{heap:,} bytes is outside {MIN_HEAP >> 10}K to "
                                        f"{MAX_HEAP >> 10}K (an ESP32's heap without PSRAM is "
                                        "about 110K)")
    return heap


def _read_name(top: _Table, path: Path) -> str:
    name = top.text("name", BOARD_NAME_PATTERN, BOARD_NAME_FORM)
    if name != path.stem:
        raise top.error("name", f"{name!r} differs from the file name {path.name!r}")
    return name


def _read_chip(top: _Table) -> ChipSpec:
    name = top.get("chip", str)
    if name not in CHIPS:
        raise top.error("chip", f"unknown chip {name!r} (expected one of: {', '.join(CHIPS)})")
    return CHIPS[name]


def _read_flash_size(top: _Table) -> int:
    size = top.size("flash_size")
    if size not in FLASH_SIZES:
        choices = ", ".join(f"{choice // MIB}MB" for choice in FLASH_SIZES)
        raise top.error(
            "flash_size", f"{size} bytes is not a flash size (expected one of: {choices})"
        )
    return size


def _read_modem(table: _Table, chip: ChipSpec) -> Modem:
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
    table: _Table, key: str, value: int, window: tuple[int, int | None], family: str
) -> None:
    low, high = window
    if low <= value and (high is None or value <= high):
        return
    limits = f"at least {low} ms" if high is None else f"{low}-{high} ms"
    raise table.error(key, f"{value} ms is outside the {family} datasheet window ({limits})")


def _read_pins(table: _Table, chip: ChipSpec) -> Pins:
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


def _read_control_pin(table: _Table, name: str, role: PinRole, chip: ChipSpec) -> ControlPin:
    if not isinstance(table.data[name], dict):
        shape = '{ pin = N, active = "high" | "low" }'
        raise table.error(name, f"expected {shape}, got {_describe(table.data[name])}")
    line = table.table(name, _field_names(ControlPin))
    gpio = _read_gpio(line, "pin", role, chip)
    active = line.get("active", str)
    if active not in ACTIVE_LEVELS:
        raise line.error("active", f"{active!r} is not an active level (expected 'high' or 'low')")
    return ControlPin(pin=gpio, active=active)


def _read_gpio(table: _Table, key: str, role: PinRole, chip: ChipSpec) -> int:
    gpio: int = table.get(key, int)
    problem = chip.gpio_problem(gpio, output=role.output, adc=role.adc)
    if problem:
        raise table.error(key, problem)
    return gpio


def _read_i2c(table: _Table, chip: ChipSpec) -> I2cBus:
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


def _check_gpios_unique(top: _Table, pins: Pins, i2c: I2cBus) -> None:
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


def _read_sensors(tables: list[_Table], pins: Pins) -> tuple[Sensor, ...]:
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


def _read_sensor(table: _Table, pins: Pins) -> Sensor:
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
    table: _Table, flash_size: int
) -> tuple[tuple[Partition, ...], tuple[Partition, ...]]:
    plain = _read_layout(table, "plain", flash_size)
    ota = _read_layout(table, "ota", flash_size)
    return plain, ota


def _read_layout(table: _Table, layout: str, flash_size: int) -> tuple[Partition, ...]:
    if not table.has(layout):
        raise table.error(layout, "missing required field")
    entries = [(entry, _read_partition(entry, flash_size)) for entry in table.tables(layout)]
    _check_names_unique(entries)
    _check_roles(table, layout, entries)
    _check_no_overlap(entries)
    _check_filesystem_fills_flash(entries, flash_size)
    return tuple(sorted((partition for _, partition in entries), key=lambda p: p.offset))


def _read_partition(entry: _Table, flash_size: int) -> Partition:
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


def _check_placement(entry: _Table, partition: Partition, flash_size: int) -> None:
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


def _check_names_unique(entries: list[tuple[_Table, Partition]]) -> None:
    first_entry: dict[str, str] = {}
    for entry, partition in entries:
        if partition.name in first_entry:
            where = first_entry[partition.name]
            raise entry.error("name", f"duplicate partition name {partition.name!r} (also {where})")
        first_entry[partition.name] = entry.path


def _check_roles(table: _Table, layout: str, entries: list[tuple[_Table, Partition]]) -> None:
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


def _check_no_overlap(entries: list[tuple[_Table, Partition]]) -> None:
    in_flash_order = sorted(entries, key=lambda item: item[1].offset)
    for (_, before), (entry, after) in itertools.pairwise(in_flash_order):
        if after.offset < before.end:
            span = f"{before.offset:#x}-{before.end:#x}"
            raise entry.error(
                "offset", f"{after.name!r} at {after.offset:#x} overlaps {before.name!r} ({span})"
            )


def _check_filesystem_fills_flash(entries: list[tuple[_Table, Partition]], flash_size: int) -> None:
    for entry, partition in entries:
        if partition.name == FILESYSTEM_PARTITION and partition.end != flash_size:
            problem = f"ends at {partition.end:#x}, but the filesystem must run to the flash end"
            raise entry.error("size", f"{partition.name!r} {problem} {flash_size:#x}")
