"""`musket ota build` and `musket ota inspect` through click's runner: a full bundle, a delta
against it for a one-line change (--firmware), the checks a bundle gets, --json for scripts."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from musket import firmware
from musket.cli import main
from musket.errors import ExitCode


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ota")
    keys = str(folder / "keys")
    assert CliRunner().invoke(main, ["keys", "generate", "--keys", keys]).exit_code == 0
    changed = folder / "firmware"
    shutil.copytree(firmware.firmware_dir(), changed,
                    ignore=shutil.ignore_patterns("__pycache__"))
    source = changed / "app" / "usage.py"
    text = source.read_text()
    assert "commit failed, will retry" in text
    source.write_text(text.replace("commit failed, will retry", "commit failed; retrying"))
    return folder, keys


def ota(keys, *args):
    result = CliRunner().invoke(main, ["ota", *args, "--keys", keys])
    return result


def build(work, name, *args):
    folder, keys = work
    out = folder / name
    result = ota(keys, "build", "--board", "esp32-sim7080g", "--out", str(out), "--json", *args)
    assert result.exit_code == 0, result.output
    return out, json.loads(result.output)


def test_full_then_delta(work):
    folder, keys = work
    full, made = build(work, "full.mkot", "--version", "1.0.0")
    assert made["kind"] == "full" and made["total_size"] == full.stat().st_size
    delta, small = build(work, "delta.mkot", "--version", "1.0.1", "--base", str(full),
                         "--firmware", str(folder / "firmware"))
    assert small["kind"] == "delta"
    assert small["base"]["version"] == "1.0.0"
    assert small["base"]["size"] == made["image_size"]
    assert small["payload_size"] < 1000
    shown = json.loads(ota(keys, "inspect", str(delta), "--json").output)
    assert shown["manifest"]["base"]["sha256"] == small["base"]["sha256"]
    assert shown["key_state"] == "active"
    people = ota(keys, "inspect", str(full))
    assert "app/usage.mpy" in people.output and "check out" in people.output


def test_a_raw_image_as_base(work, tmp_path):
    folder, keys = work
    full, _ = build(work, "full-raw.mkot", "--version", "1.0.0")
    from musket.ota import bundle
    from musket.ota.keys import KeyStore

    raw = tmp_path / "image.romfs"
    raw.write_bytes(bundle.read_bundle(full.read_bytes(), KeyStore(keys).public_keys()).image())
    _, made = build(work, "from-raw.mkot", "--version", "1.0.1", "--base", str(raw))
    assert made["kind"] == "delta" and "version" not in made["base"]


def test_a_version_not_above_the_base_needs_downgrade(work):
    folder, keys = work
    full, _ = build(work, "v2.mkot", "--version", "2.0.0")
    out = str(folder / "down.mkot")
    refused = ota(keys, "build", "--board", "esp32-sim7080g", "--version", "1.9.0", "--base",
                  str(full), "--out", out)
    assert refused.exit_code == ExitCode.BAD_INPUT and "--downgrade" in refused.output
    build(work, "down.mkot", "--version", "1.9.0", "--base", str(full), "--downgrade")


def test_cpython_bundle(work):
    _, made = build(work, "cpython.mkot", "--version", "1.0.0", "--interpreter", "cpython")
    assert made["interpreter"] == "cpython"


def test_tampered_bundle_is_bad_input(work):
    folder, keys = work
    full, _ = build(work, "t.mkot", "--version", "1.0.0")
    data = bytearray(full.read_bytes())
    data[-10] ^= 1
    bad = folder / "tampered.mkot"
    bad.write_bytes(bytes(data))
    result = ota(keys, "inspect", str(bad))
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "payload mismatch" in result.output


@pytest.mark.parametrize(("args", "expected"), [
    (["--version", "1.0"], "MAJOR.MINOR.PATCH"),
    (["--version", "1.0.0", "--board", "no-such-board"], "no-such-board"),
    (["--version", "1.0.0", "--min-version", "x"], "MAJOR.MINOR.PATCH"),
    (["--version", "1.0.0", "--sign-with", "0000000000000000"], "no key 0000000000000000"),
])
def test_bad_options_are_one_clear_error(work, args, expected):
    folder, keys = work
    result = ota(keys, "build", "--board", "esp32-sim7080g", "--out", str(folder / "x.mkot"),
                 *args)
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert expected in result.output
    assert not (folder / "x.mkot").exists()


@pytest.fixture(scope="module")
def release_bin(work):
    """A binary shaped like a MicroPython release for the ESP32 (bootloader, table, app)."""
    from musket import espimage, parttable
    from musket.boards import load_board

    folder, _ = work
    table = parttable.encode(load_board("esp32-sim7080g").partitions(True))
    path = folder / "ESP32_GENERIC.bin"
    path.write_bytes(espimage.stand_in_release("esp32", table, 64 * 1024))
    return path


def test_an_image_bundle_of_a_firmware_binary(work, release_bin):
    from musket import espimage

    folder, keys = work
    out, made = build(work, "image.mkot", "--version", "1.28.1", "--image", str(release_bin))
    app = espimage.split_firmware(release_bin.read_bytes(), "esp32").app
    assert made["kind"] == "image" and made["layout"] == "ota"
    assert made["interpreter"] == "micropython"
    assert made["image_size"] == len(app)  # the app alone: the bootloader is not updated
    shown = ota(keys, "inspect", str(out))
    assert shown.exit_code == 0, shown.output
    assert "image (layout ota)" in shown.output and "files" not in shown.output


@pytest.mark.parametrize(("board", "more", "expected"), [
    ("esp32s3-bg95", [], "built for another chip"),
    ("esp32-sim7080g", ["--base", "x.mkot"], "takes no --base"),
    ("esp32-sim7080g", ["--interpreter", "cpython"], "takes no --base"),
])
def test_an_image_bundle_refuses_what_does_not_fit_it(work, release_bin, board, more,
                                                      expected):
    folder, keys = work
    result = ota(keys, "build", "--version", "1.28.1", "--image", str(release_bin),
                 "--board", board, "--out", str(folder / "y.mkot"), *more)
    assert result.exit_code != 0, result.output
    assert expected in result.output
    assert not (folder / "y.mkot").exists()


def test_a_damaged_firmware_binary_is_refused(work, release_bin, tmp_path):
    folder, keys = work
    data = bytearray(release_bin.read_bytes())
    data[0x10000 - 0x1000 + 200] ^= 0xFF  # a byte of the app
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    result = ota(keys, "build", "--version", "1.28.1", "--board", "esp32-sim7080g",
                 "--image", str(bad), "--out", str(folder / "z.mkot"))
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "does not match" in result.output
    assert not (folder / "z.mkot").exists()
