"""The firmware's Ed25519 verifier and SHA-512 (app.ota) against the host's own: signatures
made by the `cryptography` package (OpenSSL) on random messages, and CPython's hashlib.

The firmware modules are imported into this process from firmware/, with the sim's stand-in
for MicroPython's `micropython` module; they are dropped again afterwards.
"""

import hashlib
import os
import random
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from musket_sim.chip.cpython import plain

MESSAGES = 50
MAX_LENGTH = 3000
FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
SEED = 8032  # a fixed seed: a failure names the same message on every run


@pytest.fixture(scope="module")
def ota():
    """The firmware's app.ota package, imported for this module's tests only."""
    with pytest.MonkeyPatch.context() as patch:
        for folder in reversed(plain.pythonpath(FIRMWARE).split(os.pathsep)):
            patch.syspath_prepend(folder)
        from app.ota import ed25519, sha512

        yield ed25519, sha512
    for name in [n for n in sys.modules if n == "app" or n.startswith("app.")]:
        del sys.modules[name]
    sys.modules.pop("micropython", None)


def flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    bit = rng.randrange(len(out) * 8)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_signatures_from_openssl_verify_and_tampered_ones_fail(ota):
    ed25519, _ = ota
    rng = random.Random(SEED)
    for n in range(MESSAGES):
        key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        message = rng.randbytes(rng.randrange(MAX_LENGTH + 1))
        signature = key.sign(message)
        assert ed25519.verify(public, message, signature), (n, len(message))
        # One tampering per message, taking turns: message, R, S, key.
        part = n % 4
        if part == 0:
            tampered = (public, flip(message, rng) if message else b"\x00", signature)
        elif part == 1:
            tampered = (public, message, flip(signature[:32], rng) + signature[32:])
        elif part == 2:
            tampered = (public, message, signature[:32] + flip(signature[32:], rng))
        else:
            tampered = (flip(public, rng), message, signature)
        assert not ed25519.verify(*tampered), (n, len(message), "tampered part %d" % part)


@pytest.mark.parametrize("length", [0, 1, 111, 112, 127, 128, 129, 239, 240, 256, 1000])
def test_sha512_matches_hashlib(ota, length):
    _, sha512 = ota
    data = random.Random(length).randbytes(length)
    assert sha512.Sha512(data).digest() == hashlib.sha512(data).digest()
