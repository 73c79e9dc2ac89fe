"""The identities a cellular unit carries, checked as the factory line and the registry read them.

ICCID (the SIM, ITU-T E.118): 19 or 20 digits starting with the telecom prefix 89, the last one
a Luhn check digit over the others. Not every issuer keeps to decimal digits: some put hex
digits (A-F) in them, and some pad a 19-digit one to 20 with an F. An ICCID is taken as the
modem firmware reads it: upper-case, without the F padding, and checked with Luhn only when it
is all decimal. IMEI (the modem, 3GPP TS 23.003): 15 digits, the last one a
Luhn check digit. IMSI (the subscription on the SIM): 14 or 15 digits.

Each check returns the value as it is stored (surrounding spaces removed, an ICCID normalised)
or raises IdentityError saying what is wrong with it.
"""

from __future__ import annotations

from musket.errors import BadInput

# A SIM's life in the registry: bought, bound to a unit, in service, paused, gone.
SIM_STATES = ("inventory", "bound", "active", "suspended", "retired")
ICCID_LENGTHS = (19, 20)
IMEI_LENGTH = 15
IMSI_LENGTHS = (14, 15)
_HEX_DIGITS = frozenset("0123456789ABCDEF")


class IdentityError(BadInput, ValueError):
    """An ICCID, IMEI or IMSI that cannot be right."""


def luhn_check_digit(body: str) -> str:
    """The digit that, appended to ``body``, makes it pass the Luhn check."""
    total = 0
    for position, ch in enumerate(reversed(body)):
        value = int(ch) * (1 if position % 2 else 2)
        total += value - 9 if value > 9 else value
    return str(-total % 10)


def luhn_valid(digits: str) -> bool:
    """True when the last digit of ``digits`` is the Luhn check digit of the ones before it."""
    return len(digits) > 1 and luhn_check_digit(digits[:-1]) == digits[-1]


def _digits(kind: str, value: object, lengths: tuple[int, ...]) -> str:
    if not isinstance(value, str):
        raise IdentityError(f"{kind}: expected text, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise IdentityError(f"{kind}: empty")
    if not (text.isascii() and text.isdigit()):
        raise IdentityError(f"{kind} {text!r}: only digits allowed")
    if len(text) not in lengths:
        expected = " or ".join(str(n) for n in lengths)
        raise IdentityError(f"{kind} {text}: {len(text)} digits (expected {expected})")
    return text


def check_iccid(value: object) -> str:
    if not isinstance(value, str):
        raise IdentityError(f"ICCID: expected text, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise IdentityError("ICCID: empty")
    iccid = text.upper().rstrip("F")  # the firmware's normalisation (app/modem/replies.py)
    if not iccid or not text.isascii() or not set(iccid) <= _HEX_DIGITS:
        raise IdentityError(f"ICCID {text!r}: only digits allowed")
    if len(iccid) not in ICCID_LENGTHS:
        expected = " or ".join(str(n) for n in ICCID_LENGTHS)
        raise IdentityError(f"ICCID {iccid}: {len(iccid)} digits (expected {expected})")
    if not iccid.startswith("89"):
        raise IdentityError(f"ICCID {iccid}: does not start with 89 (the telecom prefix)")
    if iccid.isdigit() and not luhn_valid(iccid):
        raise IdentityError(f"ICCID {iccid}: wrong check digit (Luhn)")
    return iccid


def check_imei(value: object) -> str:
    text = _digits("IMEI", value, (IMEI_LENGTH,))
    if not luhn_valid(text):
        raise IdentityError(f"IMEI {text}: wrong check digit (Luhn)")
    return text


def check_imsi(value: object) -> str:
    return _digits("IMSI", value, IMSI_LENGTHS)
