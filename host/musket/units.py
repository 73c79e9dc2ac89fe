"""Parsing of the human units musket's commands take: durations ("1d", "2h30m") and sizes
("64K", "4MB", "0x9000")."""

from __future__ import annotations

import re

from musket.errors import BadInput

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(d|h|m|s|ms)")
_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_SIZE = re.compile(r"(?i)^\s*(\d+)\s*(k|kb|kib|m|mb|mib)?\s*$")
_SIZE_FACTOR = {None: 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20,
                "mib": 1 << 20}


class UnitError(BadInput, ValueError):
    """A duration or size that cannot be read."""


def parse_duration(text: str) -> float:
    """Seconds in a duration such as "90s", "15m", "1d", "2h30m" or a bare number of seconds."""
    text = text.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise UnitError(f"cannot read duration {text!r} (examples: 90s, 15m, 2h30m, 1d)")
    return total


def parse_size(text: str | int) -> int:
    """Bytes in a size such as 65536, "64K", "4MB" or "0x9000"."""
    if isinstance(text, int):
        return text
    if text.strip().lower().startswith("0x"):
        try:
            return int(text, 16)
        except ValueError:
            raise UnitError(f"cannot read size {text!r}") from None
    match = _SIZE.match(text)
    if not match:
        raise UnitError(f"cannot read size {text!r} (examples: 65536, 64K, 4MB, 0x9000)")
    unit = match.group(2).lower() if match.group(2) else None
    return int(match.group(1)) * _SIZE_FACTOR[unit]
