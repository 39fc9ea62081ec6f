"""Baseline: the platform's tables as they were before migrations existed.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-01

A database made before this revision existed holds some or all of these tables already (each store
created its own on first use): only what is missing is created, so every existing row stays. The
definitions are frozen here; later changes go in later revisions, never in the stores' table objects alone.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only


def _tables() -> list[tuple[str, list, list[tuple[str, list[str]]]]]:
    """(table, columns, indexes) of the baseline, built fresh per call (Column objects bind to one table)."""
    return [
        (
            "alphapulse_model_versions",
            [
                sa.Column("symbol", sa.String(32), primary_key=True),
                sa.Column("cadence", sa.String(16), primary_key=True),
                sa.Column("version", sa.Integer, primary_key=True),
                sa.Column("uri", sa.Text, nullable=False),
                sa.Column("sha256", sa.String(64), nullable=False),
                sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
                sa.Column("info_json", sa.Text, nullable=False),
            ],
            [],
        ),
        (
            "alphapulse_champions",
            [
                sa.Column("symbol", sa.String(32), primary_key=True),
                sa.Column("cadence", sa.String(16), primary_key=True),
                sa.Column("version", sa.Integer, nullable=False),
                sa.Column("since", sa.DateTime(timezone=True), nullable=False),
            ],
            [],
        ),
        (
            "alphapulse_model_decisions",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("symbol", sa.String(32), nullable=False),
                sa.Column("cadence", sa.String(16), nullable=False),
                sa.Column("version", sa.Integer, nullable=True),
                sa.Column("action", sa.String(16), nullable=False),
                sa.Column("previous_champion", sa.Integer, nullable=True),
                sa.Column("reason", sa.Text, nullable=False),
                sa.Column("by", sa.String(64), nullable=False),
                sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            ],
            [("ix_alphapulse_model_decisions_symbol", ["symbol"])],
        ),
        (
            "alphapulse_breakers",
            [
                sa.Column("name", sa.String(200), primary_key=True),
                sa.Column("state_json", sa.Text, nullable=False),
                sa.Column("version", sa.Integer, nullable=False),
                sa.Column("updated_at", sa.Double, nullable=False),
            ],
            [],
        ),
        (
            "alphapulse_breaker_events",
            [
                sa.Column("id", _Id, primary_key=True, autoincrement=True),
                sa.Column("name", sa.String(200), nullable=False),
                sa.Column("from_state", sa.String(16), nullable=False),
                sa.Column("to_state", sa.String(16), nullable=False),
                sa.Column("at", sa.Double, nullable=False),
                sa.Column("reason", sa.Text, nullable=False),
            ],
            [("ix_alphapulse_breaker_events_name_id", ["name", "id"]), ("ix_alphapulse_breaker_events_at", ["at"])],
        ),
        (
            "alphapulse_alert_history",
            [
                sa.Column("id", _Id, primary_key=True, autoincrement=True),
                sa.Column("at", sa.Float, nullable=False),
                sa.Column("key", sa.String(512), nullable=False),
                sa.Column("event", sa.String(32), nullable=False),
                sa.Column("channel", sa.String(64)),
                sa.Column("severity", sa.String(16)),
                sa.Column("status", sa.String(16)),
                sa.Column("title", sa.Text),
                sa.Column("detail", sa.Text),
            ],
            [("ix_alphapulse_alert_history_key_at", ["key", "at"])],
        ),
        (
            "alphapulse_alert_open",
            [
                sa.Column("key", sa.String(512), primary_key=True),
                sa.Column("severity", sa.String(16), nullable=False),
                sa.Column("title", sa.Text, nullable=False),
                sa.Column("body", sa.Text, nullable=False),
                sa.Column("source", sa.String(128), nullable=False),
                sa.Column("labels", sa.Text, nullable=False),
                sa.Column("first_at", sa.Float, nullable=False),
                sa.Column("last_at", sa.Float, nullable=False),
                sa.Column("inhibited", sa.Boolean, nullable=False),
            ],
            [],
        ),
        (
            "alphapulse_alert_dedupe",
            [
                sa.Column("key", sa.String(512), primary_key=True),
                sa.Column("channel", sa.String(64), primary_key=True),
                sa.Column("severity", sa.String(16), nullable=False),
                sa.Column("status", sa.String(16), nullable=False),
                sa.Column("last_sent_at", sa.Float),
                sa.Column("claim_id", sa.String(32)),
            ],
            [],
        ),
        (
            "alphapulse_resource_samples",
            [
                sa.Column("id", _Id, primary_key=True, autoincrement=True),
                sa.Column("at", sa.Float, nullable=False),
                sa.Column("host", sa.String(255), nullable=False),
                sa.Column("cpu_percent", sa.Float),
                sa.Column("memory_percent", sa.Float),
                sa.Column("disk_percent", sa.Float),
                sa.Column("net_recv_bytes_per_s", sa.Float),
                sa.Column("net_sent_bytes_per_s", sa.Float),
                sa.Column("load1", sa.Float),
                sa.Column("dagster_rss_bytes", sa.BigInteger),
                sa.Column("sample_json", sa.Text, nullable=False),
            ],
            [("ix_alphapulse_resource_samples_at", ["at"])],
        ),
    ]


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, columns, indexes in _tables():
        have = {ix["name"] for ix in inspector.get_indexes(name)} if name in existing else set()
        if name not in existing:
            op.create_table(name, *columns)
        for index, cols in indexes:
            if index not in have:
                op.create_index(index, name, cols)


def downgrade() -> None:
    for name, _, _ in reversed(_tables()):
        op.drop_table(name)
