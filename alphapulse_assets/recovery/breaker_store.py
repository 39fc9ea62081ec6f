"""Breaker states in the platform database, safe under concurrent writers in many processes.

Two tables (SQLAlchemy Core, created on first use):

- ``alphapulse_breakers(name PK, state_json, version, updated_at)``: one row per breaker, the JSON of a
  :class:`~alphapulse_assets.recovery.breaker.BreakerState`;
- ``alphapulse_breaker_events(id, name, from_state, to_state, at, reason)``: every transition.

``update`` is optimistic: read the row and its ``version``, compute the new state with a pure function,
then ``UPDATE ... WHERE name = :n AND version = :v``. If another writer got there first the UPDATE
touches no row, the transaction is rolled back and the function runs again on the fresh state. This
needs no row locks, no ``SELECT ... FOR UPDATE`` and no serializable isolation, so it behaves the same on
SQLite and PostgreSQL. A missing row is created with ``INSERT ... ON CONFLICT DO NOTHING`` (or an
insert whose duplicate-key error is ignored), so two processes creating one breaker cannot both win.
Events are inserted in the same transaction as the state they explain.

Times (``updated_at``, ``at``) are epoch seconds, as everywhere in the breaker. This module does not
import Dagster.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from alphapulse_assets.platform_db import platform_engine, redact
from alphapulse_assets.recovery import breaker as bk
from alphapulse_assets.recovery.breaker import BreakerConfig, BreakerState, Decision, Transition
from alphapulse_assets.recovery.errors import DataValidationError, ErrorClass, TransientError

metadata = sa.MetaData()

breakers_table = sa.Table(
    "alphapulse_breakers",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("state_json", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)

breaker_events_table = sa.Table(
    "alphapulse_breaker_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("from_state", sa.String(16), nullable=False),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_alphapulse_breaker_events_name_id", "name", "id"),
    sa.Index("ix_alphapulse_breaker_events_at", "at"),
)


@dataclass(frozen=True)
class BreakerEvent:
    """A stored transition."""

    id: int
    name: str
    from_state: str
    to_state: str
    at: float
    reason: str


class _Conflict(Exception):
    """Another writer changed the row between our read and our write."""


UpdateFn = Callable[[BreakerState], tuple[BreakerState, list[Transition]]]


class BreakerStore:
    """All breakers of one platform database.

    ``clock`` supplies ``now`` where a caller passes none (and the ``since`` of a breaker created on first
    use); tests inject one. ``max_attempts`` bounds the compare-and-swap retries of one ``update``.
    """

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time, max_attempts: int = 500):
        self.url = url
        self.engine = platform_engine(url)
        self.clock = clock
        self.max_attempts = max_attempts

    def _where(self, name: str | None = None) -> str:
        table = f"alphapulse_breakers[{name}]" if name else "alphapulse_breakers"
        return f"{table} at {redact(self.url)}"

    # -- reading -----------------------------------------------------------------------------------

    def _decode(self, name: str, state_json: str) -> BreakerState:
        try:
            data = json.loads(state_json)
        except ValueError as exc:
            raise DataValidationError(f"breaker state is not JSON: {exc}", where=self._where(name)) from exc
        return BreakerState.from_dict(data, where=self._where(name))

    def get(self, name: str) -> BreakerState:
        """The stored snapshot (a fresh CLOSED breaker if none is stored; nothing is written)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(breakers_table.c.state_json).where(breakers_table.c.name == name)).first()
        return bk.initial_state(self.clock()) if row is None else self._decode(name, row.state_json)

    def current(self, name: str, cfg: BreakerConfig, now: float | None = None) -> BreakerState:
        """The lazily evaluated state at ``now`` (OPEN past its timeout reads HALF_OPEN); writes nothing."""
        now = self.clock() if now is None else now
        return bk.current(self.get(name), cfg, now)[0]

    def all(self) -> dict[str, BreakerState]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(breakers_table.c.name, breakers_table.c.state_json).order_by(breakers_table.c.name)
            ).all()
        return {row.name: self._decode(row.name, row.state_json) for row in rows}

    def events(
        self,
        name: str | None = None,
        since: float | None = None,
        limit: int = 100,
        after_id: int | None = None,
    ) -> list[BreakerEvent]:
        """Stored transitions, oldest first.

        Without ``after_id``: the latest ``limit`` events (of ``name``, at or after ``since``).
        With ``after_id`` (a sensor's cursor): the first ``limit`` events whose id is greater.
        """
        t = breaker_events_table
        query = sa.select(t)
        if name is not None:
            query = query.where(t.c.name == name)
        if since is not None:
            query = query.where(t.c.at >= since)
        if after_id is not None:
            query = query.where(t.c.id > after_id).order_by(t.c.id.asc())
        else:
            query = query.order_by(t.c.id.desc())
        query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        events = [BreakerEvent(r.id, r.name, r.from_state, r.to_state, r.at, r.reason) for r in rows]
        return events if after_id is not None else events[::-1]

    # -- writing -----------------------------------------------------------------------------------

    def _insert_if_missing(self, conn: sa.Connection, name: str, now: float) -> None:
        values = {
            "name": name,
            "state_json": json.dumps(bk.initial_state(now).to_dict(), sort_keys=True),
            "version": 0,
            "updated_at": now,
        }
        dialect = conn.dialect.name
        if dialect == "postgresql":
            conn.execute(pg_dialect.insert(breakers_table).values(values).on_conflict_do_nothing())
        elif dialect == "sqlite":
            conn.execute(sqlite_dialect.insert(breakers_table).values(values).on_conflict_do_nothing())
        else:
            try:
                with conn.begin_nested():
                    conn.execute(breakers_table.insert().values(values))
            except sa.exc.IntegrityError:
                pass  # someone else created it first: exactly what we wanted

    def _attempt(self, name: str, fn: UpdateFn, now: float) -> tuple[BreakerState, list[Transition]]:
        t = breakers_table
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t.c.state_json, t.c.version).where(t.c.name == name)).first()
            if row is None:
                self._insert_if_missing(conn, name, now)
                row = conn.execute(sa.select(t.c.state_json, t.c.version).where(t.c.name == name)).first()
                if row is None:  # pragma: no cover - only if the row was deleted meanwhile
                    raise _Conflict()
            old = self._decode(name, row.state_json)
            new, transitions = fn(old)
            if new == old and not transitions:
                return new, transitions  # nothing to write (e.g. a request allowed while CLOSED)
            result = conn.execute(
                t.update()
                .where(t.c.name == name, t.c.version == row.version)
                .values(
                    state_json=json.dumps(new.to_dict(), sort_keys=True),
                    version=row.version + 1,
                    updated_at=now,
                )
            )
            if result.rowcount != 1:
                raise _Conflict()  # rolls the transaction back
            if transitions:
                conn.execute(
                    breaker_events_table.insert(),
                    [
                        {
                            "name": name,
                            "from_state": tr.from_state.value,
                            "to_state": tr.to_state.value,
                            "at": tr.at,
                            "reason": tr.reason,
                        }
                        for tr in transitions
                    ],
                )
            return new, transitions

    def update(self, name: str, fn: UpdateFn, now: float | None = None) -> tuple[BreakerState, list[Transition]]:
        """Apply ``fn`` to the stored state atomically; retried on conflict, so ``fn`` must be pure.

        ``now`` is only the ``updated_at`` stamp (and the creation time of a missing breaker); ``fn``
        carries its own clock value.
        """
        now = self.clock() if now is None else now
        delay = 0.001
        for _ in range(self.max_attempts):
            try:
                return self._attempt(name, fn, now)
            except _Conflict:
                pass
            except sa.exc.OperationalError as exc:
                message = str(exc.orig).lower()
                if self.engine.dialect.name != "sqlite" or not ("locked" in message or "busy" in message):
                    raise TransientError(f"breaker update failed: {exc.orig}", where=self._where(name)) from exc
                # SQLite refused the write lock (WAL snapshot went stale): same as a version conflict.
            time.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 0.05)
        raise TransientError(
            f"breaker update lost {self.max_attempts} compare-and-swap races in a row", where=self._where(name)
        )

    # -- convenience -------------------------------------------------------------------------------

    def record(
        self,
        name: str,
        cfg: BreakerConfig,
        ok: bool,
        error_class: ErrorClass | None = None,
        now: float | None = None,
        detail: str = "",
    ) -> tuple[BreakerState, list[Transition]]:
        """Record one call's outcome. A failure needs its ``error_class`` (see ``errors.classify``)."""
        now = self.clock() if now is None else now
        if ok:
            return self.update(name, lambda s: bk.record_success(s, cfg, now), now)
        if error_class is None:
            raise DataValidationError(
                "a failure must be recorded with its ErrorClass (use errors.classify)", where=self._where(name)
            )
        return self.update(name, lambda s: bk.record_failure(s, cfg, now, error_class, detail), now)

    def allow(self, name: str, cfg: BreakerConfig, now: float | None = None) -> Decision:
        """Ask the breaker; a granted half-open probe is persisted so that other processes see it."""
        now = self.clock() if now is None else now
        decision: list[Decision] = []

        def fn(state: BreakerState) -> tuple[BreakerState, list[Transition]]:
            d, new, transitions = bk.allow_request(state, cfg, now)
            decision[:] = [d]  # the last evaluation is the one that got committed
            return new, transitions

        self.update(name, fn, now)
        return decision[0]

    def force_open(self, name: str, by: str, reason: str, now: float | None = None) -> BreakerState:
        now = self.clock() if now is None else now
        return self.update(name, lambda s: bk.force_open(s, by, reason, now), now)[0]

    def disable(self, name: str, by: str, reason: str, now: float | None = None) -> BreakerState:
        now = self.clock() if now is None else now
        return self.update(name, lambda s: bk.disable(s, by, reason, now), now)[0]

    def reset(self, name: str, by: str, reason: str, now: float | None = None) -> BreakerState:
        now = self.clock() if now is None else now
        return self.update(name, lambda s: bk.reset(s, by, reason, now), now)[0]


__all__ = ["BreakerEvent", "BreakerStore", "breaker_events_table", "breakers_table", "metadata"]
