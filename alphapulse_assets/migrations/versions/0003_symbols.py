"""The symbol ledger: which symbols were added and retired, when, by whom and why.

Revision ID: 0003_symbols
Revises: 0002_model_version_run
Create Date: 2026-12-01

The active set itself is the Dagster instance's dynamic partitions ``symbols``; this table keeps the record
an operator reads with ``alphapulse symbols list`` (and that keeps a retired symbol from being re-added by the
ALPHAPULSE_SYMBOLS seed).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_symbols"
down_revision = "0002_model_version_run"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "alphapulse_symbols",
        sa.Column("symbol", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_by", sa.String(128), nullable=False),
        sa.Column("retired_by", sa.String(128)),
        sa.Column("reason", sa.Text),
    )


def downgrade():
    op.drop_table("alphapulse_symbols")
