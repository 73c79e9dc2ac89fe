"""Board definitions: the shipped boards load and make sense, and bad files are rejected
with an error naming the file and the field."""

import itertools
import json
from pathlib import Path

import pytest

from musket.boards import (
    BOARDS_DIR_ENV,
    FIRST_PARTITION_OFFSET,
    BoardError,
    boards_dir,
    list_boards,
    load_board,
)

REPO_BOARDS = Path(__file__).resolve().parents[2] / "boards"
SHIPPED = ["esp32-a7670", "esp32-sim7080g", "esp32s3-bg95"]
MIB = 1024 * 1024
APP_ALIGNMENT = 0x10000


@pytest.fixture(autouse=True)
def repo_boards(monkeypatch):
    """Every test sees the repository's boards unless it points elsewhere itself."""
    monkeypatch.delenv(BOARDS_DIR_ENV, raising=False)


def shipped_text(board: str) -> str:
    return (REPO_BOARDS / f"{board}.toml").read_text(encoding="utf-8")


def write_variant(tmp_path: Path, board: str, old: str, new: str) -> Path:
    """A copy of a shipped board with one piece of text changed, named like the board."""
    text = shipped_text(board)
    assert text.count(old) == 1, f"{old!r} must occur exactly once in {board}.toml"
    path = tmp_path / f"{board}.toml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(BoardError) as caught:
        load_board(path)
    return str(caught.value)


# --- the shipped boards -------------------------------------------------------------------


def test_exactly_the_three_boards_ship():
    assert list_boards() == SHIPPED


def test_default_boards_dir_is_the_repository_folder():
    assert boards_dir() == REPO_BOARDS


@pytest.mark.parametrize(
    ("board", "chip", "flash_mib", "family", "variant"),
    [
        ("esp32-sim7080g", "esp32", 4, "sim7080", "ESP32_GENERIC"),
        ("esp32-a7670", "esp32", 4, "sim7600", "ESP32_GENERIC"),
        ("esp32s3-bg95", "esp32s3", 8, "bg95", "ESP32_GENERIC_S3"),
    ],
)
def test_shipped_board_loads(board, chip, flash_mib, family, variant):
    loaded = load_board(board)
    assert loaded.name == board
    assert loaded.chip == chip
    assert loaded.flash_size == flash_mib * MIB
    assert loaded.modem.family == family
    assert loaded.micropython_variant == variant
    assert loaded.micropython_version == "1.28"
    assert loaded.path == REPO_BOARDS / f"{board}.toml"
    assert {sensor.kind for sensor in loaded.sensors} == {
        "sht4x",
        "flow_pulse",
        "adc_current",
        "adc_supply",
    }


@pytest.mark.parametrize("ota", [False, True], ids=["plain", "ota"])
@pytest.mark.parametrize("board", SHIPPED)
def test_shipped_layout_is_sane(board, ota):
    loaded = load_board(board)
    partitions = loaded.partitions(ota)
    assert partitions[0].offset >= FIRST_PARTITION_OFFSET
    for before, after in itertools.pairwise(partitions):
        assert before.end <= after.offset, f"{before.name} overlaps {after.name}"
    for partition in partitions:
        assert partition.end <= loaded.flash_size
        if partition.type == "app":
            assert partition.offset % APP_ALIGNMENT == 0
    filesystem = loaded.filesystem(ota)
    assert (filesystem.name, filesystem.type, filesystem.subtype) == ("vfs", "data", "fat")
    assert filesystem.end == loaded.flash_size
    assert filesystem.offset % 4096 == 0 and filesystem.size % 4096 == 0


@pytest.mark.parametrize("board", SHIPPED)
def test_ota_layout_has_two_equal_slots_and_otadata(board):
    loaded = load_board(board)
    names = [partition.name for partition in loaded.partitions(ota=True)]
    assert {"otadata", "ota_0", "ota_1"} <= set(names)
    assert "factory" not in names
    assert loaded.partition("ota_0", ota=True).size == loaded.partition("ota_1", ota=True).size
    assert loaded.partition("otadata", ota=True).subtype == "ota"


