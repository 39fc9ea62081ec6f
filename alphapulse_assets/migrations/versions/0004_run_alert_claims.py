"""Which process raised a failed run's alert: the one atomic claim that makes it once per run.

Revision ID: 0004_run_alert_claims
Revises: 0003_symbols
Create Date: 2026-12-02

The CLI that ran a job and the daemon's run-failure sensor both alert a failed run. A run tag read and then
written let both raise when they looked at the same moment (CI saw two alerts for one run); an INSERT on this
table's primary key lets exactly one of them win.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_run_alert_claims"
down_revision = "0003_symbols"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "alphapulse_alert_run_claims",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("claimed_by", sa.String(128), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )


def downgrade():
    op.drop_table("alphapulse_alert_run_claims")
