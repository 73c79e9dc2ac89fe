# Where an image bundle's bytes go as they arrive (app/ota/download.py; docs/ota.md, "Image
# updates"). The MicroPython firmware is about 1 MB compressed, more than the filesystem
# holds: the header and the manifest go to the download's file, as any bundle's, and the
# payload into the app slot the image is for, in its last blocks (slots.payload_offset), where
# the boot stage inflates it from (app/ota/slots.py).
#
# The filesystem holds the one flash block being filled, BLOCK: the block's index (4 bytes,
# big-endian), then its bytes so far. A full block is written to the slot, then BLOCK names
# the next one (written whole and renamed). The checkpoint is thus the head's length, then
# BLOCK: a cut before the rename finds the full block again and writes it again, and no byte
# that arrived is asked for again.
import os
import struct

from app.ota import slots
from micropython import const
from otastate import IMAGE_BLOCK as BLOCK

_HEADER = const(80)  # the bundle's header: its bytes 6-7 are the manifest's length
_FLASH_BLOCK = const(4096)
_COPY = const(256)  # bytes moved from BLOCK to the slot at once


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


class SlotSink:
    def __init__(self, head_path, size):
        """`head_path`: the download's file; `size`: the bundle's. Raises OSError on a board
        without an OTA app slot."""
        self._head = head_path
        self._size = size
        self._slot = slots.next_slot()
        self._room = self._slot.ioctl(4, 0) * self._slot.ioctl(5, 0)
        self._buf = bytearray(_COPY)
        self._head_len = max(0, _size(head_path))
        self._payload_at = None  # known once the header is here
        self._first_block = 0  # the slot's block the payload starts in
        self._block = 0  # the payload's block BLOCK fills, and its bytes so far
        self._filled = 0
        if self._head_len >= _HEADER:
            self._header_read()
        if self._payload_at is not None and self._head_len >= self._payload_at:
            self._block_read()

    def room(self):
        # The largest bundle whose payload the slot can hold.
        return self._room + _HEADER

    def held(self):
        # Bytes of the bundle on flash: the checkpoint.
        if self._payload_at is None or self._head_len < self._payload_at:
            return self._head_len
        return min(self._size, self._payload_at + self._block * _FLASH_BLOCK + self._filled)

    def write(self, data):
        # `data` (a memoryview) continues the bundle at held().
        done = 0
        while done < len(data):
            if self._payload_at is None or self._head_len < self._payload_at:
                end = _HEADER if self._payload_at is None else self._payload_at
                step = min(len(data) - done, end - self._head_len)
                with open(self._head, "ab") as f:  # the close commits it
                    f.write(data[done:done + step])
                self._head_len += step
                if self._payload_at is None and self._head_len >= _HEADER:
                    self._header_read()
                if self._head_len == self._payload_at:
                    self._name_block(0)
            else:
                step = min(len(data) - done, _FLASH_BLOCK - self._filled)
                with open(BLOCK, "ab") as f:
                    f.write(data[done:done + step])
                self._filled += step
                if self._filled == _FLASH_BLOCK:
                    self._flush()
            done += step

    def finish(self):
        # The whole bundle is here: the payload's last block, not full, goes to the slot.
        # BLOCK stays until the boot stage takes the bundle (otastate.remove_bundle): until
        # then it says that the payload is whole.
        if self._filled:
            self._flush()

    def forget(self):
        for path in (self._head, BLOCK):
            try:
                os.remove(path)
            except OSError:
                pass
        self._head_len = 0
        self._payload_at = None
        self._block = self._filled = 0

    def _header_read(self):
        with open(self._head, "rb") as f:
            f.seek(6)
            length = struct.unpack(">H", f.read(2))[0]
        # A manifest longer than the bundle is the boot stage's to refuse: no payload here.
        self._payload_at = min(self._size, _HEADER + length)
        payload = self._size - self._payload_at
        self._first_block = slots.payload_offset(self._room, payload) // _FLASH_BLOCK

    def _block_read(self):
        size = _size(BLOCK)
        if size < 4:  # the head was whole, BLOCK not yet named: a cut between the two
            self._name_block(0)
            return
        with open(BLOCK, "rb") as f:
            self._block = struct.unpack(">I", f.read(4))[0]
        self._filled = size - 4
        if self._filled == _FLASH_BLOCK:
            self._flush()  # a cut came before it reached the slot, or before the next block

    def _flush(self):
        block = self._first_block + self._block
        self._slot.ioctl(6, block)  # erase
        view = memoryview(self._buf)
        with open(BLOCK, "rb") as f:
            f.seek(4)
            at = 0
            while at < self._filled:
                got = f.readinto(view[:min(_COPY, self._filled - at)])
                self._slot.writeblocks(block, view[:got], at)
                at += got
        self._name_block(self._block + 1)

    def _name_block(self, index):
        tmp = BLOCK + ".tmp"
        with open(tmp, "wb") as f:
            f.write(struct.pack(">I", index))
        os.rename(tmp, BLOCK)
        self._block = index
        self._filled = 0
