# Installing a downloaded update bundle (docs/ota.md) into the application slot the device
# does not run from. The header's signature is checked before the manifest is parsed, the
# manifest's rules before any byte of the slot is touched, and the payload is streamed: hashed
# as it is read, inflated, patched against the running image for a delta, written to the slot
# and hashed again as written. Nothing here decides which slot boots; the caller does, once
# `install` returned (app.ota.slots).
#
# It runs in a heap that is not yet fragmented (before the application starts): inflating
# needs a 4 KB window in one piece and the manifest is parsed whole.
import binascii
import hashlib
import io
import json
import struct
import sys

import deflate
from app.errors import FirmwareError
from app.ota import delta, ed25519
from micropython import const

MAGIC = b"MKOT"
ROMFS_MAGIC = b"\xd2\xcd\x31"  # MicroPython's VfsRom
DOMAIN = b"musket-ota\x00"  # signed before the manifest: a signature for nothing else fits
_FORMAT = const(1)
_HEADER = const(80)
_HEADER_FMT = ">4sBBH8s64s"
_MANIFEST_MAX = const(8192)  # a manifest listing a few hundred files
_WBITS = const(12)
_BLOCK = const(4096)


class Rejected(FirmwareError):
    """The bundle is refused; `reason` is a short word for the status (signature, board, ...),
    the message says what was wrong."""

    def __init__(self, reason, detail):
        super().__init__("%s: %s" % (reason, detail))
        self.reason = reason


def parse_version(text):
    # "MAJOR.MINOR.PATCH" -> a tuple that compares as versions do.
    try:
        parts = tuple(int(p) for p in text.split("."))
    except (AttributeError, ValueError):
        parts = ()
    if len(parts) != 3 or min(parts) < 0:
        raise Rejected("format", "version %r is not MAJOR.MINOR.PATCH" % (text,))
    return parts


def key_id(public_key):
    # The first 8 bytes of SHA-256 of the raw public key, as in the bundle's header.
    return hashlib.sha256(public_key).digest()[:8]


def read_manifest(f, trusted_keys):
    """Reads the header and the manifest from the start of `f`, checks the signature with the
    trusted key the header names (`trusted_keys`: raw 32-byte public keys), and returns the
    manifest (a dict) and the payload's offset in the file."""
    header = f.read(_HEADER)
    if len(header) < _HEADER:
        raise Rejected("format", "truncated header")
    magic, fmt, flags, length, kid, signature = struct.unpack(_HEADER_FMT, header)
    if magic != MAGIC:
        raise Rejected("format", "not an update bundle")
    if fmt != _FORMAT or flags:
        raise Rejected("format", "format %d flags %d not supported" % (fmt, flags))
    if not 0 < length <= _MANIFEST_MAX:
        raise Rejected("format", "manifest of %d bytes" % length)
    signer = None
    for public_key in trusted_keys:
        if key_id(public_key) == kid:
            signer = public_key
    if signer is None:
        raise Rejected("signature", "signed by an unknown key")
    manifest_bytes = f.read(length)
    if len(manifest_bytes) < length:
        raise Rejected("format", "truncated manifest")
    if not ed25519.verify(signer, DOMAIN + manifest_bytes, signature):
        raise Rejected("signature", "bad signature")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        raise Rejected("format", "manifest is not JSON")
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        raise Rejected("format", "manifest format not supported")
    return manifest, _HEADER + length


def check_rules(manifest, board, running_version, running_image, slot_size):
    """Whether this device may install the bundle, before anything is written:
    `running_version` the version it runs (of the application, or for an image bundle of its
    firmware image), `running_image` (size, sha256 hex) the image it runs from (a delta's
    base), `slot_size` the room in the other slot."""
    version = parse_version(manifest.get("version"))
    current = parse_version(running_version)
    kind = manifest.get("kind")
    if board not in (manifest.get("boards") or ()):
        raise Rejected("board", "not built for %s" % board)
    # An image bundle carries the interpreter itself (the MicroPython binary); the others
    # carry code for the one running.
    if kind != "image" and manifest.get("interpreter") != sys.implementation.name:
        raise Rejected("board", "built for %s" % manifest.get("interpreter"))
    if current < parse_version(manifest.get("min_version") or "0.0.0"):
        raise Rejected("version", "needs at least %s, runs %s" % (manifest["min_version"],
                                                                 running_version))
    if version <= current and not (manifest.get("downgrade") and version < current):
        raise Rejected("version", "%s is not newer than %s" % (manifest["version"],
                                                               running_version))
    image = manifest.get("image") or {}
    if not 0 < image.get("size", 0) <= slot_size:
        raise Rejected("size", "an image of %s bytes does not fit %d" % (image.get("size"),
                                                                         slot_size))
    if kind == "delta":
        base = manifest.get("base") or {}
        if (base.get("size"), base.get("sha256")) != running_image:
            raise Rejected("base", "made against %s, the device runs another image"
                           % (base.get("version")
                              or "image %s" % str(base.get("sha256"))[:12]))
    elif kind not in ("full", "image"):
        raise Rejected("format", "kind %r" % (kind,))


