"""Fixtures shared by the host tests: one throwaway PostgreSQL server per test session."""

from __future__ import annotations

import pytest
from pgserver import PostgresServer, Unavailable


@pytest.fixture(scope="session")
def postgres():
    try:
        server = PostgresServer()
        server.start()
    except Unavailable as e:  # `make test` installs PostgreSQL: a missing server is a failure
        pytest.fail(f"no PostgreSQL server: {e}")
    yield server
    server.stop()
