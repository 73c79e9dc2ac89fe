"""The AT channel against a fake modem that checks exact bytes, under both interpreters, and
fuzzed with arbitrary modem output (hypothesis) on both."""

from __future__ import annotations

from pathlib import Path

from checksuite import Suite, call, on_device
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CHECKS = Path(__file__).parent / "checks" / "at_checks.py"
SUITE = Suite(CHECKS, on_device(CHECKS, 600))

test_at_channel, test_at_channel_run_is_clean = SUITE.tests()


FUZZ = Path(__file__).parent / "checks" / "at_fuzz.py"

modem_bytes = st.one_of(
    st.binary(max_size=80),
    st.sampled_from([b"\r\nOK\r\n", b"\r\nERROR\r\n", b"\r\n+CME ERROR: 4\r\n", b">",
                     b"\r\n+QIRD: 40\r\n", b"\r\n+CEREG: 5\r\n", b"\r\n", b"\xff" * 300]),
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(modem_bytes, max_size=6))
def test_fuzzed_modem_output_never_breaks_the_channel(make_device, chunks):
    device = make_device(device_modules=[FUZZ])
    result = device.run(600, script=call("at_fuzz.run", chunks))
    assert result.errors == [], result.errors
    line = [ln for ln in result.script_output.splitlines() if ln.startswith("FUZZ")]
    assert line and line[0].endswith("True True"), result.script_output