class Bounded(io.IOBase):
    # A payload as the inflater reads it: at most `size` bytes of `f`, hashed on the way.

    def __init__(self, f, size):
        self._f = f
        self.left = size
        self.sha = hashlib.sha256()

    def readinto(self, buf):
        n = min(len(buf), self.left)
        if n <= 0:
            return 0
        view = memoryview(buf)[:n]
        got = self._f.readinto(view)
        if got:
            self.left -= got
            self.sha.update(view[:got])
        return got

    def read(self, n=-1):
        # For an inflater that reads rather than reads into (the simulator's, under CPython).
        buf = bytearray(self.left if n < 0 else min(n, self.left))
        got = self.readinto(buf)
        return bytes(buf[:got])


class SlotReader:
    """A slot (an esp32.Partition or anything with readblocks) read as a stream, for the
    delta's copies from the running image."""

    def __init__(self, part):
        self._part = part
        self._pos = 0

    def seek(self, offset):
        self._pos = offset

    def readinto(self, buf):
        self._part.readblocks(self._pos // _BLOCK, buf, self._pos % _BLOCK)
        self._pos += len(buf)
        return len(buf)


class SlotWriter:
    """Writes a slot front to back from `at` (a block's start), erasing each flash block before
    its first byte, and hashes what it wrote."""

    def __init__(self, part, at=0):
        self._part = part
        self._at = at
        self.written = 0
        self.sha = hashlib.sha256()
        self._room = part.ioctl(4, 0) * part.ioctl(5, 0)  # block count * block size

    def write(self, data):
        n = len(data)
        if self._at + self.written + n > self._room:
            raise Rejected("size", "the image overflows its slot")
        view = memoryview(data)
        done = 0
        while done < n:
            at = self._at + self.written + done
            block = at // _BLOCK
            if at % _BLOCK == 0:
                self._part.ioctl(6, block)  # erase
            step = min(n - done, _BLOCK - at % _BLOCK)
            self._part.writeblocks(block, view[done:done + step], at % _BLOCK)
            done += step
        self.sha.update(view)
        self.written += n
        return n


def romfs_size(part, buf):
    # The length of the ROMFS image at the start of a slot, from its header (magic, then the
    # length of what follows as a varuint); 0 if the slot holds none.
    head = memoryview(buf)[:12]
    part.readblocks(0, head, 0)
    if bytes(head[:3]) != ROMFS_MAGIC:
        return 0
    length = 0
    for i in range(3, 12):
        length = (length << 7) | (head[i] & 0x7F)
        if not head[i] & 0x80:
            return i + 1 + length
    return 0


def image_digest(part, size, buf, at=0):
    # SHA-256 (hex) of `size` bytes of a slot from `at`: the running image, for a delta's base;
    # an image bundle's payload where the download put it.
    reader = SlotReader(part)
    reader.seek(at)
    sha = hashlib.sha256()
    view = memoryview(buf)
    left = size
    while left > 0:
        step = min(left, len(buf))
        reader.readinto(view[:step])
        sha.update(view[:step])
        left -= step
    return _hex(sha.digest())


def _hex(digest):
    return binascii.hexlify(digest).decode()


def inflate_into(source, out, buf):
    """Inflates the zlib stream `source` reads (a Bounded) into `out` (a SlotWriter). Raises
    Rejected for a stream that is cut short or corrupt."""
    inflated = deflate.DeflateIO(source, deflate.ZLIB, _WBITS)
    view = memoryview(buf)
    try:
        while True:
            n = inflated.readinto(buf)
            if not n:
                break
            out.write(view[:n])
    except (OSError, ValueError, EOFError) as e:
        # MicroPython's inflater ends a short stream with EOFError.
        raise Rejected("hash", "payload: %s" % (e or type(e).__name__))


def install(f, manifest, payload_offset, running_part, target_part, buf):
    """Streams the payload of a checked bundle (`read_manifest`, `check_rules`) into
    `target_part`; `running_part` is the base of a delta (None for a full one). Raises
    Rejected if a byte is not what the manifest promised; the slot is then not to be
    booted."""
    payload = manifest.get("payload") or {}
    image = manifest["image"]
    f.seek(payload_offset)
    source = Bounded(f, payload.get("size", 0))
    out = SlotWriter(target_part)
    if manifest["kind"] == "delta":
        try:
            delta.apply(deflate.DeflateIO(source, deflate.ZLIB, _WBITS),
                        SlotReader(running_part), out, buf, image["size"],
                        manifest["base"]["size"])
        except (OSError, ValueError, EOFError) as e:
            # A truncated or corrupt stream, or a malformed delta.
            raise Rejected("hash", "payload: %s" % (e or type(e).__name__))
    else:
        inflate_into(source, out, buf)
    while source.left > 0 and source.readinto(buf):
        pass  # the hash covers every payload byte, also past what inflating needed
    if source.left or _hex(source.sha.digest()) != payload.get("sha256"):
        raise Rejected("hash", "payload does not match its manifest")
    if out.written != image["size"] or _hex(out.sha.digest()) != image.get("sha256"):
        raise Rejected("hash", "image does not match its manifest")
