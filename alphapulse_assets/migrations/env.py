"""Alembic environment: runs on the connection ``platform_db.migrate`` opened (and locked)."""

from alembic import context

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the platform migrations run through alphapulse_assets.platform_db.migrate")

context.configure(
    connection=connection,
    target_metadata=None,
    version_table=config.attributes["version_table"],
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
