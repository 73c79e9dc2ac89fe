"""Update bundles (musket.ota.bundle): the bytes docs/ota.md describes, and every way a bundle
is refused: bad magic, unknown format, truncated, unknown key, bad signature, payload mismatch."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from musket.errors import BadInput
from musket.ota import bundle
from musket.ota.keys import key_id, raw_public

IMAGE = bytes(range(256)) * 200


@pytest.fixture(scope="module")
def key():
    return Ed25519PrivateKey.generate()


def manifest(**changes) -> dict:
    m = {"version": "1.4.0", "boards": ["esp32-sim7080g"], "interpreter": "micropython",
         "downgrade": False, "kind": "full",
         "image": {"size": len(IMAGE), "sha256": hashlib.sha256(IMAGE).hexdigest()},
         "files": [{"path": "app/main.mpy", "size": 5, "sha256": "0" * 64}],
         "trusted_keys": ["ab" * 32]}
    m.update(changes)
    return m


@pytest.fixture(scope="module")
def built(key):
    return bundle.build_bundle(manifest(), bundle.compress(IMAGE), key)


def test_the_layout_is_the_documented_one(built, key):
    magic, fmt, flags, length, kid, signature = struct.unpack_from(">4sBBH8s64s", built)
    assert (magic, fmt, flags) == (b"MKOT", 1, 0)
    assert kid.hex() == key_id(raw_public(key))
    body = built[80:80 + length]
    key.public_key().verify(signature, b"musket-ota\0" + body)
    m = json.loads(body)
    assert list(m) == ["format", "version", "boards", "interpreter", "downgrade", "kind",
                       "image", "files", "payload", "total_size", "trusted_keys"]
    assert b" " not in body  # compact
    assert m["total_size"] == len(built)
    payload = built[80 + length:]
    assert m["payload"] == {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    assert zlib.decompressobj(12).decompress(payload) == IMAGE  # a 4 KB window suffices
    assert payload[0] == 0x48  # zlib's CMF: deflate, CINFO 4, a 2**(4+8)-byte window


def test_round_trip(built, key):
    found = bundle.read_bundle(built, [raw_public(key)])
    assert found.kind == "full"
    assert found.image() == IMAGE
    assert found.manifest["version"] == "1.4.0"
    assert bundle.read_bundle(built, {found.key_id: raw_public(key)}).key_id == found.key_id


def refused(data, keys, match):
    with pytest.raises(bundle.BundleError, match=match) as e:
        bundle.read_bundle(data, keys)
    assert isinstance(e.value, BadInput)


def test_bad_magic(built, key):
    refused(b"MKOX" + built[4:], [raw_public(key)], "bad magic")
    refused(b"", [raw_public(key)], "bad magic")


def test_unknown_format(built, key):
    refused(built[:4] + b"\x02" + built[5:], [raw_public(key)], "unknown bundle format 2")


@pytest.mark.parametrize("cut", [10, 79, 100, -1, -500])
def test_truncated(built, key, cut):
    refused(built[:cut], [raw_public(key)], "truncated")


def test_unknown_key(built):
    other = raw_public(Ed25519PrivateKey.generate())
    refused(built, [other], "unknown key")


def test_flipped_signature_byte(built, key):
    data = bytearray(built)
    data[16 + 20] ^= 0x01
    refused(bytes(data), [raw_public(key)], "bad signature")


def test_tampered_manifest(built, key):
    data = built.replace(b'"1.4.0"', b'"9.4.0"')
    refused(data, [raw_public(key)], "bad signature")


def test_tampered_payload(built, key):
    data = bytearray(built)
    data[-3] ^= 0xFF
    refused(bytes(data), [raw_public(key)], "payload mismatch")


def test_bytes_after_the_payload(built, key):
    refused(built + b"\0", [raw_public(key)], "bytes after the payload")


@pytest.mark.parametrize("version", ["1.4", "1.4.0.1", "01.4.0", "v1.4.0", "1.4.x", ""])
def test_versions_are_major_minor_patch(key, version):
    with pytest.raises(bundle.BundleError, match="MAJOR.MINOR.PATCH"):
        bundle.build_bundle(manifest(version=version), bundle.compress(IMAGE), key)


def test_versions_compare_as_numbers():
    assert bundle.parse_version("1.10.0") > bundle.parse_version("1.9.9")


def test_a_delta_names_its_base(key):
    with pytest.raises(bundle.BundleError, match="base"):
        bundle.build_bundle(manifest(kind="delta"), bundle.compress(b"\0"), key)


def test_a_delta_holds_no_image(key):
    base = {"version": "1.3.0", "size": 1, "sha256": "1" * 64}
    data = bundle.build_bundle(manifest(kind="delta", base=base), bundle.compress(b"\0"), key)
    found = bundle.read_bundle(data, [raw_public(key)])
    assert found.manifest["base"] == base
    with pytest.raises(bundle.BundleError, match="no image"):
        found.image()


def test_a_payload_that_is_not_the_image_is_refused(key):
    data = bundle.build_bundle(manifest(), bundle.compress(IMAGE[:-1]), key)
    with pytest.raises(bundle.BundleError, match="not the image"):
        bundle.read_bundle(data, [raw_public(key)]).image()
