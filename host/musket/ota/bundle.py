"""An update bundle's bytes (docs/ota.md, "The bundle"): an 80-byte header, the manifest
(compact JSON) whose Ed25519 signature the header carries, and the payload (one zlib stream,
4 KB window; for an image bundle, one such stream per 64 KB of the image, so that the device
can inflate it where it downloaded it, a segment at a time). `build_bundle` writes one,
`read_bundle` checks every byte of one."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from musket.errors import BadInput
from musket.ota.image import INTERPRETERS, SEGMENT_BYTES
from musket.ota.keys import key_id, raw_public

MAGIC = b"MKOT"
FORMAT = 1
FLAGS = 0
HEADER = struct.Struct(">4sBBH8s64s")  # magic, format, flags, manifest length, key ID, signature
HEADER_SIZE = HEADER.size  # 80
SIGNED_PREFIX = b"musket-ota\0"
WBITS = 12  # the payload's zlib window: 4 KB, what the device can spare to inflate it
# full: the application image; delta: patch operations against the image the device runs;
# image: the MicroPython firmware binary (an ESP app image) for the board's other OTA app slot.
KINDS = ("full", "delta", "image")
IMAGE_LAYOUT = "ota"  # the partition layout an image bundle needs: two OTA app slots
_VERSION = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")


class BundleError(BadInput):
    """A bundle that cannot be used: damaged, cut short, or not signed by a trusted key."""


def parse_version(text: str, what: str = "version") -> tuple[int, int, int]:
    """MAJOR.MINOR.PATCH as numbers, to compare."""
    match = _VERSION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise BundleError(f"{what} {text!r} is not MAJOR.MINOR.PATCH (e.g. 1.4.0)")
    return tuple(int(part) for part in match.groups())  # type: ignore[return-value]


def compress(data: bytes) -> bytes:
    """The payload: one zlib stream with a 4 KB window."""
    z = zlib.compressobj(9, zlib.DEFLATED, WBITS)
    return z.compress(data) + z.flush()


def compress_segments(data: bytes) -> tuple[bytes, list[int]]:
    """An image bundle's payload: (the streams of each SEGMENT_BYTES of `data`, end to end,
    their sizes)."""
    streams = [compress(data[at:at + SEGMENT_BYTES]) for at in range(0, len(data), SEGMENT_BYTES)]
    return b"".join(streams), [len(s) for s in streams]


def decompress(payload: bytes) -> bytes:
    z = zlib.decompressobj(WBITS)
    try:
        data = z.decompress(payload)
    except zlib.error as e:
        raise BundleError(f"payload: not a zlib stream with a 4 KB window ({e})") from None
    if not z.eof or z.unused_data:
        raise BundleError("payload: the zlib stream is cut short or followed by other bytes")
    return data


@dataclass(frozen=True)
class Bundle:
    key_id: str
    manifest: dict
    manifest_bytes: bytes
    payload: bytes

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def total_size(self) -> int:
        return HEADER_SIZE + len(self.manifest_bytes) + len(self.payload)

    def contents(self) -> bytes:
        """The decompressed payload: the image (full, image) or the delta's operations
        (delta)."""
        segments = self.manifest["payload"].get("segments")
        if segments is None:
            return decompress(self.payload)
        parts, at = [], 0
        for size in segments:
            parts.append(decompress(self.payload[at:at + size]))
            at += size
        return b"".join(parts)

    def image(self) -> bytes:
        """A full or image bundle's image, checked against the manifest's size and SHA-256."""
        if self.kind == "delta":
            raise BundleError("a delta bundle holds no image: apply it to its base")
        data = self.contents()
        check_image(data, self.manifest["image"], "the payload")
        return data


def check_image(data: bytes, expected: Mapping, what: str) -> None:
    if len(data) != expected["size"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise BundleError(f"{what} is not the image the manifest names ({len(data):,} bytes, "
                          f"expected {expected['size']:,} with its SHA-256)")


def build_bundle(manifest: dict, payload: bytes, private: Ed25519PrivateKey,
                 segments: list[int] | None = None) -> bytes:
    """The bundle of `manifest` (every field but `format`, `payload` and `total_size`, which
    are filled in here) and the compressed `payload` (of `segments`, for an image bundle),
    signed by `private`."""
    described = {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    if segments is not None:
        described["segments"] = segments
    manifest = {"format": FORMAT, **manifest, "payload": described}
    _check_manifest(manifest, partial=True)
    trusted = manifest.pop("trusted_keys", None)
    # total_size counts the manifest that holds it: settle it (its digits may add a byte).
    total = HEADER_SIZE + len(payload)
    while True:
        body = dict(manifest, total_size=total)
        if trusted is not None:
            body["trusted_keys"] = trusted
        data = _encode(body)
        if HEADER_SIZE + len(data) + len(payload) == total:
            break
        total = HEADER_SIZE + len(data) + len(payload)
    if len(data) > 0xFFFF:
        raise BundleError(f"the manifest ({len(data):,} bytes) is longer than a bundle holds")
    signature = private.sign(SIGNED_PREFIX + data)
    kid = bytes.fromhex(key_id(raw_public(private)))
    return HEADER.pack(MAGIC, FORMAT, FLAGS, len(data), kid, signature) + data + payload


def read_bundle(data: bytes, trusted_public_keys) -> Bundle:
    """The bundle in `data`, checked: header, signature by one of `trusted_public_keys` (32-byte
    raw keys, or a mapping of ID → key), manifest, payload size and SHA-256, total size."""
    data = bytes(data)
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise BundleError("not an update bundle (bad magic: it does not start with MKOT)")
    if len(data) < HEADER_SIZE:
        raise BundleError(f"truncated: {len(data)} bytes, shorter than the header")
    magic, fmt, flags, length, kid, signature = HEADER.unpack_from(data)
    if fmt != FORMAT:
        raise BundleError(f"unknown bundle format {fmt} (this musket reads format {FORMAT})")
    if flags != FLAGS:
        raise BundleError(f"unknown flags {flags:#04x}")
    if len(data) < HEADER_SIZE + length:
        raise BundleError(f"truncated: {len(data)} bytes, the manifest ends at "
                          f"{HEADER_SIZE + length}")
    manifest_bytes = data[HEADER_SIZE:HEADER_SIZE + length]
    keys = _by_id(trusted_public_keys)
    if kid.hex() not in keys:
        raise BundleError(f"signed by unknown key {kid.hex()}",
                          hint="`musket keys list` shows the keys this store knows")
    try:
        Ed25519PublicKey.from_public_bytes(keys[kid.hex()]).verify(
            signature, SIGNED_PREFIX + manifest_bytes)
    except InvalidSignature:
        raise BundleError(f"bad signature: the manifest was not signed by key {kid.hex()}") \
            from None
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"the manifest is not UTF-8 JSON: {e}") from None
    _check_manifest(manifest)
    if len(data) != manifest["total_size"]:
        what = "truncated" if len(data) < manifest["total_size"] else "bytes after the payload"
        raise BundleError(f"{what}: {len(data):,} bytes, the manifest says "
                          f"{manifest['total_size']:,}")
    payload = data[HEADER_SIZE + length:]
    if (len(payload) != manifest["payload"]["size"]
            or hashlib.sha256(payload).hexdigest() != manifest["payload"]["sha256"]):
        raise BundleError("payload mismatch: its size or SHA-256 is not the manifest's")
    return Bundle(kid.hex(), manifest, manifest_bytes, payload)


def kind_of(data: bytes) -> str:
    """The kind a bundle's manifest states, unchecked: what the offer tells a device so that
    it knows where to put the bytes (an image's payload goes to an app slot), never a reason
    to trust them; the device checks the signature before it uses any."""
    try:
        length = HEADER.unpack_from(data)[3]
        return str(json.loads(data[HEADER_SIZE:HEADER_SIZE + length]).get("kind", "full"))
    except (struct.error, ValueError, UnicodeDecodeError, AttributeError):
        raise BundleError("not an update bundle: its manifest cannot be read") from None


def _by_id(keys) -> dict[str, bytes]:
    if isinstance(keys, Mapping):
        return {str(k).lower(): bytes(v) for k, v in keys.items()}
    return {key_id(bytes(k)): bytes(k) for k in keys}


def _encode(manifest: dict) -> bytes:
    return json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _check_manifest(m: dict, partial: bool = False) -> None:
    """The manifest's fields as docs/ota.md defines them."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise BundleError(f"manifest: {what}")

    need(isinstance(m, dict), "not a JSON object")
    need(m.get("format") == FORMAT, f"format {m.get('format')!r}, expected {FORMAT}")
    parse_version(m.get("version"), "manifest: version")
    if "min_version" in m:
        parse_version(m["min_version"], "manifest: min_version")
    boards = m.get("boards")
    need(isinstance(boards, list) and boards and all(isinstance(b, str) for b in boards),
         "boards: expected a list of board names")
    need(m.get("interpreter") in INTERPRETERS, f"interpreter {m.get('interpreter')!r}")
    need(isinstance(m.get("downgrade", False), bool), "downgrade: expected true or false")
    need(m.get("kind") in KINDS, f"kind {m.get('kind')!r}")
    need(_is_blob(m.get("image")), "image: expected size and sha256")
    need(_is_blob(m.get("payload")), "payload: expected size and sha256")
    if m["kind"] == "image":
        need(m.get("layout") == IMAGE_LAYOUT,
             f"layout {m.get('layout')!r}: an image bundle is for the {IMAGE_LAYOUT!r} layout")
        segments = m["payload"].get("segments")
        need(isinstance(segments, list) and all(isinstance(n, int) and n > 0 for n in segments)
             and sum(segments) == m["payload"]["size"]
             and len(segments) == -(-m["image"]["size"] // SEGMENT_BYTES),
             "payload.segments: expected the compressed size of each 64 KB of the image")
    if m["kind"] == "delta":
        need(_is_blob(m.get("base")), "base: a delta needs the base's size and sha256")
        if "version" in m["base"]:
            parse_version(m["base"]["version"], "manifest: base version")
    files = m.get("files", [])
    need(isinstance(files, list) and all(
        isinstance(f, dict) and isinstance(f.get("path"), str) and _is_blob(f) for f in files),
        "files: expected path, size and sha256 for each")
    removed = m.get("removed", [])
    need(isinstance(removed, list) and all(isinstance(p, str) for p in removed),
         "removed: expected a list of paths")
    keys = m.get("trusted_keys", [])
    need(isinstance(keys, list) and all(
        isinstance(k, str) and re.fullmatch("[0-9a-f]{64}", k) for k in keys),
        "trusted_keys: expected 64-hex-digit public keys")
    if not partial:
        need(isinstance(m.get("total_size"), int), "total_size: expected a number")


def _is_blob(value) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("size"), int)
            and value["size"] >= 0 and isinstance(value.get("sha256"), str)
            and re.fullmatch("[0-9a-f]{64}", value["sha256"]) is not None)

