"""Releases (musket.ota.release): a delta made from the base's full bundle names only the
files that differ from it, so that a small fix stays a small bundle."""

from __future__ import annotations

import shutil

from musket import firmware
from musket.ota import release
from musket.ota.keys import KeyStore

BOARD = "esp32-sim7080g"


def test_a_delta_lists_only_what_changed_and_what_went(tmp_path):
    store = KeyStore(tmp_path / "keys")
    store.generate()
    changed = tmp_path / "firmware"
    shutil.copytree(firmware.firmware_dir(), changed,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (changed / "app" / "backoff.py").write_text(
        (changed / "app" / "backoff.py").read_text() + "\nEXTRA = 1\n")
    (changed / "app" / "diag.py").unlink()
    full = release.build_release(store, version="1.0.0", boards=[BOARD])
    base_file = tmp_path / "app-1.0.0.mkot"
    base_file.write_bytes(full.data)
    small = release.build_release(store, version="1.0.1", boards=[BOARD],
                                  firmware_root=changed,
                                  base=release.load_base(base_file, store))
    assert [f["path"] for f in small.manifest["files"]] == ["app/backoff.mpy"]
    assert small.manifest["removed"] == ["app/diag.mpy"]
    before = {f["path"]: f for f in full.manifest["files"]}
    assert small.manifest["files"][0] != before["app/backoff.mpy"]
    assert len(full.manifest["files"]) > 20


def test_a_delta_from_a_raw_image_lists_every_file(tmp_path):
    store = KeyStore(tmp_path / "keys")
    store.generate()
    full = release.build_release(store, version="1.0.0", boards=[BOARD])
    raw = tmp_path / "image.bin"
    raw.write_bytes(release.load_base(_written(tmp_path, full), store).data)
    again = release.build_release(store, version="1.0.1", boards=[BOARD],
                                  base=release.load_base(raw, store))
    assert again.manifest["files"] == full.manifest["files"]
    assert "removed" not in again.manifest


def _written(tmp_path, made: release.Release):
    path = tmp_path / "bundle.mkot"
    path.write_bytes(made.data)
    return path
