"""`musket flash` refuses a bad build before it opens a port, and says why a port failed with
the exit code of the cause. Real builds, real esptool, virtual devices: a manifest with a field
missing or of the wrong type, and images damaged the way a bad copy or a hand edit damages
them, with the manifest regenerated to match so that only the image check can catch them."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from esptool.bin_image import LoadFirmwareImage
from esptool.util import FatalError
from serial import SerialException

from musket import flash
from musket.build import MANIFEST_NAME
from musket.cli import main
from musket.errors import ExitCode

DELETE = object()
DIGEST = 32  # the SHA-256 an image appends after its checksum byte
WHERE = str(Path("{out}") / MANIFEST_NAME)


def _edit(out: Path, path: tuple, value) -> None:
    """Sets (or with DELETE removes) one thing in the manifest. A name in a list of pieces or
    partitions picks the entry of that name."""
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    *parents, last = path
    node = manifest
    for key in parents:
        node = _child(node, key)
    if isinstance(node, list) and isinstance(last, str):
        last = next(n for n, entry in enumerate(node) if entry["name"] == last)
    if value is DELETE:
        del node[last]
    else:
        node[last] = value(node[last]) if callable(value) else value
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))


def _child(node, key):
    if isinstance(node, list) and isinstance(key, str):
        return next(entry for entry in node if entry["name"] == key)
    return node[key]


def _damage(out: Path, piece: str, change) -> None:
    """Rewrites a piece's file with `change(data)` and regenerates its manifest entry (size
    and SHA-256), as someone who 'fixed' the manifest by hand would."""
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    entry = _child(manifest["pieces"], piece)
    data = change(bytearray((out / entry["file"]).read_bytes()))
    (out / entry["file"]).write_bytes(data)
    entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))


def _segment(data: bytes) -> int:
    """Where the data of the image's largest segment starts in the file."""
    image = LoadFirmwareImage("esp32", bytes(data))
    biggest = max(image.segments, key=lambda s: len(s.data))
    return biggest.file_offs + 8


def _flip_in_segment(data: bytearray) -> bytearray:
    """Bits flipped in an odd number of bytes, so the XOR checksum changes too."""
    start = _segment(data) + 100
    data[start:start + 7] = bytes(b ^ 0x5A for b in data[start:start + 7])
    return data


def _swap_in_segment(data: bytearray) -> bytearray:
    """Two different bytes swapped: the XOR checksum still matches, the SHA-256 does not."""
    n = _segment(data)
    while data[n] == data[n + 1]:
        n += 1
    data[n], data[n + 1] = data[n + 1], data[n]
    return data


def _bad_checksum(data: bytearray) -> bytearray:
    """The checksum byte wrong and the digest recomputed over it: only the checksum fails."""
    data[-DIGEST - 1] ^= 0x01
    data[-DIGEST:] = hashlib.sha256(data[:-DIGEST]).digest()
    return data


def _set(offset: int, value: int):
    def change(data: bytearray) -> bytearray:
        data[offset] = value
        return data

    return change


def _untouched(server, station, out: Path) -> None:
    """Nothing reached the unit: its flash is erased as it was, no port was opened."""
    assert server.image.read_bytes() == b"\xff" * station.board.flash_size
    assert server.sessions == [] and not server.busy
    assert not (out / "logs").exists()


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return "socket://127.0.0.1:%d" % sock.getsockname()[1]


def _flash(out: Path, *ports: str, as_json: bool = False):
    args = ["flash", str(out), *[a for port in ports for a in ("--port", port)]]
    return CliRunner().invoke(main, args + (["--json"] if as_json else []))


# --- the manifest ------------------------------------------------------------------------------

