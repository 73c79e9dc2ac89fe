"""The serial line to the ROM loader, paced like a UART: 10 bits per byte at the current baud
rate, each direction on its own."""

from __future__ import annotations

import time
from collections.abc import Callable

ROM_BAUD = 115200  # the ROM loader's UART rate after reset (ESP32 and ESP32-S3)
BITS_PER_BYTE = 10  # start bit, 8 data bits, stop bit
MAX_BAUD = 5_000_000  # the UART's ceiling (ESP32 and ESP32-S3)


def transfer_seconds(nbytes: int, baud: int) -> float:
    return nbytes * BITS_PER_BYTE / baud


class PacedLink:
    """One UART connection: bytes take 10 bits each at the current baud, in each direction
    independently (full duplex). `raw_read` returns b"" when the far end has gone."""

    def __init__(self, raw_read: Callable[[float], bytes | None],
                 raw_write: Callable[[bytes], None], baud: int = ROM_BAUD) -> None:
        self._raw_read = raw_read
        self._raw_write = raw_write
        self.baud = baud
        self._rx_done = 0.0
        self._tx_done = 0.0
        self._queued: bytes | None = None  # bytes already waiting when the last ones ended
        self.bytes_in = 0
        self.bytes_out = 0

    def read(self, timeout: float,
             while_receiving: Callable[[], None] | None = None) -> bytes | None:
        """Bytes that finished arriving; None on timeout, b"" when the line is gone.

        Arrival is timed from when the bytes reach the loader, or, for bytes that were
        already waiting when the previous ones finished, from the end of those: the line
        never went idle, so sleep overshoot does not add up chunk by chunk.
        `while_receiving` is work the chip does while these bytes come in (the flasher
        stub writing the block it has just acknowledged)."""
        if self._queued is not None:
            data, self._queued = self._queued, None
            start = self._rx_done
        else:
            data = self._raw_read(timeout)
            start = time.monotonic()
        if data:
            self._rx_done = max(self._rx_done, start) + transfer_seconds(len(data), self.baud)
        if while_receiving is not None:
            while_receiving()
        if data:
            _sleep_until(self._rx_done)
            self.bytes_in += len(data)
            self._queued = self._raw_read(0)
        return data

    def write(self, data: bytes) -> None:
        self._tx_done = max(self._tx_done, time.monotonic()) + transfer_seconds(
            len(data), self.baud)
        _sleep_until(self._tx_done)
        self._raw_write(data)
        self.bytes_out += len(data)


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)
