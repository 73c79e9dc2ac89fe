"""`musket build`: every board's images read back by independent readers (the simulator's
ROM and bootloader model, littlefs, MicroPython's ROMFS format), reproducible bytes, device
data checked by the firmware's own schema, and one clear error per bad input."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
from click.testing import CliRunner

from musket import build, espimage, fsimage, parttable
from musket.boards import Partition, list_boards, load_board
from musket.cli import main
from musket.errors import ExitCode, MusketError
from musket_sim import bootrom

ROMFS_MAGIC = b"\xd2\xcd\x31"
PASSWORD = "correct-horse-battery-staple"


def _merged(result) -> bytes:
    return result.merged.read_bytes()


@pytest.mark.parametrize("board_name", list_boards())
@pytest.mark.parametrize("ota", [False, True])
def test_every_board_builds_images_the_device_can_read(make_build, board_name, ota):
    board = load_board(board_name)
    result = make_build(board_name, ota=ota)
    flash = _merged(result).ljust(board.flash_size, b"\xff")
    layout = board.partitions(ota)

    # The virtual chip's ROM and bootloader check the bootloader image, read the table (MD5
    # row included) and find a valid app in the first app partition.
    app_part = next(p for p in layout if p.type == "app")
    outcome = bootrom.boot(flash, board.chip, reset_cause=1)
    assert outcome.bootable, outcome.error
    assert outcome.app == app_part.name
    assert outcome.partitions == [
        {"name": p.name, "type": p.type, "subtype": p.subtype, "offset": p.offset,
         "size": p.size} for p in layout]

    # Every piece sits in the merged image where the manifest says, and nowhere overlaps.
    pieces = result.manifest["pieces"]
    for piece in pieces:
        data = (result.out_dir / piece["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == piece["sha256"]
        assert flash[piece["offset"]:piece["offset"] + piece["size"]] == data
    ends = sorted((p["offset"], p["offset"] + p["size"]) for p in pieces)
    assert all(end <= nxt for (_, end), (nxt, _) in zip(ends, ends[1:], strict=False))

    rom = board.partition("romfs", ota)
    assert flash[rom.offset:rom.offset + 3] == ROMFS_MAGIC
    fs = board.filesystem(ota)
    files = fsimage.read(flash[fs.offset:fs.end])
    # The scripts the port runs, the update's boot stage (outside the image it swaps), the board.
    assert set(files) == {"boot.py", "main.py", "otaboot.mpy", "otastate.mpy",
                          "board.json"}
    assert json.loads(files["board.json"])["name"] == board_name
    assert result.manifest["board"] == board_name
    assert result.manifest["layout"] == ("ota" if ota else "plain")


def test_same_inputs_give_the_same_bytes(make_build, tmp_path):
    first = make_build(name="a", cache_dir=tmp_path / "cache-a")
    second = make_build(name="b", cache_dir=tmp_path / "cache-b")  # compiled afresh
    names = sorted(p.name for p in first.out_dir.iterdir() if p.is_file())
    assert names == sorted(p.name for p in second.out_dir.iterdir() if p.is_file())
    for name in names:
        assert (first.out_dir / name).read_bytes() == (second.out_dir / name).read_bytes(), name


def test_a_different_firmware_gives_different_bytes(make_build, tmp_path):
    board = load_board("esp32-sim7080g")
    other = tmp_path / "other.bin"
    other.write_bytes(espimage.stand_in_release(board.chip, parttable.encode(
        board.partitions(False)), 80 * 1024))
    first, second = make_build(name="a"), make_build(name="b", micropython=other)
    assert first.manifest["merged"]["sha256"] != second.manifest["merged"]["sha256"]
    assert first.manifest["pieces"][2]["sha256"] != second.manifest["pieces"][2]["sha256"]


def test_an_app_image_needs_a_bootloader(make_build, stand_in, tmp_path):
    release = espimage.split_firmware(stand_in().read_bytes(), "esp32")
    app, boot = tmp_path / "app.bin", tmp_path / "bootloader.bin"
    app.write_bytes(release.app)
    boot.write_bytes(release.bootloader)
    with pytest.raises(build.BuildError, match="--bootloader"):
        make_build(name="no-boot", micropython=app)
    with_boot = make_build(name="with-boot", micropython=app, bootloader=boot)
    from_release = make_build(name="release")
    assert with_boot.manifest["micropython"]["kind"] == "app"
    assert with_boot.manifest["pieces"][:3] == from_release.manifest["pieces"][:3]


def test_device_data_goes_on_the_filesystem_checked_and_unprinted(make_build, tmp_path):
    folder = tmp_path / "devices"
    folder.mkdir()
    for name in ("unit-1", "unit-2"):
        (folder / f"{name}.json").write_text(json.dumps({
            "config": {"device_id": name, "report_interval_s": 600},
            "secrets": {"mqtt_user": name, "mqtt_password": PASSWORD}}))
    result = make_build(devices=build.load_devices(folder))
    board = load_board("esp32-sim7080g")
    for name in ("unit-1", "unit-2"):
        image = (result.out_dir / "devices" / name / "flash.bin").read_bytes()
        fs = board.filesystem(False)
        files = fsimage.read(image.ljust(board.flash_size, b"\xff")[fs.offset:fs.end])
        config = _record(files["config.json"])
        assert config == {"device_id": name, "report_interval_s": 600}
        assert _record(files["secrets.json"])["mqtt_password"] == PASSWORD
    assert PASSWORD not in (result.out_dir / build.MANIFEST_NAME).read_text()
    assert [d["name"] for d in result.manifest["devices"]] == ["unit-1", "unit-2"]


def _record(data: bytes):
    """A store record (app/store.py): MSKR header, CRC'd JSON payload."""
    magic, _version, _reserved, length, _crc = struct.unpack_from("<4sBBII", data)
    assert magic == b"MSKR"
    return json.loads(data[14:14 + length])


