"""The platform's own tables (breaker state, alerts, metrics) live in the Dagster instance's database.

``platform_db_url`` finds that database: ``ALPHAPULSE_PLATFORM_DB_URL`` when set, else the Postgres
database that ``dagster.yaml`` configures (same env vars), else a SQLite file beside the local instance.
Each store module declares the tables it queries (prefix ``alphapulse_``); this module alone creates and
changes them, with the versioned Alembic migrations in ``alphapulse_assets/migrations/``. ``platform_engine``
is what a store opens: it brings the database to the newest revision first (once per database: the version
is read in one query, and only a database behind takes a lock, so processes starting together migrate it
once). Revisions are recorded in ``alphapulse_schema_version``, apart from Dagster's own ``alembic_version``.
This module does not import Dagster.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

PLATFORM_DB_ENV = "ALPHAPULSE_PLATFORM_DB_URL"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alphapulse_schema_version"
# Key of the PostgreSQL advisory lock that serialises migrations (any constant bigint no one else uses).
_PG_LOCK_KEY = 0x41_6C_70_68_61_50_75_6C  # "AlphaPul"


def postgres_url_from_env() -> str | None:
    """The production instance's database, from the same env vars ``deploy/dagster.yaml`` reads."""
    host = os.environ.get("DAGSTER_PG_HOST")
    if not host:
        return None
    user = os.environ.get("DAGSTER_PG_USERNAME", "dagster")
    password = os.environ.get("DAGSTER_PG_PASSWORD", "")
    port = os.environ.get("DAGSTER_PG_PORT", "5432")
    db = os.environ.get("DAGSTER_PG_DB", "dagster")
    auth = f"{user}:{password}@" if password else f"{user}@"
    return f"postgresql+psycopg://{auth}{host}:{port}/{db}"


def platform_db_url(dagster_home: str | os.PathLike | None = None) -> str:
    url = os.environ.get(PLATFORM_DB_ENV) or postgres_url_from_env()
    if url:
        return url
    home = Path(dagster_home or os.environ.get("DAGSTER_HOME") or ".")
    path = home / ".alphapulse" / "platform.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


@lru_cache(maxsize=16)
def engine_for(url: str) -> sa.Engine:
    """One pooled engine per URL per process. SQLite gets a busy timeout and WAL for concurrent writers."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return sa.create_engine(_driver_url(url), pool_pre_ping=True)


def _driver_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


# -- schema migrations -------------------------------------------------------------------------------


def _alembic_config(script_location: str | os.PathLike, connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["connection"] = connection
    cfg.attributes["version_table"] = VERSION_TABLE
    return cfg


def head_revisions(script_location: str | os.PathLike = MIGRATIONS_DIR) -> set[str]:
    """The newest revision(s) of the migrations at ``script_location``."""
    return set(_heads(str(script_location)))


@lru_cache(maxsize=8)
def _heads(script_location: str) -> tuple[str, ...]:  # reading the revision files costs ~1.5 ms: once per process
    return tuple(ScriptDirectory.from_config(_alembic_config(script_location)).get_heads())


def current_revisions(conn: sa.Connection) -> set[str]:
    """The revision(s) the database is at; empty for a database no migration has touched."""
    return set(MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_heads())


def _migration_engine(url: str) -> sa.Engine:
    """A short-lived engine whose transactions lock the database for writing from their start.

    SQLite: ``BEGIN IMMEDIATE`` (the driver's own transaction handling is turned off so that the DDL runs
    inside it), waiting up to 30 s for another writer. PostgreSQL: the transaction takes an advisory lock.
    """
    if not url.startswith("sqlite"):
        engine = sa.create_engine(_driver_url(url), poolclass=sa.pool.NullPool)

        @sa.event.listens_for(engine, "begin")
        def _pg_lock(conn):
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")

        return engine
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA journal_mode=WAL")

    @sa.event.listens_for(engine, "begin")
    def _begin_immediate(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def migrate(url: str, *, script_location: str | os.PathLike = MIGRATIONS_DIR) -> set[str]:
    """Bring the platform's tables at ``url`` to the newest revision; returns the revision(s) it is at.

    A database made before migrations existed (tables, no version) is adopted by the baseline revision,
    which creates only what is missing, so no row is touched. Safe when several processes call it at once:
    the loser of the lock finds the database at head and does nothing. Database errors propagate as they
    are, for ``recovery.errors.classify`` to judge (a server down is transient, a corrupted file is not).
    """
    heads = head_revisions(script_location)
    if _at(url, heads):
        return heads
    engine = _migration_engine(url)
    try:
        with engine.begin() as conn:
            if current_revisions(conn) != heads:
                command.upgrade(_alembic_config(script_location, conn), "heads")
    finally:
        engine.dispose()
    return heads


def _at(url: str, heads: set[str]) -> bool:
    """Whether the database is at ``heads``: one small query, the common case when a store opens."""
    try:
        with engine_for(url).connect() as conn:
            return set(conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalars()) == heads
    except sa.exc.DBAPIError:  # no version table yet, or the database is down: the locked path decides
        return False


def platform_engine(url: str) -> sa.Engine:
    """The pooled engine of ``url``, its tables migrated to the newest revision: what every store opens."""
    migrate(url)
    return engine_for(url)


def redact(url: str) -> str:
    """A URL safe for logs and the UI: the password replaced by ***."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"