@pytest.mark.parametrize("board", SHIPPED)
def test_plain_layout_has_a_factory_app(board):
    loaded = load_board(board)
    factory = loaded.partition("factory", ota=False)
    assert (factory.type, factory.subtype) == ("app", "factory")
    assert "ota_0" not in [partition.name for partition in loaded.partitions(ota=False)]


def test_missing_partition_lookup_names_layout_and_partition():
    loaded = load_board("esp32-a7670")
    with pytest.raises(BoardError, match=r"partitions\.ota: no partition named 'factory'"):
        loaded.partition("factory", ota=True)


@pytest.mark.parametrize("board", SHIPPED)
def test_device_dict_round_trips_through_json(board):
    device = load_board(board).to_device_dict()
    assert json.loads(json.dumps(device)) == device
    assert set(device) == {"name", "chip", "modem", "pins", "i2c", "sensors"}
    assert device["name"] == board
    assert set(device["modem"]) == {
        "family",
        "uart",
        "baudrate",
        "pwrkey_on_ms",
        "pwrkey_off_ms",
        "boot_ms",
        "power_off_ms",
    }
    assert set(device["pins"]["pwrkey"]) == {"pin", "active"}


def test_device_dict_keeps_control_levels_and_omits_absent_lines():
    a7670 = load_board("esp32-a7670").to_device_dict()
    assert a7670["pins"]["reset"] == {"pin": 5, "active": "high"}
    bg95 = load_board("esp32s3-bg95").to_device_dict()
    assert "reset" not in bg95["pins"]
    assert bg95["pins"]["status"] == {"pin": 16, "active": "low"}
    assert {"kind": "sht4x", "address": 0x44} in bg95["sensors"]


@pytest.mark.parametrize("spelling", ["0x6000", '"0x6000"', '"24KiB"', '"24kb"', "24576"])
def test_size_spellings_normalise_to_the_same_bytes(tmp_path, spelling):
    path = write_variant(tmp_path, "esp32-a7670", 'size = "24K"', f"size = {spelling}")
    assert load_board(path).partition("nvs", ota=False).size == 0x6000
    assert load_board(path).partitions(False) == load_board("esp32-a7670").partitions(False)


def test_boards_dir_can_be_overridden(tmp_path, monkeypatch):
    (tmp_path / "esp32s3-bg95.toml").write_text(shipped_text("esp32s3-bg95"), encoding="utf-8")
    monkeypatch.setenv(BOARDS_DIR_ENV, str(tmp_path))
    assert list_boards() == ["esp32s3-bg95"]
    assert load_board("esp32s3-bg95").path == tmp_path / "esp32s3-bg95.toml"


def test_unknown_board_name_lists_the_available_ones():
    message = str(pytest.raises(BoardError, load_board, "esp32-nope").value)
    assert "unknown board 'esp32-nope'" in message
    assert "esp32-a7670, esp32-sim7080g, esp32s3-bg95" in message


# --- invalid files ------------------------------------------------------------------------


def test_unmodified_copy_loads(tmp_path):
    """The invalid-input cases below start from this copy, so it must itself be valid."""
    for board in SHIPPED:
        path = tmp_path / f"{board}.toml"
        path.write_text(shipped_text(board), encoding="utf-8")
        assert load_board(path).name == board


def test_invalid_toml_names_file_and_line(tmp_path):
    old = "baudrate = 115200"
    text = shipped_text("esp32-a7670")
    line = text[: text.index(old)].count("\n") + 1
    message = load_error(write_variant(tmp_path, "esp32-a7670", old, "baudrate = "))
    assert message.startswith("esp32-a7670.toml: invalid TOML: ")
    assert f"line {line}" in message