def test_an_invalid_config_is_refused_before_anything_is_written(make_build, tmp_path):
    bad = tmp_path / "unit-9.json"
    bad.write_text(json.dumps({"config": {"report_interval_s": 5}}))
    with pytest.raises(build.BuildError, match="report_interval_s.*below the minimum"):
        make_build(name="refused", device=build.load_device(bad))
    assert not (tmp_path / "refused").exists()


@pytest.mark.parametrize("content, expected", [
    (b"{not json", "not valid JSON"),
    (b'{"colour": "red"}', "unknown key"),
    (b'{"config": [1]}', "config: expected an object"),
])
def test_a_malformed_device_file_is_one_clear_error(tmp_path, content, expected):
    path = tmp_path / "unit.json"
    path.write_bytes(content)
    with pytest.raises(build.BuildError, match=expected):
        build.load_device(path)


@pytest.mark.parametrize("args, expected", [
    (["--micropython", "missing.bin"], "MicroPython firmware missing.bin does not exist"),
    (["--board", "esp99", "--micropython", "{fw}"], "unknown board 'esp99'"),
    (["--board", "esp32s3-bg95", "--micropython", "{fw}"], "the board's chip is esp32s3"),
    (["--micropython", "{junk}"], "not an ESP image"),
    (["--micropython", "{cut}"], "not a valid ESP image"),
])
def test_bad_input_is_one_clear_error(tmp_path, stand_in, args, expected):
    fw = stand_in()
    junk, cut = tmp_path / "junk.bin", tmp_path / "cut.bin"
    junk.write_bytes(b"MicroPython v1.28 on 2026-01-01; but not an image" * 100)
    cut.write_bytes(espimage.split_firmware(fw.read_bytes(), "esp32").app[:20000])
    args = [a.format(fw=fw, junk=junk, cut=cut) for a in args]
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", *args, "--out", str(out)])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_cli_prints_the_pieces_and_json_the_manifest(tmp_path, stand_in):
    fw = stand_in()
    runner = CliRunner()
    shown = runner.invoke(main, ["build", "--micropython", str(fw), "--out",
                                 str(tmp_path / "a")])
    assert shown.exit_code == 0, shown.output
    for name in ("bootloader.bin", "partition-table.bin", "micropython.bin", "romfs.bin",
                 "filesystem.bin", "flash.bin"):
        assert name in shown.output
    printed = runner.invoke(main, ["build", "--micropython", str(fw), "--out",
                                   str(tmp_path / "b"), "--json"])
    manifest = json.loads(printed.output)
    assert manifest == json.loads((tmp_path / "b" / build.MANIFEST_NAME).read_text())


def test_partition_table_binary_layout():
    table = parttable.encode([Partition("nvs", "data", "nvs", 0x9000, 0x6000),
                              Partition("factory", "app", "factory", 0x10000, 0x100000)])
    assert len(table) == parttable.TABLE_SIZE
    assert table[:32] == (b"\xaa\x50\x01\x02" + struct.pack("<II", 0x9000, 0x6000)
                          + b"nvs".ljust(16, b"\0") + bytes(4))
    assert table[32:36] == b"\xaa\x50\x00\x00"
    assert table[64:80] == b"\xeb\xeb" + b"\xff" * 14
    assert table[80:96] == hashlib.md5(table[:64]).digest()
    assert table[96:] == b"\xff" * (parttable.TABLE_SIZE - 96)
    assert [p.name for p in parttable.decode(table)] == ["nvs", "factory"]
    damaged = bytearray(table)
    damaged[8] ^= 1
    with pytest.raises(MusketError, match="MD5"):
        parttable.decode(bytes(damaged))
    with pytest.raises(MusketError, match="longer than 15"):
        parttable.encode([Partition("a-very-long-partition", "data", "nvs", 0x9000, 0x1000)])


def test_units_built_with_a_key_store_trust_its_keys_and_only_them(tmp_path, stand_in):
    from musket.ota.keys import DEVICE_KEYS_PATH, KeyStore

    keys = KeyStore(tmp_path / "keys")
    keys.generate()
    keys.rotate()  # the first key stays trusted beside the new active one
    runner = CliRunner()
    made = runner.invoke(main, ["build", "--micropython", str(stand_in()), "--keys",
                                str(keys.folder), "--out", str(tmp_path / "out"), "--json"])
    assert made.exit_code == 0, made.output
    image = (tmp_path / "out" / "flash.bin").read_bytes()
    board = load_board("esp32-sim7080g")
    fs = board.filesystem(False)
    files = fsimage.read(image.ljust(board.flash_size, b"\xff")[fs.offset:fs.end])
    trusted = json.loads(files[DEVICE_KEYS_PATH])
    assert trusted == [k.public_key.hex() for k in keys.keys()] and len(trusted) == 2
    empty = runner.invoke(main, ["build", "--micropython", str(stand_in()), "--keys",
                                 str(tmp_path / "no-keys"), "--out", str(tmp_path / "x")])
    assert empty.exit_code == ExitCode.BAD_INPUT, empty.output
    assert "no active key" in empty.output and not (tmp_path / "x").exists()
