"""The key store: the Ed25519 keys that sign update bundles, in a folder of their own.

    index.json          every key: ID, public key, created, state (written atomically)
    <key id>.pem        its private key, PKCS#8 PEM, mode 0600 (the folder is 0700)

A key's ID is the first 8 bytes of SHA-256 of its 32-byte raw public key (docs/ota.md). Its
state is `active` (signs new bundles; exactly one once the store has keys), `trusted` (no longer
signs by default, still trusted by devices: the key before a rotation) or `retired` (devices
are told to drop it). Private keys are never printed and never part of what `describe`
returns. The store's folder: `--keys DIR`, else $MUSKET_KEYS, else ~/.config/musket/keys
($XDG_CONFIG_HOME/musket/keys when that is set).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from musket.errors import BadInput

INDEX = "index.json"
INDEX_FORMAT = 1
ACTIVE, TRUSTED, RETIRED = "active", "trusted", "retired"
STATES = (ACTIVE, TRUSTED, RETIRED)
# The public keys a unit trusts, hex, as a JSON list on its filesystem (firmware/otaboot.py).
DEVICE_KEYS_PATH = "ota/keys.json"
ID_BYTES = 8


class KeyStoreError(BadInput):
    """The key store cannot do what was asked: no keys yet, an unknown ID, a damaged index."""


def key_id(public_key: bytes) -> str:
    """The ID of a 32-byte raw Ed25519 public key: its SHA-256's first 8 bytes, in hex."""
    return hashlib.sha256(public_key).digest()[:ID_BYTES].hex()


def raw_public(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)


def default_dir() -> Path:
    override = os.environ.get("MUSKET_KEYS")
    if override:
        return Path(override)
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "musket" / "keys"


@dataclass(frozen=True)
class KeyInfo:
    id: str
    public_key: bytes  # 32 raw bytes
    created: str  # ISO 8601, UTC
    state: str

    def describe(self) -> dict:
        """What may be shown or printed as JSON: no private material."""
        return {"id": self.id, "state": self.state, "created": self.created,
                "public_key": self.public_key.hex()}


class KeyStore:
    """The keys in one folder. Every change rewrites index.json whole (temp + rename), after
    any new private key file is complete: a cut leaves the old index, at worst beside an
    unlisted key file."""

    def __init__(self, folder: Path | str | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_dir()

    # --- reading ---------------------------------------------------------------------------

    def keys(self) -> list[KeyInfo]:
        """Every key, oldest first."""
        path = self.folder / INDEX
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise KeyStoreError(f"{path}: cannot read: {e.strerror}") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise KeyStoreError(f"{path}: not valid JSON: {e}") from None
        try:
            if data["format"] != INDEX_FORMAT:
                raise KeyStoreError(f"{path}: index format {data['format']!r}, this musket reads "
                                f"{INDEX_FORMAT}")
            keys = [KeyInfo(k["id"], bytes.fromhex(k["public_key"]), k["created"], k["state"])
                    for k in data["keys"]]
        except (KeyError, TypeError, ValueError) as e:
            raise KeyStoreError(f"{path}: damaged index ({e!r})") from None
        for key in keys:
            if key.state not in STATES or key_id(key.public_key) != key.id:
                raise KeyStoreError(f"{path}: damaged entry for key {key.id}")
        return keys

    def get(self, kid: str) -> KeyInfo:
        for key in self.keys():
            if key.id == kid.lower():
                return key
        raise KeyStoreError(f"no key {kid} in {self.folder}", hint="`musket keys list` shows them")

    def active(self) -> KeyInfo:
        for key in self.keys():
            if key.state == ACTIVE:
                return key
        raise KeyStoreError(f"no active key in {self.folder}",
                        hint="create one with `musket keys generate`")

    def trusted(self) -> list[KeyInfo]:
        """The keys a bundle tells devices to trust: the active one and the trusted ones."""
        return [key for key in self.keys() if key.state in (ACTIVE, TRUSTED)]

    def device_file(self) -> dict[str, bytes]:
        """The file that makes a unit trust these keys, as the line writes it on its
        filesystem (firmware/otaboot.py reads it): path → bytes."""
        trusted = self.trusted()
        if not trusted:
            raise KeyStoreError(f"no active key in {self.folder}",
                                hint="create one with `musket keys generate`")
        return {DEVICE_KEYS_PATH: json.dumps([k.public_key.hex() for k in trusted]).encode()}

    def public_keys(self) -> dict[str, bytes]:
        """ID → raw public key of every key, retired ones too (to read old bundles)."""
        return {key.id: key.public_key for key in self.keys()}

    def private_key(self, kid: str | None = None) -> tuple[KeyInfo, Ed25519PrivateKey]:
        """The signing key: the active one, or `kid` (active or trusted)."""
        key = self.active() if kid is None else self.get(kid)
        if key.state == RETIRED:
            raise KeyStoreError(f"key {key.id} is retired: it signs nothing")
        path = self.folder / (key.id + ".pem")
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as e:
            raise KeyStoreError(f"{path}: cannot read the private key: {e.strerror}") from None
        except ValueError:
            raise KeyStoreError(f"{path}: not a PEM private key") from None
        if not isinstance(private, Ed25519PrivateKey) or raw_public(private) != key.public_key:
            raise KeyStoreError(f"{path}: not the private key of {key.id}")
        return key, private

    # --- changing --------------------------------------------------------------------------

    def generate(self) -> KeyInfo:
        """The store's first key, which becomes active."""
        keys = self.keys()
        if keys:
            raise KeyStoreError(f"{self.folder} already has keys",
                            hint="`musket keys rotate` makes a new active key")
        key = self._new_key(ACTIVE)
        self._write([key])
        return key

    def rotate(self) -> tuple[KeyInfo, KeyInfo]:
        """A new active key; the one active before stays trusted. Returns (old, new)."""
        keys = self.keys()
        old = self.active()
        new = self._new_key(ACTIVE)
        self._write([replace(k, state=TRUSTED) if k.id == old.id else k for k in keys] + [new])
        return replace(old, state=TRUSTED), new

    def retire(self, kid: str) -> KeyInfo:
        """Devices are told to stop trusting `kid` (by the next bundle); it signs nothing more.
        Its private key file stays, so that old bundles can still be checked."""
        key = self.get(kid)
        if key.state == ACTIVE:
            raise KeyStoreError(f"key {key.id} is the active key",
                            hint="`musket keys rotate` first, then retire it")
        if key.state == RETIRED:
            return key
        keys = [replace(k, state=RETIRED) if k.id == key.id else k for k in self.keys()]
        self._write(keys)
        return replace(key, state=RETIRED)

    def _new_key(self, state: str) -> KeyInfo:
        private = Ed25519PrivateKey.generate()
        public = raw_public(private)
        kid = key_id(public)
        pem = private.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.folder / (kid + ".pem"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        return KeyInfo(kid, public, created, state)

    def _write(self, keys: list[KeyInfo]) -> None:
        data = {"format": INDEX_FORMAT,
                "keys": [{"id": k.id, "public_key": k.public_key.hex(), "created": k.created,
                          "state": k.state} for k in keys]}
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".index-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(data, indent=2) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.folder / INDEX)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