MANIFEST_DEFECTS = {
    "no sha256": (("pieces", "micropython", "sha256"), DELETE,
                  "pieces[2] (micropython.bin): no sha256"),
    "offset as text": (("pieces", "partition-table", "offset"), "0x8000",
                       'pieces[1] (partition-table.bin): offset is "0x8000", expected an '
                       "integer, 0 or more"),
    "offset true": (("pieces", "romfs", "offset"), True,
                    "pieces[3] (romfs.bin): offset is true, expected an integer, 0 or more"),
    "negative size": (("pieces", "bootloader", "size"), -1,
                      "pieces[0] (bootloader.bin): size is -1, expected an integer, 0 or more"),
    "partition a number": (("pieces", "micropython", "partition"), 3,
                           "pieces[2] (micropython.bin): partition is 3, expected a string or "
                           "null"),
    "piece not an object": (("pieces", 0), "bootloader.bin",
                            "pieces[0]: a string, expected an object"),
    "pieces not a list": (("pieces",), {}, "pieces is {}, expected a list"),
    "no chip": (("chip",), DELETE, "no chip"),
    "unknown chip": (("chip",), "esp99", "chip: esptool does not know chip 'esp99'"),
    "partition without name": (("partitions", "nvs", "name"), DELETE, "partitions[0]: no name"),
    "partition offset null": (("partitions", "vfs", "offset"), None,
                              "partitions[5] (vfs): offset is null, expected an integer, 0 or "
                              "more"),
    "no nvs partition": (("partitions", "nvs"), DELETE, "partitions: none named 'nvs'"),
    "no filesystem piece": (("pieces", "filesystem"), DELETE,
                            "pieces: none named 'filesystem'"),
    "a name twice": (("pieces", "romfs", "name"), "micropython",
                     "pieces[3]: name 'micropython' is used twice"),
    "file outside the folder": (("pieces", "romfs", "file"), "../romfs.bin",
                                "pieces[3] (../romfs.bin): file '../romfs.bin' is not a file "
                                "name in the build folder"),
    "unknown partition": (("pieces", "romfs", "partition"), "spiffs",
                          "pieces[3] (romfs.bin): partition 'spiffs' is not in partitions"),
    "beyond its partition": (("pieces", "micropython", "partition"), "phy_init",
                             "pieces[2] (micropython.bin): 131,152 bytes at 0x10000 do not fit "
                             "partition 'phy_init' (4,096 bytes at 0xf000)"),
    "pieces overlap": (("pieces", "romfs"), lambda e: {**e, "offset": 0x11000, "partition": None},
                       "pieces[3] (romfs.bin): at 0x11000, inside micropython.bin (131,152 "
                       "bytes at 0x10000)"),
    "format": (("format",), 2, "manifest format 2, expected 1 (made by another musket?)"),
}


@pytest.mark.parametrize("defect", MANIFEST_DEFECTS)
def test_a_bad_manifest_is_one_line_naming_file_piece_and_field(make_build, defect):
    out = make_build().out_dir
    path, value, expected = MANIFEST_DEFECTS[defect]
    _edit(out, path, value)
    with pytest.raises(flash.BadBuild) as caught:
        flash.Plan.load(out)
    assert str(caught.value) == f"{out / MANIFEST_NAME}: {expected}"
    assert caught.value.exit_code == ExitCode.BAD_INPUT


def test_a_piece_whose_size_differs_from_the_manifest(make_build):
    out = make_build().out_dir
    _edit(out, ("pieces", "micropython", "size"), lambda size: size + 1)
    with pytest.raises(flash.BadBuild, match=r"micropython.bin has 131,152 bytes, the manifest "
                                             r"says 131,153 \(changed after the build\?\)$"):
        flash.Plan.load(out)


def test_a_manifest_that_is_not_json(make_build):
    out = make_build().out_dir
    (out / MANIFEST_NAME).write_text('{"format": 1,')
    with pytest.raises(flash.BadBuild, match="manifest.json: not valid JSON"):
        flash.Plan.load(out)


def test_cli_manifest_without_sha256_exits_4_and_writes_nothing(make_build, station):
    out = make_build().out_dir
    server = station.add()
    _edit(out, ("pieces", "micropython", "sha256"), DELETE)
    result = _flash(out, server.url)
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert result.stderr.splitlines() == [
        f"error: {out / MANIFEST_NAME}: pieces[2] (micropython.bin): no sha256",
        "hint: run `musket build` again to remake the folder"]
    assert result.stdout == ""
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    _untouched(server, station, out)


# --- the images --------------------------------------------------------------------------------

APP = "micropython.bin (the app for partition factory)"
IMAGE_DEFECTS = {
    "corrupt app": ("micropython", _flip_in_segment,
                    f"{APP}: checksum does not match; the file is damaged"),
    "sha256 only": ("micropython", _swap_in_segment,
                    f"{APP}: SHA-256 does not match; the file is damaged"),
    "checksum only": ("micropython", _bad_checksum,
                      f"{APP}: checksum does not match; the file is damaged"),
    "truncated": ("micropython", lambda d: d[:-100],
                  f"{APP}: not a valid ESP image: End of file reading segment 0x400d0020, "
                  f"length 65540 (actual length 65484)"),
    "cut before its checksum": ("micropython", lambda d: d[:-DIGEST - 8],
                                f"{APP}: not a valid ESP image: it ends early (cut short?)"),
    "cut inside its digest": ("micropython", lambda d: d[:-10],
                              f"{APP}: not a valid ESP image: it ends inside its SHA-256 (cut "
                              f"short?)"),
    "another chip's app": ("micropython", _set(12, 9),  # the header's chip id: ESP32-S3
                           f"{APP}: built for another chip (image chip id 9), but the board's "
                           f"chip is esp32"),
    "not an image": ("micropython", _set(0, 0x00),
                     f"{APP}: not an ESP image (starts with 0x00, expected 0xe9)"),
    "corrupt bootloader": ("bootloader", _flip_in_segment,
                           "bootloader.bin (the bootloader): checksum does not match; the file "
                           "is damaged"),
    "partition table md5": ("partition-table", _set(12, ord("N")),  # in the first entry's name
                            "partition-table.bin (the partition table): partition table MD5 "
                            "does not match its entries"),
}


