"""Alert history, open alerts and de-duplication state in the platform database.

Sensors run in fresh processes, so everything the router must remember between calls lives here:

- ``alphapulse_alert_history``: one row per thing that happened (raised, sent per channel, suppressed by
  de-duplication or inhibition, resolved, resolve sent, delivery failed). Append-only.
- ``alphapulse_alert_open``: the alerts firing now, one row per key.
- ``alphapulse_alert_dedupe``: per (key, channel) what was last sent and when. Claims on this table are
  single conditional statements, so two processes raising the same alert at once send it once.
- ``alphapulse_alert_run_claims``: which process raised a failed run's alert (the CLI that ran it or the
  run-failure sensor); one row per run, so a run is alerted once however many look at it together.

Claims use ``RETURNING`` rather than ``rowcount`` (psycopg reports -1 for ``INSERT .. ON CONFLICT``).
Every write is one statement in its own transaction: on SQLite this avoids the read-then-write lock
upgrade that fails instantly under contention, on PostgreSQL it keeps row locks short. Nothing secret is
ever passed in; callers redact error texts before recording them. This module does not import Dagster.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from alphapulse_assets.platform_db import platform_engine, redact
from alphapulse_assets.recovery.errors import Severity, TransientError

metadata = sa.MetaData()

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only

history_table = sa.Table(
    "alphapulse_alert_history",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("key", sa.String(512), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(64)),
    sa.Column("severity", sa.String(16)),
    sa.Column("status", sa.String(16)),
    sa.Column("title", sa.Text),
    sa.Column("detail", sa.Text),
    sa.Index("ix_alphapulse_alert_history_key_at", "key", "at"),
)

open_table = sa.Table(
    "alphapulse_alert_open",
    metadata,
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("source", sa.String(128), nullable=False),
    sa.Column("labels", sa.Text, nullable=False),  # JSON object
    sa.Column("first_at", sa.Float, nullable=False),
    sa.Column("last_at", sa.Float, nullable=False),
    sa.Column("inhibited", sa.Boolean, nullable=False, default=False),
)

dedupe_table = sa.Table(
    "alphapulse_alert_dedupe",
    metadata,
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("channel", sa.String(64), primary_key=True),
    sa.Column("severity", sa.String(16), nullable=False),
    # firing: the channel was sent this alert and not yet its resolve; resolved: it was sent the resolve;
    # unsent: the last delivery failed, so the next raise tries again.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("last_sent_at", sa.Float),
    sa.Column("claim_id", sa.String(32)),
)

run_claims_table = sa.Table(
    "alphapulse_alert_run_claims",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("claimed_by", sa.String(128), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)

# History event names.
RAISED = "raised"
SENT = "sent"
SUPPRESSED_DEDUPE = "suppressed_dedupe"
SUPPRESSED_INHIBITED = "suppressed_inhibited"
RESOLVED = "resolved"
RESOLVE_SENT = "resolve_sent"
DELIVERY_FAILED = "delivery_failed"


@dataclass(frozen=True)
class OpenAlert:
    key: str
    severity: Severity
    title: str
    body: str
    source: str
    labels: dict[str, str] = field(default_factory=dict)
    first_at: float = 0.0
    last_at: float = 0.0
    inhibited: bool = False


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    at: float
    key: str
    event: str
    channel: str | None
    severity: str | None
    status: str | None
    title: str | None
    detail: str | None


def _insert(dialect: str):
    """The dialect's INSERT with ON CONFLICT support (both SQLite and PostgreSQL have it)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the platform supports only these two
        raise TransientError(f"unsupported database dialect {dialect!r}", where="AlertStore")
    return insert


