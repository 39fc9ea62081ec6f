"""Shared fixtures. Only the real-PostgreSQL ones live here; see ``pg_harness.py``."""

from __future__ import annotations

import itertools
import os

import pytest

from alphapulse_assets_tests.pg_harness import PG_BIN_DIR, PostgresServer, pg_binaries_present

_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL 15 server on 127.0.0.1 for the whole test session, removed at the end."""
    if not pg_binaries_present():
        message = f"PostgreSQL binaries not found in {PG_BIN_DIR}: install postgresql-15"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)  # CI must never pass by skipping the database tests
        pytest.skip(message)
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:  # also runs on test failure and on KeyboardInterrupt
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database for this test; its URL uses the password role ``alphapulse``."""
    if not postgres_server.running:  # a fault-injection test left it stopped
        postgres_server.start()
    name = f"t{os.getpid()}_{next(_db_counter)}"
    postgres_server.create_database(name)
    return postgres_server.password_url(name)
