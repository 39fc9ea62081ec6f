"""Versioned migrations of the platform's own tables (Alembic); applied by ``platform_db.migrate``.

Add a revision with ``alembic -c /dev/null`` style tooling or by hand: a new file in ``versions/`` whose
``down_revision`` is the current head. Never edit a released revision; add one that changes it.
"""
