"""Versioned migrations of the platform's tables (``platform_db.migrate``), on SQLite and a real PostgreSQL.

A database made by the code before migrations existed (its DDL is frozen in ``data/``) is adopted with
every row intact; a new revision reaches an existing database; processes opening a fresh database at once
all succeed; and the stores' table objects match what the migrations build.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from alphapulse_assets import platform_db
from alphapulse_assets.alerting import alert_store
from alphapulse_assets.alerting.alert_store import AlertStore
from alphapulse_assets.market_data import symbol_ledger
from alphapulse_assets.monitoring import metrics
from alphapulse_assets.monitoring.metrics import SampleStore
from alphapulse_assets.platform_db import MIGRATIONS_DIR, VERSION_TABLE, engine_for, head_revisions, migrate
from alphapulse_assets.recovery import breaker_store
from alphapulse_assets.recovery.breaker_store import BreakerStore
from alphapulse_assets.training import registry
from alphapulse_assets.training.registry import ModelRegistry

DATA = Path(__file__).parent / "data"
STORE_METADATA = (
    registry.metadata,
    breaker_store.metadata,
    alert_store.metadata,
    metrics.metadata,
    symbol_ledger.metadata,
)
AT = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'platform.db'}"
    return request.getfixturevalue("postgres_url")


def _dialect(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def _create_schema_of_the_code_before_migrations(url: str) -> None:
    lines = (DATA / f"platform_schema_v0_{_dialect(url)}.sql").read_text().splitlines()
    ddl = "\n".join(line for line in lines if not line.startswith("--"))
    statements = [s.strip() for s in ddl.split(";") if s.strip()]
    with engine_for(url).begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def _revisions(url: str) -> set[str]:
    with engine_for(url).connect() as conn:
        return platform_db.current_revisions(conn)


def _count(url: str, table: str) -> int:
    with engine_for(url).connect() as conn:
        return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()


def test_stores_tables_match_what_the_migrations_build(db_url):
    """A column added to a store's table without a revision (or the reverse) fails here."""
    migrate(db_url)
    target = sa.MetaData()
    for md in STORE_METADATA:
        for table in md.tables.values():
            table.to_metadata(target)
    with engine_for(db_url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
        assert compare_metadata(context, target) == []


def test_database_made_before_migrations_is_adopted_with_rows_intact(db_url, tmp_path):
    _create_schema_of_the_code_before_migrations(db_url)
    with engine_for(db_url).begin() as conn:  # rows as the code before migrations wrote them
        conn.execute(
            registry.versions_table.insert().values(
                symbol="BTCUSDT",
                cadence="weekly",
                version=1,
                uri="BTCUSDT/weekly/v0001.skops",
                sha256="0" * 64,
                created_at=AT,
                info_json='{"metrics": {"f1": 0.61}}',
            )
        )
        conn.execute(registry.champions_table.insert().values(symbol="BTCUSDT", cadence="weekly", version=1, since=AT))
        conn.execute(
            registry.decisions_table.insert().values(
                symbol="BTCUSDT",
                cadence="weekly",
                version=1,
                action="promoted",
                previous_champion=None,
                reason="beat the baselines",
                by="promotion-gate",
                at=AT,
            )
        )
        conn.execute(alert_store.history_table.insert().values(at=1.0, key="run:weekly", event="raised"))
        conn.execute(
            breaker_store.breaker_events_table.insert().values(
                name="source:exchange", from_state="closed", to_state="open", at=1.0, reason="5 failures"
            )
        )
    tables = (
        "alphapulse_model_versions",
        "alphapulse_champions",
        "alphapulse_model_decisions",
        "alphapulse_alert_history",
        "alphapulse_breaker_events",
    )
    before = {t: _count(db_url, t) for t in tables}
    assert _revisions(db_url) == set()

    reg = ModelRegistry(str(tmp_path / "models"), db_url)  # opening a store migrates
    assert _revisions(db_url) == head_revisions()
    assert [(mv.label, since) for mv, since in reg.champions_since()] == [("BTCUSDT/weekly/v1", AT)]
    assert [d.action for d in reg.decisions_between(AT, AT.replace(hour=13))] == ["promoted"]
    assert [e.key for e in AlertStore(db_url).history()] == ["run:weekly"]
    assert {t: _count(db_url, t) for t in tables} == before


def test_model_versions_of_an_existing_database_get_their_run_and_partition_columns_from_the_json(db_url, tmp_path):
    """Revision 0002 moves run and partition out of the stored JSON into indexed columns: versions written
    before it are found by run as new ones are, and a version whose JSON has neither keeps NULLs."""
    _create_schema_of_the_code_before_migrations(db_url)
    rows = [
        ("BTCUSDT", 1, {"run_id": "run-a", "partition": "2024-06-01", "metrics": {"f1": 0.6}}),
        ("BTCUSDT", 2, {"run_id": "run-b", "partition": "2024-06-02"}),
        ("ETHUSDT", 1, {"run_id": "run-b", "partition": "2024-06-02"}),
        ("ETHUSDT", 2, {"metrics": {}}),  # registered outside a run
    ]
    with engine_for(db_url).begin() as conn:
        for symbol, version, info in rows:
            conn.execute(
                sa.text(
                    "INSERT INTO alphapulse_model_versions (symbol, cadence, version, uri, sha256, created_at, "
                    "info_json) VALUES (:s, 'nightly', :v, 'x.skops', :h, :at, :info)"
                ),
                {"s": symbol, "v": version, "h": "0" * 64, "at": AT, "info": json.dumps(info)},
            )

    reg = ModelRegistry(str(tmp_path / "models"), db_url)  # opening a store migrates
    assert _revisions(db_url) == head_revisions()
    assert reg.partitions_trained("nightly", "run-b") == {"BTCUSDT": {"2024-06-02"}, "ETHUSDT": {"2024-06-02"}}
    assert reg.partitions_trained("nightly", "run-a") == {"BTCUSDT": {"2024-06-01"}}
    with engine_for(db_url).connect() as conn:
        stored = conn.execute(
            sa.text("SELECT symbol, version, run_id, partition_key FROM alphapulse_model_versions ORDER BY 1, 2")
        ).all()
    assert [tuple(r) for r in stored][-1] == ("ETHUSDT", 2, None, None)
    assert reg.get("BTCUSDT", "nightly", 1).info["metrics"] == {"f1": 0.6}  # the JSON itself is untouched
    indexes = {
        ix["name"]: ix["column_names"]
        for ix in sa.inspect(engine_for(db_url)).get_indexes(registry.versions_table.name)
    }
    assert indexes["ix_alphapulse_model_versions_cadence_run"] == ["cadence", "run_id"]


def test_partial_database_gets_the_missing_tables(tmp_path):
    """Code before migrations created each store's tables on first use: a database may hold only some."""
    url = f"sqlite:///{tmp_path / 'platform.db'}"
    with engine_for(url).begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE alphapulse_breakers (name VARCHAR(200) NOT NULL, state_json TEXT NOT NULL, "
            "version INTEGER NOT NULL, updated_at DOUBLE NOT NULL, PRIMARY KEY (name))"
        )
        conn.exec_driver_sql("INSERT INTO alphapulse_breakers VALUES ('x', '{}', 1, 1.0)")
    SampleStore(url)
    assert _revisions(url) == head_revisions()
    names = set(sa.inspect(engine_for(url)).get_table_names())
    assert {"alphapulse_breaker_events", "alphapulse_resource_samples", "alphapulse_alert_open"} <= names
    assert _count(url, "alphapulse_breakers") == 1


NEW_REVISION = '''
"""Test revision: a column on alert history."""
import sqlalchemy as sa
from alembic import op

revision = "0002_test_note"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("alphapulse_alert_history", sa.Column("note", sa.Text, nullable=False, server_default="none"))


def downgrade():
    op.drop_column("alphapulse_alert_history", "note")
'''


def test_new_revision_reaches_an_existing_database(db_url, tmp_path):
    store = AlertStore(db_url)  # at the shipped head
    store.record("raised", "run:nightly", at=1.0, severity="critical")
    (head,) = head_revisions()
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "0002_test_note.py").write_text(NEW_REVISION.format(head=head))

    assert migrate(db_url, script_location=scripts) == {"0002_test_note"}
    assert _revisions(db_url) == {"0002_test_note"}
    columns = {c["name"] for c in sa.inspect(engine_for(db_url)).get_columns("alphapulse_alert_history")}
    assert "note" in columns
    with engine_for(db_url).connect() as conn:
        rows = conn.execute(sa.text("SELECT key, note FROM alphapulse_alert_history")).all()
    assert [tuple(r) for r in rows] == [("run:nightly", "none")]
    assert migrate(db_url, script_location=scripts) == {"0002_test_note"}  # a second run changes nothing


def _open_every_store(url: str, models: str, barrier) -> None:
    barrier.wait(timeout=60)
    BreakerStore(url)
    AlertStore(url).record("raised", "race", at=1.0, severity="warning")
    SampleStore(url)
    ModelRegistry(models, url)
    platform_db.engine_for(url).dispose()


def test_processes_opening_a_fresh_database_at_once_all_succeed(db_url, tmp_path):
    ctx = multiprocessing.get_context("fork")
    n = 4
    barrier = ctx.Barrier(n)
    workers = [
        ctx.Process(target=_open_every_store, args=(db_url, str(tmp_path / "models"), barrier)) for _ in range(n)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * n
    assert _revisions(db_url) == head_revisions()
    assert _count(db_url, VERSION_TABLE) == 1
    assert _count(db_url, "alphapulse_alert_history") == n
