"""Model versions: the run and partition that made each one as indexed columns, backfilled from info_json.

Revision ID: 0002_model_version_run
Revises: 0001_baseline
Create Date: 2026-12-01

The models step asks which partitions this run already trained (a retried step skips them) and the CLI the
newest version: both loaded every version of a symbol and parsed its stored JSON (kilobytes each, with the
reference profile) to filter in Python. ``run_id`` and ``partition_key`` now sit beside ``info_json``,
indexed, and existing rows are filled from their JSON in batches (a row whose JSON has neither keeps NULLs).
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0002_model_version_run"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

TABLE = "alphapulse_model_versions"
RUN_INDEX = "ix_alphapulse_model_versions_cadence_run"
PARTITION_INDEX = "ix_alphapulse_model_versions_partition"
_BATCH = 500


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    columns = {c["name"] for c in inspector.get_columns(TABLE)}
    if "run_id" not in columns:
        op.add_column(TABLE, sa.Column("run_id", sa.String(64), nullable=True))
    if "partition_key" not in columns:
        op.add_column(TABLE, sa.Column("partition_key", sa.String(64), nullable=True))
    indexes = {ix["name"] for ix in inspector.get_indexes(TABLE)}
    if RUN_INDEX not in indexes:
        op.create_index(RUN_INDEX, TABLE, ["cadence", "run_id"])
    if PARTITION_INDEX not in indexes:
        op.create_index(PARTITION_INDEX, TABLE, ["symbol", "cadence", "partition_key"])
    _backfill(op.get_bind())


def _text(value) -> str | None:
    return None if value is None else str(value)[:64]


def _backfill(conn) -> None:
    table = sa.table(
        TABLE,
        sa.column("symbol", sa.String),
        sa.column("cadence", sa.String),
        sa.column("version", sa.Integer),
        sa.column("info_json", sa.Text),
        sa.column("run_id", sa.String),
        sa.column("partition_key", sa.String),
    )
    key = (table.c.symbol, table.c.cadence, table.c.version)
    after = None
    while True:  # keyset pagination on the primary key: memory bounded by the batch, not the table
        query = sa.select(*key, table.c.info_json).where(table.c.run_id.is_(None), table.c.partition_key.is_(None))
        if after is not None:
            query = query.where(sa.tuple_(*key) > sa.tuple_(*(sa.literal(v) for v in after)))
        rows = conn.execute(query.order_by(*key).limit(_BATCH)).all()
        if not rows:
            return
        for symbol, cadence, version, info_json in rows:
            try:
                info = json.loads(info_json)
            except (TypeError, ValueError):
                info = {}
            info = info if isinstance(info, dict) else {}
            run_id, partition = _text(info.get("run_id")), _text(info.get("partition"))
            if run_id is not None or partition is not None:
                conn.execute(
                    table.update()
                    .where(table.c.symbol == symbol, table.c.cadence == cadence, table.c.version == version)
                    .values(run_id=run_id, partition_key=partition)
                )
        after = tuple(rows[-1][:3])


def downgrade() -> None:
    op.drop_index(PARTITION_INDEX, table_name=TABLE)
    op.drop_index(RUN_INDEX, table_name=TABLE)
    with op.batch_alter_table(TABLE) as batch:  # SQLite drops columns by copying the table
        batch.drop_column("partition_key")
        batch.drop_column("run_id")
