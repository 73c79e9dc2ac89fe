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

import os
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

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
    from musket.board_file import Table, read_board  # it reads into this module's types

    return read_board(Table(data, "", path.name), path.resolve())


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
