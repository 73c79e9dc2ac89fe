"""musket's errors as data (esptool's way): each kind carries the exit code a station script acts
on and, where one helps, a hint saying what to do next. The CLI prints the message and the hint,
one line each, and exits with the code; it never shows a traceback for these.

The table of exit codes lives here and only here: `docs/errors.md` is checked against it."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a non-zero exit means; a station script branches on these."""

    OK = 0
    FAILED = 1  # the command could not do its job for a reason not listed below
    USAGE = 2  # a bad option or argument on the command line (click's own code)
    DEVICE_ERRORS = 3  # the device ran but reported errors
    BAD_INPUT = 4  # a file, option value or CSV that cannot be used: fix it, run again
    UNIT_SILENT = 5  # the unit did not answer: check cable and power, then retry
    REGISTRY_REFUSED = 6  # the registry refused: duplicate, unknown SIM, bound elsewhere
    UNREACHABLE = 7  # a service could not be reached: database, broker
    SCHEMA = 8  # the registry's schema is not this musket's: run `musket registry migrate`


# One line each for `docs/errors.md` and for tests: what the code means to the person at the
# station.
EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done",
    ExitCode.FAILED: "the command could not do its job for another reason (the message says why)",
    ExitCode.USAGE: "a bad option or argument on the command line",
    ExitCode.DEVICE_ERRORS: "the device ran but reported errors (listed in the output)",
    ExitCode.BAD_INPUT: "bad input: a file, option value or CSV that cannot be used; nothing "
                        "was changed",
    ExitCode.UNIT_SILENT: "the unit did not answer: check the cable and its power, then retry",
    ExitCode.REGISTRY_REFUSED: "the registry refused: a duplicate, an unknown SIM, a SIM or "
                               "modem bound elsewhere, a state change not allowed",
    ExitCode.UNREACHABLE: "a service could not be reached: the registry's database, the broker",
    ExitCode.SCHEMA: "the registry's schema is not this musket's (or there is none yet): run "
                     "`musket registry migrate`",
}


class MusketError(Exception):
    """Root of every error musket raises. `exit_code` and `hint` are data: subclasses set the
    code, and a raise may add the hint (the next thing to do, one line)."""

    exit_code: ExitCode = ExitCode.FAILED
    hint: str | None = None

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class BadInput(MusketError):
    """A file, an option's value or a CSV that cannot be used. Nothing was changed."""

    exit_code = ExitCode.BAD_INPUT


class UnitSilent(MusketError):
    """The unit (its console, its ROM loader or its modem) did not answer. Worth a retry."""

    exit_code = ExitCode.UNIT_SILENT
    hint = "check the cable and the unit's power, then run the command again"


class Refused(MusketError):
    """The registry refused the change: a duplicate, an unknown SIM, a binding elsewhere."""

    exit_code = ExitCode.REGISTRY_REFUSED


class Unreachable(MusketError):
    """A service (the registry's database, the broker) could not be reached."""

    exit_code = ExitCode.UNREACHABLE


class SchemaMismatch(MusketError):
    """The registry's schema is older or newer than this musket's, or missing."""

    exit_code = ExitCode.SCHEMA


class DeviceReportedErrors(MusketError):
    """A device ran and reported errors of its own."""

    exit_code = ExitCode.DEVICE_ERRORS
