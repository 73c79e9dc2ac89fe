"""The uplink's sessions when the heap cannot serve one of their steps, under both
interpreters (checks/session_memory_checks.py over the uplink's fake transport): a socket whose
TLS stream cannot be made (a MemoryError in the TLS engine) is closed, a session whose online
status or whose CONNECT's call cannot be made leaves no socket open, and a session that runs
out of memory ends as a failed session, with its backoff and its status, while the uplink's
task goes on."""

from __future__ import annotations

from pathlib import Path

from checksuite import Suite, on_device

CHECKS = Path(__file__).parent / "checks" / "session_memory_checks.py"
HELPERS = [Path(__file__).parent / "checks" / "uplink_checks.py"]
SUITE = Suite(CHECKS, on_device(CHECKS, 3600, helpers=HELPERS))

test_session_memory, test_session_memory_run_is_clean = SUITE.tests()
