"""The test PostgreSQL harness itself: loopback only, restart keeps data, clean stop, clear errors."""

from __future__ import annotations

import socket

import psycopg
import pytest

from alphapulse_assets_tests.pg_harness import PostgresBinariesMissing, PostgresServer, pg_binaries_present

pytestmark = pytest.mark.postgres


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _listeners(port: int) -> list[str]:
    """Local addresses (hex, as /proc shows them) of listening TCP sockets on ``port``, IPv4 and IPv6."""
    found = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.append(addr)
    return found


def test_server_binds_only_loopback(postgres_server):
    port = postgres_server.port
    assert _listeners(port) == ["0100007F"]  # 127.0.0.1, and no wildcard or IPv6 socket
    with psycopg.connect(_libpq(postgres_server.url())) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
    # Another loopback address on the same port is refused: the server is not on 0.0.0.0.
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.2", port)) != 0


def test_password_role_needs_its_password(postgres_server, postgres_url):
    with psycopg.connect(_libpq(postgres_url)) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "alphapulse"
    dbname = postgres_url.rsplit("/", 1)[1]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(_libpq(postgres_server.url(dbname, user="alphapulse", password="nope")))


def test_restart_keeps_data_and_port(postgres_server, postgres_url):
    with psycopg.connect(_libpq(postgres_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (1), (2), (3)")
    port, data_dir = postgres_server.port, postgres_server.data_dir
    postgres_server.restart()
    assert (postgres_server.port, postgres_server.data_dir) == (port, data_dir)
    with psycopg.connect(_libpq(postgres_url)) as conn:
        assert conn.execute("SELECT sum(n) FROM kept").fetchone()[0] == 6


def test_stop_removes_everything():
    if not pg_binaries_present():
        pytest.skip("postgresql-15 not installed")
    server = PostgresServer().start()
    base, port = server.base_dir, server.port
    assert base.is_dir() and _listeners(port)
    server.stop()
    server.stop()  # idempotent
    assert not base.exists()
    assert _listeners(port) == []


def test_missing_binaries_say_what_to_install(tmp_path):
    with pytest.raises(PostgresBinariesMissing, match="install postgresql-15"):
        PostgresServer(bin_dir=tmp_path).start()
