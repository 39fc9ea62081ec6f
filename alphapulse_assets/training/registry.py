"""The model registry: versioned artifacts with verified digests, champions, and promotion history.

Artifacts are scikit-learn estimators saved with skops (a format that does not execute code on load) under
``<root>/<symbol>/<cadence>/v<NNNN>.skops``, on a local path or an fsspec URL, written atomically; the database
stores that path relative to the root, so a moved, copied or restored instance reads its own files (rows
written with absolute paths by older versions resolve the same way). A version number is never reused for a
file that exists: numbers are allocated past both the database's and the folder's highest, and a file is
never overwritten. Each
version's SHA-256 digest is recorded in the platform database when it is registered and verified before
every load, promotion and rollback: a tampered or corrupted file is refused with a clear error and never
deserialised. Only scikit-learn and NumPy *classes* are trusted when loading (not functions, which could
be smuggled in as an estimator's callable), plus the classes named in ``trusted_types`` (the estimators an
operator configured by dotted path, ``training/estimators.py``); models with other types are refused at
registration.

The database holds versions, the current champion per (symbol, cadence), and an append-only history of
every decision (promoted, rejected, held for review, rolled back, kept after a failure, fell back from a
refused file), so an operator can see why the champion is what it is. A held challenger (the gate's
implausibility guard) is promoted only by ``approve``, which records who and why. A plain rollback walks
back the chain of champions (undo semantics): rolling back twice from v3 goes to v2 then v1, never back to
v3. A rollback to a chosen version
only goes to a version that was a champion and was never rejected by the gate, unless forced (recorded).
``serving_champion`` verifies the champion's file and, when it is tampered or missing, falls back to the
newest earlier champion whose file verifies, and records why. Every champion change is passed to the
``on_change`` listener with the version now serving (the Dagster wrapper shows it on the champion asset and
alerts).
This module does not import Dagster.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from alphapulse_assets import atomic_files
from alphapulse_assets.platform_db import platform_engine
from alphapulse_assets.recovery.errors import PermanentError
from alphapulse_assets.store_fs import forget_listing, list_names, open_store

metadata = sa.MetaData()

versions_table = sa.Table(
    "alphapulse_model_versions",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("cadence", sa.String(16), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("info_json", sa.Text, nullable=False),
    # Copied from ``info`` (run_id, partition) when registered, so look-ups by run or partition use an index
    # instead of parsing every version's JSON (migration 0002; NULL for versions registered outside a run).
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("partition_key", sa.String(64), nullable=True),
    sa.Index("ix_alphapulse_model_versions_cadence_run", "cadence", "run_id"),
    sa.Index("ix_alphapulse_model_versions_partition", "symbol", "cadence", "partition_key"),
)

champions_table = sa.Table(
    "alphapulse_champions",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("cadence", sa.String(16), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
)

decisions_table = sa.Table(
    "alphapulse_model_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(32), nullable=False, index=True),
    sa.Column("cadence", sa.String(16), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    # promoted | rejected | held | rolled_back | kept | fell_back (free text: a new action needs no migration)
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("previous_champion", sa.Integer, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

log = logging.getLogger("alphapulse.registry")

TRUSTED_PREFIXES = ("sklearn.", "numpy.")
# Decisions after which another version is champion (``promoted`` included).
CHAMPION_CHANGES = ("promoted", "rolled_back", "fell_back")
_VERSION_FILE = re.compile(r"^v(\d+)\.skops$")
# A version number is taken by at most one writer per commit of another: this bounds the retries far above
# any real contention (the old bound of 5 failed with a handful of concurrent registrants).
_MAX_VERSION_ATTEMPTS = 200


def _is_trusted_type(name: str, extra: frozenset[str] = frozenset()) -> bool:
    """Trusted: a *class* under sklearn or numpy, or one of ``extra`` (exact names of configured classes).
    Functions are not: a prefix match alone would trust helpers such as
    ``numpy.testing._private.utils.runstring`` (which execs a string) smuggled in as an estimator's callable
    attribute."""
    if name in extra:
        return True
    if not name.startswith(TRUSTED_PREFIXES):
        return False
    module_name, _, attr = name.rpartition(".")
    # Resolving the name imports its module: never one that runs a program or a test suite on import.
    if any(part in ("__main__", "tests", "testing", "conftest") for part in module_name.split(".")):
        return False
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(obj, type)


def _skops():
    """skops.io, imported on first use: its import costs every process that loads the definitions about 0.45 s
    (bench/README.md, "Import time"), and most of them never save or load a model."""
    import skops.io

    return skops.io


def _foreign_types(data: bytes, extra: frozenset[str] = frozenset()) -> list[str]:
    """The types in a skops dump that we do not trust. Reads the schema only; constructs nothing."""
    return [t for t in _skops().get_untrusted_types(data=data) if not _is_trusted_type(t, extra)]


def load_verified(data: bytes) -> Any:
    """The estimator in ``data``, which ``ModelRegistry.verified_bytes`` returned (digest and types checked)."""
    skops = _skops()
    return skops.load(io.BytesIO(data), trusted=skops.get_untrusted_types(data=data))


class ArtifactIntegrityError(PermanentError):
    """A model file does not match the digest recorded when it was registered."""


@dataclass(frozen=True)
class ModelVersion:
    symbol: str
    cadence: str
    version: int
    uri: str
    sha256: str
    created_at: datetime
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        return f"{self.symbol}/{self.cadence}/v{self.version}"


@dataclass(frozen=True)
class Decision:
    symbol: str
    cadence: str
    version: int | None
    action: str
    previous_champion: int | None
    reason: str
    by: str
    at: datetime


def _column_text(value: Any) -> str | None:
    return None if value is None else str(value)[:64]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)  # SQLite drops the zone


class ModelRegistry:
    def __init__(
        self,
        artifact_root: str,
        db_url: str,
        *,
        clock=_now,
        on_change: Callable[[Decision, ModelVersion | None], None] | None = None,
        trusted_types: tuple[str, ...] = (),
    ):
        self.root = str(artifact_root).rstrip("/")
        self.fs, self._root_path, self.is_local = open_store(self.root)
        self.engine = platform_engine(db_url)
        self.clock = clock
        self.on_change = on_change
        # Exact type names (``module.QualName``) trusted besides scikit-learn's and NumPy's classes.
        self.trusted_types = frozenset(trusted_types)

    # -- artifacts -------------------------------------------------------------------------------
    @staticmethod
    def _relative(symbol: str, cadence: str, version: int) -> str:
        """What the database stores: the file's path under the artifact root."""
        return f"{symbol}/{cadence}/v{version:04d}.skops"

    def _path(self, symbol: str, cadence: str, version: int) -> str:
        return f"{self._root_path}/{self._relative(symbol, cadence, version)}"

    def _uri(self, path: str) -> str:
        # Remote artifacts keep their scheme, so the URI shown says where the file really is.
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def _location(self, stored: str, symbol: str, cadence: str, version: int) -> str:
        """Where this registry reads a version's file. Relative rows live under this root; an absolute row
        in the registry's own layout (written by an older version, maybe on another machine or folder) is
        read under this root too, so a moved or copied instance never reads another instance's files."""
        relative = self._relative(symbol, cadence, version)
        if stored == relative or stored.endswith("/" + relative):
            return self._uri(self._path(symbol, cadence, version))
        return stored

    def _versions_on_disk(self, symbol: str, cadence: str) -> int:
        """The highest version number with a file in the folder (0 if none): the database may have been lost."""
        directory = f"{self._root_path}/{symbol}/{cadence}"
        try:
            names = os.listdir(directory) if self.is_local else list_names(self.fs, directory)
        except (FileNotFoundError, NotADirectoryError):
            return 0
        return max((int(m.group(1)) for m in map(_VERSION_FILE.match, names) if m), default=0)

    def _stage(self, symbol: str, cadence: str, data: bytes) -> str:
        """Write ``data`` to a unique temporary file beside the final one; returns its path.

        Done before the database transaction, so a slow upload never holds the database's write lock.
        """
        return atomic_files.stage(
            self.fs, self.is_local, f"{self._root_path}/{symbol}/{cadence}/staging", lambda fh: fh.write(data)
        )

    def _publish(self, tmp: str, path: str) -> None:
        """Give a staged file its final name, never replacing a file of that name (FileExistsError)."""
        atomic_files.publish(self.fs, self.is_local, tmp, path, replace=False)

    def _discard(self, tmp: str) -> None:
        atomic_files.discard(self.fs, self.is_local, tmp)

    def register(self, symbol: str, cadence: str, model: Any, info: dict[str, Any] | None = None) -> ModelVersion:
        """Save ``model`` as the next version of (symbol, cadence). It is not champion until promoted."""
        data = _skops().dumps(model)
        foreign = _foreign_types(data, self.trusted_types)
        if foreign:  # refuse now rather than store a model that ``load`` would refuse later
            raise ArtifactIntegrityError(
                f"cannot register a {type(model).__name__} for {symbol}/{cadence}: it contains untrusted "
                f"types {foreign} (only scikit-learn and NumPy classes, and the estimator classes configured "
                "in ALPHAPULSE_<CADENCE>__ESTIMATOR, are loaded)",
                where="model registry",
            )
        digest = hashlib.sha256(data).hexdigest()
        info = dict(info or {})
        info_json = json.dumps(info, default=str)
        created = self.clock()
        tmp = self._stage(symbol, cadence, data)
        taken = 0  # the highest number found taken by a file (the database may not know it)
        try:
            for _ in range(_MAX_VERSION_ATTEMPTS):  # another writer may take the same number: try the next
                with self.engine.connect() as conn:
                    latest = conn.execute(
                        sa.select(sa.func.max(versions_table.c.version)).where(
                            versions_table.c.symbol == symbol, versions_table.c.cadence == cadence
                        )
                    ).scalar()
                version = max(latest or 0, self._versions_on_disk(symbol, cadence), taken) + 1
                path = self._path(symbol, cadence, version)
                published = False
                try:
                    with self.engine.begin() as conn:
                        conn.execute(
                            versions_table.insert().values(
                                symbol=symbol,
                                cadence=cadence,
                                version=version,
                                uri=self._relative(symbol, cadence, version),
                                sha256=digest,
                                created_at=created,
                                info_json=info_json,
                                run_id=_column_text(info.get("run_id")),
                                partition_key=_column_text(info.get("partition")),
                            )
                        )
                        # Inside the transaction: if the move fails the row is rolled back, so no row
                        # ever points at a missing or partial file.
                        self._publish(tmp, path)
                        published = True
                    return ModelVersion(symbol, cadence, version, self._uri(path), digest, created, info)
                except sa.exc.IntegrityError:
                    continue
                except FileExistsError:  # a file the database does not know (a lost or restored database)
                    taken = version
                    continue
                except BaseException:
                    if published:  # the commit failed: no row points at the file, so it goes too
                        self._discard(path)
                    raise
        finally:
            self._discard(tmp)  # a no-op after a successful move
        raise PermanentError(f"could not allocate a version number for {symbol}/{cadence}", where="model registry")

    def _verified_bytes(self, mv: ModelVersion) -> bytes:
        try:
            forget_listing(self.fs, mv.uri)  # written by another process, maybe after this one listed its folder
            with self.fs.open(mv.uri, "rb") as fh:
                data = fh.read()
        except FileNotFoundError as exc:
            raise ArtifactIntegrityError(f"model file of {mv.label} is missing", where=mv.uri) from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest != mv.sha256:
            raise ArtifactIntegrityError(
                f"model file of {mv.label} does not match its recorded SHA-256 "
                f"(expected {mv.sha256[:12]}..., found {digest[:12]}...): refusing to load it",
                where=mv.uri,
            )
        foreign = _foreign_types(data, self.trusted_types)
        if foreign:
            raise ArtifactIntegrityError(
                f"model file of {mv.label} contains untrusted types {foreign}: refusing to load it", where=mv.uri
            )
        return data

    def file_stamps(self) -> dict[str, tuple[Any, ...]]:
        """``{uri: (size, change stamp)}`` of every file under the artifact root, from ONE fresh listing (an
        object store's ETag, else the modification time): what changed since a file was last verified, for
        the price of a listing instead of reading every file."""
        self.fs.invalidate_cache()  # the listing must be the store's now, not a cached one
        try:
            found = self.fs.find(self._root_path, detail=True)
        except FileNotFoundError:
            return {}
        return {
            self._uri(path): (info.get("size"), info.get("ETag") or info.get("mtime") or info.get("LastModified"))
            for path, info in found.items()
        }

    def verify(self, mv: ModelVersion) -> None:
        """Check the file of ``mv`` against its digest and trusted types without deserialising it."""
        self._verified_bytes(mv)

    def verified_bytes(self, mv: ModelVersion) -> bytes:
        """The file of ``mv``, checked against its digest and trusted types: what ``load_verified`` reads
        (in another process, say). Refuses tampered or corrupted files."""
        return self._verified_bytes(mv)

    def load(self, mv: ModelVersion) -> Any:
        """The estimator of ``mv``, after verifying its digest. Refuses tampered or corrupted files."""
        return load_verified(self._verified_bytes(mv))

    # -- versions and champions ------------------------------------------------------------------
    def _row_to_version(self, row) -> ModelVersion:
        return ModelVersion(
            row.symbol,
            row.cadence,
            row.version,
            self._location(row.uri, row.symbol, row.cadence, row.version),
            row.sha256,
            _aware(row.created_at),
            json.loads(row.info_json),
        )

    def get(self, symbol: str, cadence: str, version: int) -> ModelVersion:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(versions_table).where(
                    versions_table.c.symbol == symbol,
                    versions_table.c.cadence == cadence,
                    versions_table.c.version == version,
                )
            ).first()
        if row is None:
            raise PermanentError(f"no version {version} of {symbol}/{cadence}", where="model registry")
        return self._row_to_version(row)

    def versions(self, symbol: str, cadence: str) -> list[ModelVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(versions_table)
                .where(versions_table.c.symbol == symbol, versions_table.c.cadence == cadence)
                .order_by(versions_table.c.version)
            ).all()
        return [self._row_to_version(r) for r in rows]

    def latest_version(self, symbol: str, cadence: str) -> ModelVersion | None:
        """The newest version of (symbol, cadence), or None: one row, however many versions exist."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(versions_table)
                .where(versions_table.c.symbol == symbol, versions_table.c.cadence == cadence)
                .order_by(versions_table.c.version.desc())
                .limit(1)
            ).first()
        return self._row_to_version(row) if row is not None else None

    def versions_since(self, symbol: str, cadence: str, since: datetime) -> list[ModelVersion]:
        """The versions of (symbol, cadence) registered at ``since`` or later, oldest first."""
        t = versions_table
        since = _aware(since).astimezone(timezone.utc)  # stored in UTC (SQLite keeps no zone)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t)
                .where(t.c.symbol == symbol, t.c.cadence == cadence, t.c.created_at >= since)
                .order_by(t.c.version)
            ).all()
        return [self._row_to_version(r) for r in rows if _aware(r.created_at) >= since]

    def partitions_trained(self, cadence: str, run_id: str, symbol: str | None = None) -> dict[str, set[str]]:
        """Per symbol, the partitions of ``cadence`` that run ``run_id`` registered a version for (what a retried
        step skips): one indexed query for every symbol (or only ``symbol``), reading no stored JSON."""
        t = versions_table
        query = sa.select(t.c.symbol, t.c.partition_key).where(t.c.cadence == cadence, t.c.run_id == run_id)
        if symbol is not None:
            query = query.where(t.c.symbol == symbol)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        done: dict[str, set[str]] = {}
        for symbol, partition in rows:
            done.setdefault(symbol, set()).add(partition)
        return done

    def champion(self, symbol: str, cadence: str) -> ModelVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(champions_table.c.version).where(
                    champions_table.c.symbol == symbol, champions_table.c.cadence == cadence
                )
            ).first()
        return self.get(symbol, cadence, row.version) if row else None

    def champion_version(self, symbol: str, cadence: str) -> int | None:
        """The champion's version number only: one primary-key lookup, cheap enough for every prediction."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(champions_table.c.version).where(
                    champions_table.c.symbol == symbol, champions_table.c.cadence == cadence
                )
            ).scalar()

    def champions(self) -> list[ModelVersion]:
        """Every champion, by symbol and cadence: one query (a join), not one per champion."""
        return [mv for mv, _ in self.champions_since()]

    def champions_since(self) -> list[tuple[ModelVersion, datetime]]:
        """Every champion with the time it became champion, by symbol and cadence."""
        c, v = champions_table, versions_table
        query = (
            sa.select(v, c.c.since)
            .join(c, sa.and_(v.c.symbol == c.c.symbol, v.c.cadence == c.c.cadence, v.c.version == c.c.version))
            .order_by(c.c.symbol, c.c.cadence)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(self._row_to_version(r), _aware(r.since)) for r in rows]

    def _set_champion(self, conn, symbol: str, cadence: str, version: int, at: datetime) -> int | None:
        previous = conn.execute(
            sa.select(champions_table.c.version).where(
                champions_table.c.symbol == symbol, champions_table.c.cadence == cadence
            )
        ).scalar()
        if previous is None:
            conn.execute(champions_table.insert().values(symbol=symbol, cadence=cadence, version=version, since=at))
        else:
            conn.execute(
                champions_table.update()
                .where(champions_table.c.symbol == symbol, champions_table.c.cadence == cadence)
                .values(version=version, since=at)
            )
        return previous

    def _record(self, conn, symbol, cadence, version, action, previous, reason, by, at) -> Decision:
        conn.execute(
            decisions_table.insert().values(
                symbol=symbol,
                cadence=cadence,
                version=version,
                action=action,
                previous_champion=previous,
                reason=reason,
                by=by,
                at=at,
            )
        )
        return Decision(symbol, cadence, version, action, previous, reason, by, at)

    def _notify(self, decision: Decision) -> Decision:
        """Tell the listener about a champion change (and the version now serving); its failure never undoes
        the change."""
        if self.on_change is not None:
            try:
                serving = (
                    None if decision.version is None else self.get(decision.symbol, decision.cadence, decision.version)
                )
                self.on_change(decision, serving)
            except Exception:  # noqa: BLE001 - the change is committed; the listener reports elsewhere
                log.exception("reporting the champion change of %s/%s failed", decision.symbol, decision.cadence)
        return decision

    def promote(self, mv: ModelVersion, reason: str, by: str = "promotion-gate") -> Decision:
        """Make ``mv`` champion. Refuses (ArtifactIntegrityError) if its file fails verification."""
        self.verify(mv)
        at = self.clock()
        with self.engine.begin() as conn:
            previous = self._set_champion(conn, mv.symbol, mv.cadence, mv.version, at)
            decision = self._record(conn, mv.symbol, mv.cadence, mv.version, "promoted", previous, reason, by, at)
        return self._notify(decision)

    def reject(self, mv: ModelVersion, reason: str, by: str = "promotion-gate") -> Decision:
        """Record that a challenger was not promoted; the champion stays in service."""
        at = self.clock()
        current = self.champion(mv.symbol, mv.cadence)
        with self.engine.begin() as conn:
            return self._record(
                conn,
                mv.symbol,
                mv.cadence,
                mv.version,
                "rejected",
                current.version if current else None,
                reason,
                by,
                at,
            )

    def hold(self, mv: ModelVersion, reason: str, by: str = "promotion-gate") -> Decision:
        """Record that a challenger is held for review (too good for its market); the champion stays in
        service until an operator approves it (``approve``). The listener is told (it raises the alert)."""
        at = self.clock()
        current = self.champion(mv.symbol, mv.cadence)
        with self.engine.begin() as conn:
            decision = self._record(
                conn, mv.symbol, mv.cadence, mv.version, "held", current.version if current else None, reason, by, at
            )
        return self._notify(decision)

    def held(self, symbol: str | None = None, cadence: str | None = None) -> list[Decision]:
        """Holds still awaiting review: the version was held and has had no decision since."""
        t = decisions_table
        query = sa.select(t).where(t.c.version.is_not(None)).order_by(t.c.id)
        if symbol:
            query = query.where(t.c.symbol == symbol)
        if cadence:
            query = query.where(t.c.cadence == cadence)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        last: dict[tuple[str, str, int], Decision] = {}
        for r in rows:
            last[(r.symbol, r.cadence, r.version)] = self._row_to_decision(r)
        return [d for d in last.values() if d.action == "held"]

    def approve(self, symbol: str, cadence: str, version: int, *, reason: str, by: str) -> Decision:
        """Promote a held challenger after review (recorded with who and why). Refuses a version that is not
        awaiting review, and a file that fails its digest check."""
        where = f"approval of {symbol}/{cadence}/v{version}"
        if not (reason or "").strip():
            raise PermanentError("an approval needs a reason (--reason)", where=where)
        waiting = {d.version: d for d in self.held(symbol, cadence)}
        if version not in waiting:
            listed = ", ".join(f"v{v}" for v in sorted(waiting)) or "none"
            raise PermanentError(
                f"v{version} of {symbol}/{cadence} is not held for review; held versions: {listed}", where=where
            )
        mv = self.get(symbol, cadence, version)
        return self.promote(mv, reason=f"approved after review ({waiting[version].reason}): {reason}", by=by)

    def keep_champion(self, symbol: str, cadence: str, reason: str, by: str = "fallback") -> Decision:
        """Record that the champion kept serving because a cadence failed (graceful degradation)."""
        at = self.clock()
        current = self.champion(symbol, cadence)
        with self.engine.begin() as conn:
            return self._record(
                conn,
                symbol,
                cadence,
                current.version if current else None,
                "kept",
                current.version if current else None,
                reason,
                by,
                at,
            )

    def _never_eligible(self, symbol: str, cadence: str, version: int) -> str | None:
        """Why ``version`` may not be crowned by a rollback (None if it may): it was never a champion, or
        the gate rejected it."""
        mv = self.get(symbol, cadence, version)
        with self.engine.connect() as conn:
            actions = set(
                conn.execute(
                    sa.select(decisions_table.c.action).where(
                        decisions_table.c.symbol == symbol,
                        decisions_table.c.cadence == cadence,
                        decisions_table.c.version == version,
                    )
                ).scalars()
            )
        approved = mv.info.get("gate_verdict") == "held" and "promoted" in actions
        if "rejected" in actions or (mv.info.get("gate_passed") is False and not approved):
            return f"v{version} was rejected by the promotion gate ({mv.info.get('gate_reason') or 'see history'})"
        if not actions & set(CHAMPION_CHANGES):
            return f"v{version} was never a champion"
        return None

    def rollback_targets(self, symbol: str, cadence: str) -> list[int]:
        """Versions a rollback may crown without ``force``: earlier champions never rejected by the gate."""
        current = self.champion(symbol, cadence)
        with self.engine.connect() as conn:
            crowned = sorted(
                set(
                    conn.execute(
                        sa.select(decisions_table.c.version).where(
                            decisions_table.c.symbol == symbol,
                            decisions_table.c.cadence == cadence,
                            decisions_table.c.action.in_(CHAMPION_CHANGES),
                            decisions_table.c.version.is_not(None),
                        )
                    ).scalars()
                )
            )
        return [
            v
            for v in crowned
            if (current is None or v != current.version) and self._never_eligible(symbol, cadence, v) is None
        ]

    def rollback(
        self,
        symbol: str,
        cadence: str,
        to_version: int | None = None,
        *,
        reason: str,
        by: str = "operator",
        force: bool = False,
    ) -> Decision:
        """Make an earlier version champion again: ``to_version``, or the champion before the current one.

        ``to_version`` must have been a champion and never rejected by the gate; ``force`` overrides that
        (the decision's reason says it was forced, and why the version was not eligible). A rollback to the
        current champion, or onto a file that fails its digest check, is refused.
        """
        if not (reason or "").strip():
            raise PermanentError("a rollback needs a reason (--reason)", where="model registry")
        where = f"rollback of {symbol}/{cadence}"
        if to_version is None:
            chain = self._champion_chain(symbol, cadence)
            if len(chain) < 2:
                raise PermanentError(f"{symbol}/{cadence} has no earlier champion to roll back to", where=where)
            to_version = chain[-2]
        else:

            def eligible() -> str:
                targets = self.rollback_targets(symbol, cadence)
                return "eligible versions: " + (", ".join(f"v{v}" for v in targets) or "none")

            current = self.champion(symbol, cadence)
            if current is not None and current.version == to_version:
                raise PermanentError(
                    f"v{to_version} is already the champion of {symbol}/{cadence}; {eligible()}", where=where
                )
            known = {v.version for v in self.versions(symbol, cadence)}
            if to_version not in known:
                raise PermanentError(f"{symbol}/{cadence} has no version {to_version}; {eligible()}", where=where)
            problem = self._never_eligible(symbol, cadence, to_version)
            if problem and not force:
                raise PermanentError(
                    f"{problem}: refusing to make it champion; {eligible()} "
                    "(or --force with a --reason, which is recorded)",
                    where=where,
                )
            if problem:
                reason = f"FORCED although {problem}: {reason}"
        target = self.get(symbol, cadence, to_version)
        self.load(target)  # never roll back onto a file that fails its digest check
        at = self.clock()
        with self.engine.begin() as conn:
            previous = self._set_champion(conn, symbol, cadence, target.version, at)
            decision = self._record(conn, symbol, cadence, target.version, "rolled_back", previous, reason, by, at)
        return self._notify(decision)

    def serving_champion(self, symbol: str, cadence: str) -> ModelVersion | None:
        """The champion, its file verified. A tampered or missing file is refused, recorded, and the newest
        earlier champion whose file verifies takes over (none if no earlier one does): a ``fell_back``
        decision names both and why, and the listener is told."""
        champion = self.champion(symbol, cadence)
        if champion is None:
            return None
        try:
            self.verify(champion)
            return champion
        except ArtifactIntegrityError as exc:
            refusal = str(exc)
        replacement = None
        for version in reversed(self._champion_chain(symbol, cadence)):
            if version == champion.version:
                continue
            candidate = self.get(symbol, cadence, version)
            try:
                self.verify(candidate)
            except ArtifactIntegrityError:
                continue
            replacement = candidate
            break
        at = self.clock()
        with self.engine.begin() as conn:
            current = conn.execute(
                sa.select(champions_table.c.version).where(
                    champions_table.c.symbol == symbol, champions_table.c.cadence == cadence
                )
            ).scalar()
            if current != champion.version:  # another process already fell back (or promoted)
                return self.champion(symbol, cadence)
            if replacement is not None:
                self._set_champion(conn, symbol, cadence, replacement.version, at)
                serves = f"v{replacement.version} serves (the newest earlier champion whose file verifies)"
            else:
                conn.execute(
                    champions_table.delete().where(
                        champions_table.c.symbol == symbol, champions_table.c.cadence == cadence
                    )
                )
                serves = "no earlier champion verifies: no champion serves"
            decision = self._record(
                conn,
                symbol,
                cadence,
                replacement.version if replacement else None,
                "fell_back",
                champion.version,
                f"champion v{champion.version} refused: {refusal}; {serves}",
                "registry",
                at,
            )  # the refusal names the file
        log.error("%s/%s: %s", symbol, cadence, decision.reason)
        self._notify(decision)
        return replacement

    def _champion_chain(self, symbol: str, cadence: str) -> list[int]:
        """The champions in order, as an undo stack: a promotion pushes; a rollback (or a fall-back) to a
        version in the stack pops back to it (so a version rolled away from is not reinstated by the next
        plain rollback)."""
        query = (
            sa.select(decisions_table.c.action, decisions_table.c.version)
            .where(
                decisions_table.c.symbol == symbol,
                decisions_table.c.cadence == cadence,
                decisions_table.c.action.in_(CHAMPION_CHANGES),
            )
            .order_by(decisions_table.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()  # the whole chain: ``history``'s limit must not cut it
        chain: list[int] = []
        for action, version in rows:
            if version is None:  # fell back to nothing
                chain = []
            elif action != "promoted" and version in chain:
                del chain[len(chain) - chain[::-1].index(version) :]  # back to its latest occurrence
            elif not chain or chain[-1] != version:
                chain.append(version)
        return chain

    def champion_changes(self, symbol: str, cadence: str) -> list[Decision]:
        """Every decision that changed the champion of (symbol, cadence), oldest first: promotions, rollbacks,
        fall-backs (``version`` None: no champion served from then on). Each holds from its ``at`` until the
        next one: which champion was in force when."""
        t = decisions_table
        query = (
            sa.select(t)
            .where(t.c.symbol == symbol, t.c.cadence == cadence, t.c.action.in_(CHAMPION_CHANGES))
            .order_by(t.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [self._row_to_decision(r) for r in rows]

    def previous_eligible_champion(self, symbol: str, cadence: str) -> int | None:
        """The version a plain rollback should crown: the newest earlier champion in the undo chain that the
        gate never rejected (None if there is none). Versions rolled away from are not in the chain."""
        current = self.champion(symbol, cadence)
        for version in reversed(self._champion_chain(symbol, cadence)):
            if current is not None and version == current.version:
                continue
            if self._never_eligible(symbol, cadence, version) is None:
                return version
        return None

    def decisions_between(self, start: datetime, end: datetime) -> list[Decision]:
        """Every decision taken at ``start`` or later and before ``end``, oldest first."""
        t = decisions_table
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.at >= start, t.c.at < end).order_by(t.c.id)).all()
        return [self._row_to_decision(r) for r in rows]

    @staticmethod
    def _row_to_decision(r) -> Decision:
        return Decision(r.symbol, r.cadence, r.version, r.action, r.previous_champion, r.reason, r.by, _aware(r.at))

    def history(self, symbol: str | None = None, cadence: str | None = None, limit: int = 1000) -> list[Decision]:
        """The most recent ``limit`` decisions, oldest first."""
        query = sa.select(decisions_table).order_by(decisions_table.c.id.desc())
        if symbol:
            query = query.where(decisions_table.c.symbol == symbol)
        if cadence:
            query = query.where(decisions_table.c.cadence == cadence)
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).all()[::-1]
        return [self._row_to_decision(r) for r in rows]
