"""Click callbacks for option values every command group reads the same way: durations
(30s, 10m, 1d) and sizes (64K, 4MB), parsed by musket.units, refused with its message."""

from __future__ import annotations

import click

from musket.errors import MusketError
from musket.units import parse_duration, parse_size


def duration(ctx, param, value):
    try:
        return parse_duration(value)
    except MusketError as e:
        raise click.BadParameter(str(e)) from None


def size(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_size(value)
    except MusketError as e:
        raise click.BadParameter(str(e)) from None
