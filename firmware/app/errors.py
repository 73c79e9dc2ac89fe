"""Exceptions shared by the firmware modules."""


class FirmwareError(Exception):
    """Root of all firmware errors: catch this to handle any failure the firmware reports."""