class AlertStore:
    """Alert history, open alerts and dedupe state on the platform database (SQLite or PostgreSQL)."""

    def __init__(self, url: str):
        self._where = f"AlertStore({redact(url)})"
        self.engine = platform_engine(url)
        self._insert = _insert(self.engine.dialect.name)

    # -- history -------------------------------------------------------------------------------------

    def record(
        self,
        event: str,
        key: str,
        *,
        at: float,
        channel: str | None = None,
        severity: Severity | str | None = None,
        status: str | None = None,
        title: str | None = None,
        detail: str | None = None,
    ) -> None:
        sev = severity.value if isinstance(severity, Severity) else severity
        with self.engine.begin() as conn:
            conn.execute(
                history_table.insert().values(
                    at=at,
                    key=key,
                    event=event,
                    channel=channel,
                    severity=sev,
                    status=status,
                    title=title,
                    detail=detail,
                )
            )

    def history(self, key: str | None = None, event: str | None = None, limit: int | None = None) -> list[HistoryEntry]:
        """History in the order it was written, optionally for one key and/or one event type."""
        q = sa.select(history_table).order_by(history_table.c.id)
        if key is not None:
            q = q.where(history_table.c.key == key)
        if event is not None:
            q = q.where(history_table.c.event == event)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [HistoryEntry(**row._mapping) for row in conn.execute(q)]

    def prune_history(self, before: float) -> int:
        """Delete history older than ``before`` (epoch seconds); returns how many rows went.

        Open alerts and dedupe state are kept: they are what de-duplication needs. Run claims go with the
        history of their time: a run that old is not alerted again (its run tag says so too).
        """
        with self.engine.begin() as conn:
            gone = conn.execute(history_table.delete().where(history_table.c.at < before).returning(history_table.c.id))
            conn.execute(run_claims_table.delete().where(run_claims_table.c.at < before))
            return len(gone.all())

    def last_raised(self, key: str) -> HistoryEntry | None:
        """The most recent raise of ``key`` (to describe a resolve when the open row is already gone)."""
        q = (
            sa.select(history_table)
            .where(history_table.c.key == key, history_table.c.event == RAISED)
            .order_by(history_table.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return HistoryEntry(**row._mapping) if row is not None else None

    def delivery_failures(self, key: str | None = None) -> list[HistoryEntry]:
        return self.history(key=key, event=DELIVERY_FAILED)

    # -- open alerts ---------------------------------------------------------------------------------

    def upsert_open(
        self,
        *,
        key: str,
        severity: Severity,
        title: str,
        body: str,
        source: str,
        labels: dict[str, str],
        at: float,
        inhibited: bool = False,
    ) -> None:
        values = dict(
            severity=severity.value,
            title=title,
            body=body,
            source=source,
            labels=json.dumps(labels, sort_keys=True),
            last_at=at,
            inhibited=inhibited,
        )
        stmt = self._insert(open_table).values(key=key, first_at=at, **values)
        stmt = stmt.on_conflict_do_update(index_elements=[open_table.c.key], set_=values)
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def set_inhibited(self, key: str, inhibited: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(open_table.update().where(open_table.c.key == key).values(inhibited=inhibited))

    @staticmethod
    def _open_from_row(row) -> OpenAlert:
        m = row._mapping
        return OpenAlert(
            key=m["key"],
            severity=Severity(m["severity"]),
            title=m["title"],
            body=m["body"],
            source=m["source"],
            labels=json.loads(m["labels"]),
            first_at=m["first_at"],
            last_at=m["last_at"],
            inhibited=bool(m["inhibited"]),
        )

    def open_alerts(self) -> list[OpenAlert]:
        """The alerts firing now, oldest first."""
        q = sa.select(open_table).order_by(open_table.c.first_at, open_table.c.key)
        with self.engine.connect() as conn:
            return [self._open_from_row(r) for r in conn.execute(q)]

    def open_alert(self, key: str) -> OpenAlert | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(open_table).where(open_table.c.key == key)).first()
        return self._open_from_row(row) if row is not None else None

    def close_open(self, key: str) -> OpenAlert | None:
        """Remove an open alert; returns it only to the one caller whose delete removed it."""
        stmt = open_table.delete().where(open_table.c.key == key).returning(*open_table.c)
        with self.engine.begin() as conn:
            row = conn.execute(stmt).first()
        return self._open_from_row(row) if row is not None else None

    # -- de-duplication ------------------------------------------------------------------------------

    def claim_send(self, key: str, channel: str, severity: Severity, now: float, repeat_seconds: float) -> str | None:
        """Claim the right to send a firing alert to a channel; a token, or None when it is a duplicate.

        Allowed when the channel never got this key, or got its resolve, or its last delivery failed, or
        got it at another severity, or got it ``repeat_seconds`` ago or longer.
        """
        token = uuid.uuid4().hex
        c = dedupe_table.c
        first = self._insert(dedupe_table).values(
            key=key, channel=channel, severity=severity.value, status="firing", last_sent_at=now, claim_id=token
        )
        first = first.on_conflict_do_nothing(index_elements=[c.key, c.channel]).returning(c.claim_id)
        with self.engine.begin() as conn:
            if conn.execute(first).first() is not None:
                return token
        again = (
            dedupe_table.update()
            .where(c.key == key, c.channel == channel)
            .where(
                sa.or_(
                    c.status != "firing",
                    c.severity != severity.value,
                    c.last_sent_at.is_(None),
                    c.last_sent_at <= now - repeat_seconds,
                )
            )
            .values(severity=severity.value, status="firing", last_sent_at=now, claim_id=token)
            .returning(c.claim_id)
        )
        with self.engine.begin() as conn:
            return token if conn.execute(again).first() is not None else None

    def release_send(self, key: str, channel: str, token: str) -> None:
        """The delivery behind a claim failed: let the next raise try again."""
        c = dedupe_table.c
        with self.engine.begin() as conn:
            conn.execute(
                dedupe_table.update()
                .where(c.key == key, c.channel == channel, c.claim_id == token)
                .values(status="unsent", last_sent_at=None)
            )

    def firing_channels(self, key: str) -> list[str]:
        """Channels that were sent this alert firing and not yet its resolve."""
        c = dedupe_table.c
        q = sa.select(c.channel).where(c.key == key, c.status == "firing").order_by(c.channel)
        with self.engine.connect() as conn:
            return list(conn.execute(q).scalars())

    def claim_resolve(self, key: str, channel: str) -> str | None:
        """Claim sending the resolve of ``key`` to ``channel``; None if it is not firing there (or taken)."""
        token = uuid.uuid4().hex
        c = dedupe_table.c
        stmt = (
            dedupe_table.update()
            .where(c.key == key, c.channel == channel, c.status == "firing")
            .values(status="resolved", claim_id=token)
            .returning(c.claim_id)
        )
        with self.engine.begin() as conn:
            return token if conn.execute(stmt).first() is not None else None

    def release_resolve(self, key: str, channel: str, token: str) -> None:
        """The resolve could not be delivered: the channel still shows the alert firing; retry later."""
        c = dedupe_table.c
        with self.engine.begin() as conn:
            conn.execute(
                dedupe_table.update()
                .where(c.key == key, c.channel == channel, c.claim_id == token)
                .values(status="firing")
            )

    # -- once per run ---------------------------------------------------------------------------------

    def claim_run(self, run_id: str, by: str, at: float) -> str | None:
        """Claim raising the alert of failed run ``run_id``: None when this caller won, else who holds it."""
        c = run_claims_table.c
        stmt = self._insert(run_claims_table).values(run_id=run_id, claimed_by=by, at=at)
        stmt = stmt.on_conflict_do_nothing(index_elements=[c.run_id]).returning(c.run_id)
        with self.engine.begin() as conn:
            if conn.execute(stmt).first() is not None:
                return None
            return conn.execute(sa.select(c.claimed_by).where(c.run_id == run_id)).scalar_one()

    def last_sent(self, key: str, channel: str) -> float | None:
        c = dedupe_table.c
        q = sa.select(c.last_sent_at).where(c.key == key, c.channel == channel)
        with self.engine.connect() as conn:
            return conn.execute(q).scalar()

    def dedupe_rows(self, keys: Iterable[str] | None = None) -> list[dict]:
        q = sa.select(dedupe_table).order_by(dedupe_table.c.key, dedupe_table.c.channel)
        if keys is not None:
            q = q.where(dedupe_table.c.key.in_(list(keys)))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]