@pytest.mark.parametrize("defect", IMAGE_DEFECTS)
def test_a_damaged_image_with_a_matching_manifest_is_refused(make_build, station, defect):
    out = make_build().out_dir
    server = station.add()
    piece, change, expected = IMAGE_DEFECTS[defect]
    _damage(out, piece, change)
    result = _flash(out, server.url)
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert result.stderr.splitlines() == [f"error: {out / expected}",
                                          "hint: run `musket build` again to remake the folder"]
    assert "Traceback" not in result.output
    _untouched(server, station, out)


def test_a_table_that_is_not_the_manifests_layout(make_build):
    out = make_build().out_dir
    _edit(out, ("partitions", "nvs", "size"), 0x5000)
    with pytest.raises(flash.BadBuild, match=r"partition-table.bin \(the partition table\): its "
                                             r"partitions are not the manifest's$"):
        flash.Plan.load(out)


# --- the ports ---------------------------------------------------------------------------------


def test_no_unit_answering_exits_5_with_the_hint(make_build):
    out = make_build().out_dir
    port = _closed_port()
    result = _flash(out, port, as_json=True)
    assert result.exit_code == ExitCode.UNIT_SILENT, result.output
    [entry] = json.loads(result.stdout)
    assert entry["ok"] is False and entry["exit_code"] == ExitCode.UNIT_SILENT
    error, hint = result.stderr.splitlines()
    assert error.startswith(f"error: {port}: Could not open {port}, the port is busy or doesn't "
                            f"exist. (Could not open port")
    assert "Connection refused" in error and f"(log: {out / 'logs'}" in error
    assert hint == "hint: " + flash.PortSilent.hint == "hint: " + entry["hint"]


def test_a_missing_serial_device_exits_5(make_build, tmp_path):
    out = make_build().out_dir
    result = _flash(out, str(tmp_path / "ttyUSB-gone"))
    assert result.exit_code == ExitCode.UNIT_SILENT, result.output
    assert result.stderr.splitlines()[-1] == "hint: " + flash.PortSilent.hint


def test_a_unit_of_another_chip_exits_4(make_build, station):
    out = make_build("esp32s3-bg95").out_dir
    server = station.add()  # an ESP32
    result = _flash(out, server.url, as_json=True)
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert json.loads(result.stdout)[0]["exit_code"] == ExitCode.BAD_INPUT
    error, hint = result.stderr.splitlines()
    assert "this is an ESP32, but the build is for esp32s3-bg95 (esp32s3)" in error
    assert hint == "hint: " + flash.WrongChip.hint


def test_ports_failing_for_different_causes_exit_1_and_the_others_carry_on(make_build,
                                                                           station):
    out = make_build("esp32s3-bg95").out_dir
    wrong = station.add()  # an ESP32: refused, 4
    silent = _closed_port()  # nobody there: 5
    result = _flash(out, wrong.url, silent, as_json=True)
    assert result.exit_code == ExitCode.FAILED, result.output
    codes = {r["port"]: r["exit_code"] for r in json.loads(result.stdout)}
    assert codes == {wrong.url: ExitCode.BAD_INPUT, silent: ExitCode.UNIT_SILENT}
    lines = result.stderr.splitlines()
    assert [line.split(": ")[1] for line in lines] == [wrong.url, silent]
    assert not any(line.startswith("hint:") for line in lines)  # no one hint fits both


def test_a_port_listed_twice_is_bad_input(make_build):
    out = make_build().out_dir
    port = _closed_port()
    result = _flash(out, port, port)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr.splitlines() == [f"error: port {port} is listed twice"]


# esptool tells its failures apart only by message: what each one means at the station.
ESPTOOL_FAILURES = [
    (FatalError("Failed to connect to ESP32: No serial data received.\nFor troubleshooting "
                "steps visit: https://docs.espressif.com/"), ExitCode.UNIT_SILENT),
    (FatalError("Could not open /dev/ttyUSB0, the port is busy or doesn't exist.\n([Errno 2] "
                "could not open port /dev/ttyUSB0)\n\nHint: Check if the port is correct and "
                "ESP connected\n"), ExitCode.UNIT_SILENT),
    (FatalError("Serial data stream stopped: Possible serial noise or corruption."),
     ExitCode.UNIT_SILENT),
    (SerialException("read failed: [Errno 104] Connection reset by peer"), ExitCode.UNIT_SILENT),
    (FatalError("Could not open /dev/ttyUSB0, the port is busy or doesn't exist.\n([Errno 13] "
                "could not open port /dev/ttyUSB0: [Errno 13] Permission denied)\n"),
     ExitCode.FAILED),
    (FatalError("MD5 of file does not match data in flash!"), ExitCode.FAILED),
]


@pytest.mark.parametrize(("error", "code"), ESPTOOL_FAILURES,
                         ids=[str(e).split("\n")[0][:40] for e, _ in ESPTOOL_FAILURES])
def test_what_an_esptool_failure_means(error, code):
    cause = flash._cause(error)
    assert cause.exit_code == code
    assert "\n" not in str(cause) and "Hint:" not in str(cause)
