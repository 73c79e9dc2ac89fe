"""ICCIDs as the registry and the factory line take them: as the modem firmware reads them
(app/modem/replies.py), hex digits and F padding included."""

import re

import pytest

from musket.identity import IdentityError, check_iccid

DECIMAL = "8949019237115905561"  # passes Luhn


@pytest.mark.parametrize("given, stored", [
    (DECIMAL, DECIMAL),
    (f" {DECIMAL} ", DECIMAL),
    (DECIMAL + "F", DECIMAL),  # a 19-digit ICCID padded to 20
    (DECIMAL + "f", DECIMAL),
    ("89860070090A6019125F", "89860070090A6019125"),  # an issuer's hex digit: no Luhn
    ("89860070090a60191251", "89860070090A60191251"),
])
def test_iccids_are_normalised_as_the_firmware_reads_them(given, stored):
    assert check_iccid(given) == stored


@pytest.mark.parametrize("given, problem", [
    (DECIMAL[:-1] + "0", "wrong check digit (Luhn)"),
    (DECIMAL[:-1] + "0F", "wrong check digit (Luhn)"),
    ("89860070090G6019125", "only digits allowed"),
    ("FFFF", "only digits allowed"),
    ("89860070090A601912", "18 digits (expected 19 or 20)"),
    ("79860070090A6019125", "does not start with 89"),
])
def test_bad_iccids_say_what_is_wrong(given, problem):
    with pytest.raises(IdentityError, match=re.escape(problem)):
        check_iccid(given)
