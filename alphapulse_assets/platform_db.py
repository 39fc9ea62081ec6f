"""The platform's own tables (breaker state, alerts, metrics) live in the Dagster instance's database.

``platform_db_url`` finds that database: ``ALPHAPULSE_PLATFORM_DB_URL`` when set, else the Postgres
database that ``dagster.yaml`` configures (same env vars), else a SQLite file beside the local instance.
Each module owns its tables (prefix ``alphapulse_``) and creates them with ``metadata.create_all``.
This module does not import Dagster.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa

PLATFORM_DB_ENV = "ALPHAPULSE_PLATFORM_DB_URL"


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
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return sa.create_engine(url, pool_pre_ping=True)


def redact(url: str) -> str:
    """A URL safe for logs and the UI: the password replaced by ***."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"