def test_non_utf8_file_is_rejected(tmp_path):
    path = tmp_path / "esp32-a7670.toml"
    path.write_bytes(shipped_text("esp32-a7670").encode() + b"\n# \xff\n")
    assert load_error(path).startswith("esp32-a7670.toml: not UTF-8 text")


def test_unknown_family_message_is_exact(tmp_path):
    path = write_variant(tmp_path, "esp32-a7670", 'family = "sim7600"', 'family = "sim9999"')
    assert load_error(path) == (
        "esp32-a7670.toml: modem.family: unknown family 'sim9999' "
        "(expected one of: bg95, sim7080, sim7600)"
    )


def test_misaligned_app_message_is_exact(tmp_path):
    old = 'subtype = "ota_0",   offset = 0x10000,'
    path = write_variant(tmp_path, "esp32-a7670", old, 'subtype = "ota_0",   offset = 0x1234,')
    assert load_error(path) == (
        "esp32-a7670.toml: partitions.ota[3].offset: 0x1234 is not aligned to 0x10000 "
        "(app partitions must be 64 KiB aligned)"
    )


A7670 = "esp32-a7670"
SIM7080 = "esp32-sim7080g"
BG95 = "esp32s3-bg95"
PLAIN_PHY_INIT = 'offset = 0xf000,   size = "4K" },\n    { name = "factory"'
SHT4X_ENTRY = '[[sensors]]\nkind = "sht4x"\naddress = 0x44\n'
OTADATA_ENTRY = (
    '    { name = "otadata",  type = "data", subtype = "ota",     '
    'offset = 0xd000,   size = "8K" },\n'
)

