"""A release: the application image of a firmware tree, signed into a full bundle, or into a
delta against the image the fleet runs (given as its full bundle or as the raw image); or a
MicroPython firmware binary, signed into an image bundle for the boards' OTA app slots."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from musket import espimage
from musket.boards import load_board
from musket.ota import bundle, delta, image
from musket.ota.keys import KeyStore


@dataclass(frozen=True)
class Base:
    """The image a delta is made against; its version when it came from a bundle."""

    data: bytes
    version: str | None = None
    interpreter: str | None = None
    files: list[dict] | None = None  # its manifest's files, when it came from a full bundle

    def describe(self) -> dict:
        entry = {"version": self.version} if self.version else {}
        return {**entry, "size": len(self.data),
                "sha256": hashlib.sha256(self.data).hexdigest()}


@dataclass(frozen=True)
class Release:
    data: bytes  # the bundle's bytes
    manifest: dict
    key_id: str

    def summary(self) -> dict:
        m = self.manifest
        out = {"version": m["version"], "kind": m["kind"], "boards": m["boards"],
               "interpreter": m["interpreter"], "image_size": m["image"]["size"],
               "payload_size": m["payload"]["size"], "total_size": m["total_size"],
               "key_id": self.key_id}
        if "base" in m:
            out["base"] = m["base"]
        if "layout" in m:
            out["layout"] = m["layout"]
        return out


def load_base(path: Path | str, store: KeyStore) -> Base:
    """A delta's base from a file: a full bundle (checked against every key of the store,
    retired ones too; its payload is the image) or, if it is not a bundle, the raw image."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise bundle.BundleError(f"base {path}: cannot read: {e.strerror}") from None
    if not data.startswith(bundle.MAGIC):
        return Base(data)
    try:
        old = bundle.read_bundle(data, store.public_keys())
    except bundle.BundleError as e:
        raise bundle.BundleError(f"base {path.name}: {e}", hint=e.hint) from None
    if old.kind != "full":
        raise bundle.BundleError(f"base {path.name} is a delta bundle",
                                 hint="give the full bundle (or the image) of that version")
    return Base(old.image(), old.manifest["version"], old.manifest["interpreter"],
                old.manifest["files"])


def build_release(store: KeyStore, *, version: str, boards: list[str],
                  interpreter: str = "micropython", min_version: str | None = None,
                  downgrade: bool = False, base: Base | None = None,
                  firmware_root: Path | None = None, sign_with: str | None = None,
                  cache_dir: Path | None = None) -> Release:
    """The bundle of the firmware tree `firmware_root` (default: firmware/) for `boards`: full,
    or a delta against `base`; signed by the store's active key (or `sign_with`, a trusted
    one, to introduce a new key to devices that do not trust it yet)."""
    parsed = bundle.parse_version(version)
    if min_version is not None:
        bundle.parse_version(min_version, "min version")
    if not boards:
        raise bundle.BundleError("a bundle is for at least one board (--board)")
    boards = list(dict.fromkeys(boards))
    key, private = store.private_key(sign_with)
    app = image.application_image(interpreter, firmware_root, cache_dir)
    image.check_fits(app.data, [load_board(name) for name in boards])
    manifest: dict = {"version": version, "boards": boards, "interpreter": interpreter}
    if min_version is not None:
        manifest["min_version"] = min_version
    manifest["downgrade"] = downgrade
    if base is None:
        manifest["kind"] = "full"
        contents = app.data
    else:
        _check_base(base, parsed, interpreter, downgrade)
        manifest["kind"] = "delta"
        manifest["base"] = base.describe()
        contents = delta.make_delta(base.data, app.data)
    manifest["image"] = {"size": len(app.data), "sha256": app.sha256}
    files = app.file_entries()
    if base is not None and base.files is not None:
        # A delta names only what differs from its base, so that a small fix stays small.
        manifest["files"], manifest["removed"] = changed_files(base.files, files)
    else:
        manifest["files"] = files
    manifest["trusted_keys"] = [k.public_key.hex() for k in store.trusted()]
    data = bundle.build_bundle(manifest, bundle.compress(contents), private)
    made = bundle.read_bundle(data, {key.id: key.public_key})  # as a device would see it
    return Release(data, made.manifest, key.id)


def build_image_release(store: KeyStore, *, version: str, boards: list[str], firmware: Path,
                        min_version: str | None = None, downgrade: bool = False,
                        sign_with: str | None = None) -> Release:
    """The image bundle of the MicroPython firmware binary `firmware` (a release .bin, whose
    app is taken, or an app image) for `boards`: checked as the bootloader will check it
    (espimage), for each board's chip, and against the room of its OTA app slots; compressed
    and signed as application bundles are."""
    bundle.parse_version(version)
    if min_version is not None:
        bundle.parse_version(min_version, "min version")
    if not boards:
        raise bundle.BundleError("a bundle is for at least one board (--board)")
    boards = list(dict.fromkeys(boards))
    try:
        data = Path(firmware).read_bytes()
    except OSError as e:
        raise bundle.BundleError(f"image {firmware}: cannot read: {e.strerror}") from None
    app = None
    targets = [load_board(name) for name in boards]
    for board in targets:
        found = espimage.split_firmware(data, board.chip, str(firmware)).app
        if app is not None and found != app:
            raise bundle.BundleError(f"{board.name}: the image reads differently for its chip")
        app = found
        image.check_fits_slots(app, board)
    key, private = store.private_key(sign_with)
    manifest: dict = {"version": version, "boards": boards, "interpreter": "micropython"}
    if min_version is not None:
        manifest["min_version"] = min_version
    manifest["downgrade"] = downgrade
    manifest["kind"] = "image"
    manifest["layout"] = bundle.IMAGE_LAYOUT
    manifest["image"] = {"size": len(app), "sha256": hashlib.sha256(app).hexdigest()}
    manifest["trusted_keys"] = [k.public_key.hex() for k in store.trusted()]
    payload, segments = bundle.compress_segments(app)
    for board in targets:
        image.check_installs_in_place(len(app), segments, board)
    data = bundle.build_bundle(manifest, payload, private, segments)
    made = bundle.read_bundle(data, {key.id: key.public_key})  # as a device would see it
    return Release(data, made.manifest, key.id)


def changed_files(base: list[dict], new: list[dict]) -> tuple[list[dict], list[str]]:
    """(the entries of `new` that are not in `base` as they are, the paths `new` drops)."""
    before = {f["path"]: f for f in base}
    paths = {f["path"] for f in new}
    return ([f for f in new if before.get(f["path"]) != f],
            sorted(p for p in before if p not in paths))


def _check_base(base: Base, version: tuple, interpreter: str, downgrade: bool) -> None:
    if base.interpreter is not None and base.interpreter != interpreter:
        raise bundle.BundleError(f"the base is a {base.interpreter} image, this release is "
                                 f"{interpreter}")
    if base.version is not None and not downgrade and \
            version <= bundle.parse_version(base.version):
        raise bundle.BundleError(f"version {'.'.join(map(str, version))} is not above the "
                                 f"base's {base.version}: devices would refuse it",
                                 hint="give a higher --version, or --downgrade for a signed "
                                      "downgrade")