# (case, board, text to replace, replacement, field the error must name, words it must say)
INVALID = [
    ("unknown-top-level-key", A7670, 'chip = "esp32"\n', 'chip = "esp32"\nfalsh_size = "4MB"\n',
     "falsh_size", "unknown key (did you mean 'flash_size'?"),
    ("unknown-nested-key", A7670, "modem_rx = 27", "modem_rxd = 27",
     "pins.modem_rxd", "did you mean 'modem_rx'?"),
    ("missing-field", A7670, "baudrate = 115200\n", "",
     "modem.baudrate", "missing required field"),
    ("missing-required-pin", BG95, 'status = { pin = 16, active = "low" }\n', "",
     "pins.status", "missing required field"),
    ("string-for-int", A7670, "baudrate = 115200", 'baudrate = "115200"',
     "modem.baudrate", "expected an integer, got string '115200'"),
    ("float-for-string", A7670, 'version = "1.28"', "version = 1.28",
     "micropython.version", "expected a string, got float 1.28"),
    ("boolean-for-int", A7670, "freq = 400000", "freq = true",
     "i2c.freq", "expected an integer, got boolean True"),
    ("bad-version", A7670, 'version = "1.28"', 'version = "latest"',
     "micropython.version", "'latest' is not a version like '1.28'"),
    ("name-differs-from-file", A7670, 'name = "esp32-a7670"', 'name = "esp32-a7671"',
     "name", "differs from the file name 'esp32-a7670.toml'"),
    ("unknown-chip", A7670, 'chip = "esp32"', 'chip = "esp8266"',
     "chip", "unknown chip 'esp8266' (expected one of: esp32, esp32s3)"),
    ("odd-flash-size", A7670, 'flash_size = "4MB"', 'flash_size = "3MB"',
     "flash_size", "3145728 bytes is not a flash size"),
    ("console-uart", A7670, "uart = 1", "uart = 0",
     "modem.uart", "UART 0 is the REPL console"),
    ("pwrkey-off-too-short", SIM7080, "pwrkey_off_ms = 1300", "pwrkey_off_ms = 1000",
     "modem.pwrkey_off_ms", "outside the sim7080 datasheet window (at least 1200 ms)"),
    ("pwrkey-on-too-long", BG95, "pwrkey_on_ms = 600", "pwrkey_on_ms = 1200",
     "modem.pwrkey_on_ms", "outside the bg95 datasheet window (500-1000 ms)"),
    ("zero-boot-time", BG95, "boot_ms = 3000", "boot_ms = 0",
     "modem.boot_ms", "0 must be greater than 0"),
    ("gpio-past-esp32", A7670, "flow_pulse = 32", "flow_pulse = 40",
     "pins.flow_pulse", "GPIO 40 does not exist on esp32"),
    ("gpio-past-esp32s3", BG95, "flow_pulse = 21", "flow_pulse = 49",
     "pins.flow_pulse", "GPIO 49 does not exist on esp32s3"),
    ("gpio-gap-esp32", SIM7080, "flow_pulse = 32", "flow_pulse = 24",
     "pins.flow_pulse", "GPIO 24 does not exist on esp32"),
    ("negative-gpio", SIM7080, "current_adc = 39", "current_adc = -1",
     "pins.current_adc", "GPIO -1 does not exist"),
    ("flash-gpio", A7670, "flow_pulse = 32", "flow_pulse = 6",
     "pins.flow_pulse", "GPIO 6 is taken by the SPI flash on esp32"),
    ("console-gpio", BG95, "modem_tx = 17", "modem_tx = 43",
     "pins.modem_tx", "GPIO 43 is taken by UART0"),
    ("driven-input-only-gpio", A7670, "pwrkey = { pin = 4,", "pwrkey = { pin = 36,",
     "pins.pwrkey.pin", "GPIO 36 is input-only on esp32"),
    ("adc-without-adc1", BG95, "current_adc = 4", "current_adc = 11",
     "pins.current_adc", "GPIO 11 has no ADC1 channel on esp32s3"),
    ("gpio-used-twice", A7670, "flow_pulse = 32", "flow_pulse = 26",
     "pins.flow_pulse", "GPIO 26 is already used by pins.modem_tx"),
    ("i2c-on-pwrkey", SIM7080, "sda = 21", "sda = 4",
     "i2c.sda", "GPIO 4 is already used by pins.pwrkey.pin"),
    ("unknown-i2c-controller", A7670, "id = 0", "id = 2",
     "i2c.id", "I2C 2 does not exist on esp32"),
    ("bad-active-level", A7670, 'status = { pin = 34, active = "high" }',
     'status = { pin = 34, active = "on" }', "pins.status.active", "'on' is not an active level"),
    ("control-pin-without-level", A7670, 'pwrkey = { pin = 4, active = "high" }', "pwrkey = 4",
     "pins.pwrkey", 'expected { pin = N, active = "high" | "low" }, got int 4'),
    ("plain-pin-with-table", A7670, "modem_rx = 27", "modem_rx = { pin = 27 }",
     "pins.modem_rx", "expected an integer, got table"),
    ("misaligned-data-partition", A7670, 'offset = 0x2c0000, size = "1280K"',
     'offset = 0x2c0800, size = "1280K"', "partitions.plain[5].offset",
     "0x2c0800 is not aligned to 0x1000"),
    ("partition-over-table", A7670, 'offset = 0x9000,   size = "24K"',
     'offset = 0x8000,   size = "28K"', "partitions.plain[0].offset", "0x8000 is below 0x9000"),
    ("partial-sector-size", A7670, 'offset = 0x9000,   size = "24K"',
     'offset = 0x9000,   size = "23K"', "partitions.plain[0].size",
     "0x5c00 is not a positive multiple of 0x1000"),
    ("unreadable-size", A7670, '"1984K"', '"lots"',
     "partitions.plain[2].size", "cannot read string 'lots' as a size"),
    ("overlapping-partitions", A7670, 'offset = 0x9000,   size = "24K"',
     'offset = 0x9000,   size = "32K"', "partitions.plain[1].offset",
     "'phy_init' at 0xf000 overlaps 'nvs' (0x9000-0x11000)"),
    ("past-flash-end", A7670, 'offset = 0x2c0000, size = "1280K"',
     'offset = 0x2c0000, size = "3M"',
     "partitions.plain[5].size", "'vfs' ends at 0x5c0000, past the flash end 0x400000"),
    ("filesystem-short-of-flash-end", A7670, 'offset = 0x2c0000, size = "1280K"',
     'offset = 0x2c0000, size = "1M"', "partitions.plain[5].size",
     "'vfs' ends at 0x3c0000, but the filesystem must run to the flash end 0x400000"),
    ("duplicate-partition-name", A7670, f'name = "phy_init", type = "data", subtype = "phy",     '
     f"{PLAIN_PHY_INIT}", f'name = "nvs", type = "data", subtype = "phy",     {PLAIN_PHY_INIT}',
     "partitions.plain[1].name", "duplicate partition name 'nvs' (also partitions.plain[0])"),
    ("missing-otadata", A7670, OTADATA_ENTRY, "", "partitions.ota", "missing partition 'otadata'"),
    ("filesystem-wrong-subtype", A7670, 'subtype = "fat",     offset = 0x2c0000',
     'subtype = "spiffs",  offset = 0x2c0000', "partitions.plain[5].subtype",
     "'vfs' must be data/fat, not data/spiffs"),
    ("subtype-of-other-type", A7670, 'subtype = "factory"', 'subtype = "nvs"',
     "partitions.plain[2].subtype", "'nvs' is not an app subtype"),
    ("unknown-partition-type", A7670, 'type = "app",  subtype = "factory"',
     'type = "code", subtype = "factory"', "partitions.plain[2].type",
     "unknown partition type 'code'"),
    ("unknown-sensor-kind", A7670, 'kind = "sht4x"', 'kind = "bme280"',
     "sensors[0].kind", "unknown sensor kind 'bme280'"),
    ("unknown-sensor-param", A7670, "k_factor = 450.0", "k_factr = 450.0",
     "sensors[1].k_factr", "did you mean 'k_factor'?"),
    ("i2c-address-out-of-range", A7670, "address = 0x44", "address = 0x80",
     "sensors[0].address", "0x80 is outside the usable 7-bit I2C addresses"),
    ("divider-below-one", A7670, "divider_ratio = 2.0", "divider_ratio = 0.5",
     "sensors[3].divider_ratio", "0.5 is below 1"),
    ("sensor-without-its-pin", A7670, "flow_pulse = 32\n", "",
     "sensors[1].kind", "a flow_pulse sensor needs pins.flow_pulse, which is unset"),
    ("sensors-sharing-an-address", A7670, SHT4X_ENTRY, SHT4X_ENTRY + "\n" + SHT4X_ENTRY,
     "sensors[1]", "I2C address 0x44 is already used by sensors[0]"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("board", "old", "new", "field", "words"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_board_names_the_field(tmp_path, board, old, new, field, words):
    message = load_error(write_variant(tmp_path, board, old, new))
    assert message.startswith(f"{board}.toml: {field}: "), message
    assert words in message, message


@pytest.mark.parametrize(("new", "expected"), [
    ("", "micropython.heap: missing required field"),
    ('heap = "8K"', "micropython.heap: 8,192 bytes is outside 32K to 8192K"),
    ('heap = "lots"', "micropython.heap: cannot read string 'lots' as a size"),
], ids=["missing", "too-small", "unreadable"])
def test_the_heap_is_declared_and_sane(tmp_path, new, expected):
    message = load_error(write_variant(tmp_path, "esp32-a7670", "heap = 111936", new))
    assert expected in message


def test_every_shipped_board_declares_its_heap():
    for board in SHIPPED:
        assert load_board(board).heap == 111936  # the ESP32 port's GC heap on the chip
