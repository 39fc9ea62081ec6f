"""The model registry: versioned artifacts with verified digests, champions, and promotion history.

Artifacts are scikit-learn estimators saved with skops (a format that does not execute code on load) under
``<root>/<symbol>/<cadence>/v<NNNN>.skops``, on a local path or an fsspec URL, written atomically. Each
version's SHA-256 digest is recorded in the platform database when it is registered and verified before
every load, promotion and rollback: a tampered or corrupted file is refused with a clear error and never
deserialised. Only scikit-learn and NumPy *classes* are trusted when loading (not functions, which could
be smuggled in as an estimator's callable); models with other types are refused at registration.

The database holds versions, the current champion per (symbol, cadence), and an append-only history of
every decision (promoted, rejected, rolled back, kept after a failure), so an operator can see why the
champion is what it is and roll back to any earlier version. A plain rollback walks back the chain of
champions (undo semantics): rolling back twice from v3 goes to v2 then v1, never back to v3.
This module does not import Dagster.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import fsspec
import sqlalchemy as sa
import skops.io as sio

from alphapulse_assets.platform_db import engine_for
from alphapulse_assets.recovery.errors import PermanentError

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
    sa.Column("action", sa.String(16), nullable=False),  # promoted | rejected | rolled_back | kept
    sa.Column("previous_champion", sa.Integer, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

TRUSTED_PREFIXES = ("sklearn.", "numpy.")
# A version number is taken by at most one writer per commit of another: this bounds the retries far above
# any real contention (the old bound of 5 failed with a handful of concurrent registrants).
_MAX_VERSION_ATTEMPTS = 200


def _is_trusted_type(name: str) -> bool:
    """Trusted: a *class* under sklearn or numpy. Functions are not: a prefix match alone would trust
    helpers such as ``numpy.testing._private.utils.runstring`` (which execs a string) smuggled in as an
    estimator's callable attribute."""
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


def _foreign_types(data: bytes) -> list[str]:
    """The types in a skops dump that we do not trust. Reads the schema only; constructs nothing."""
    return [t for t in sio.get_untrusted_types(data=data) if not _is_trusted_type(t)]


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


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)  # SQLite drops the zone


class ModelRegistry:
    def __init__(self, artifact_root: str, db_url: str, *, clock=_now):
        self.root = str(artifact_root).rstrip("/")
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root)
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.is_local = "file" in protocols or "local" in protocols
        self.engine = engine_for(db_url)
        self.clock = clock
        metadata.create_all(self.engine)

    # -- artifacts -------------------------------------------------------------------------------
    def _path(self, symbol: str, cadence: str, version: int) -> str:
        return f"{self._root_path}/{symbol}/{cadence}/v{version:04d}.skops"

    def _uri(self, path: str) -> str:
        # Remote artifacts keep their scheme, so the recorded URI says where the file really is.
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def _stage(self, symbol: str, cadence: str, data: bytes) -> str:
        """Write ``data`` to a unique temporary file beside the final one; returns its path.

        Done before the database transaction, so a slow upload never holds the database's write lock.
        """
        directory = f"{self._root_path}/{symbol}/{cadence}"
        tmp = f"{directory}/.staging-{uuid.uuid4().hex}.tmp"
        try:
            if self.is_local:
                os.makedirs(directory, exist_ok=True)
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
            else:
                self.fs.makedirs(directory, exist_ok=True)
                # Some filesystems (memory://) commit a half-written file when the writer fails:
                # it lands at the staging name, never at a version's name.
                with self.fs.open(tmp, "wb") as fh:
                    fh.write(data)
        except BaseException:
            self._discard(tmp)
            raise
        return tmp

    def _publish(self, tmp: str, path: str) -> None:
        """Move a staged file to its final name (atomic rename on local disks)."""
        if self.is_local:
            os.replace(tmp, path)
            try:  # make the rename itself durable
                dir_fd = os.open(os.path.dirname(path), os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            except OSError:
                pass
        else:
            self.fs.mv(tmp, path)

    def _discard(self, tmp: str) -> None:
        try:
            if self.is_local:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            elif self.fs.exists(tmp):
                self.fs.rm(tmp)
        except OSError:
            pass

    def register(self, symbol: str, cadence: str, model: Any, info: dict[str, Any] | None = None) -> ModelVersion:
        """Save ``model`` as the next version of (symbol, cadence). It is not champion until promoted."""
        data = sio.dumps(model)
        foreign = _foreign_types(data)
        if foreign:  # refuse now rather than store a model that ``load`` would refuse later
            raise ArtifactIntegrityError(
                f"cannot register a {type(model).__name__} for {symbol}/{cadence}: it contains untrusted "
                f"types {foreign} (only scikit-learn and NumPy classes are loaded)", where="model registry")
        digest = hashlib.sha256(data).hexdigest()
        info = dict(info or {})
        info_json = json.dumps(info, default=str)
        created = self.clock()
        tmp = self._stage(symbol, cadence, data)
        try:
            for _ in range(_MAX_VERSION_ATTEMPTS):  # another writer may take the same number: try the next
                with self.engine.connect() as conn:
                    latest = conn.execute(
                        sa.select(sa.func.max(versions_table.c.version)).where(
                            versions_table.c.symbol == symbol, versions_table.c.cadence == cadence)
                    ).scalar()
                version = (latest or 0) + 1
                path = self._path(symbol, cadence, version)
                uri = self._uri(path)
                try:
                    with self.engine.begin() as conn:
                        conn.execute(versions_table.insert().values(
                            symbol=symbol, cadence=cadence, version=version, uri=uri, sha256=digest,
                            created_at=created, info_json=info_json))
                        # Inside the transaction: if the move fails the row is rolled back, so no row
                        # ever points at a missing or partial file.
                        self._publish(tmp, path)
                    return ModelVersion(symbol, cadence, version, uri, digest, created, info)
                except sa.exc.IntegrityError:
                    continue
        finally:
            self._discard(tmp)  # a no-op after a successful move
        raise PermanentError(f"could not allocate a version number for {symbol}/{cadence}", where="model registry")

    def _verified_bytes(self, mv: ModelVersion) -> bytes:
        try:
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
        foreign = _foreign_types(data)
        if foreign:
            raise ArtifactIntegrityError(
                f"model file of {mv.label} contains untrusted types {foreign}: refusing to load it", where=mv.uri)
        return data

    def verify(self, mv: ModelVersion) -> None:
        """Check the file of ``mv`` against its digest and trusted types without deserialising it."""
        self._verified_bytes(mv)

    def load(self, mv: ModelVersion) -> Any:
        """The estimator of ``mv``, after verifying its digest. Refuses tampered or corrupted files."""
        data = self._verified_bytes(mv)
        return sio.load(io.BytesIO(data), trusted=sio.get_untrusted_types(data=data))

    # -- versions and champions ------------------------------------------------------------------
    @staticmethod
    def _row_to_version(row) -> ModelVersion:
        return ModelVersion(row.symbol, row.cadence, row.version, row.uri, row.sha256,
                            _aware(row.created_at), json.loads(row.info_json))

    def get(self, symbol: str, cadence: str, version: int) -> ModelVersion:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(versions_table).where(
                versions_table.c.symbol == symbol, versions_table.c.cadence == cadence,
                versions_table.c.version == version)).first()
        if row is None:
            raise PermanentError(f"no version {version} of {symbol}/{cadence}", where="model registry")
        return self._row_to_version(row)

    def versions(self, symbol: str, cadence: str) -> list[ModelVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(versions_table).where(
                versions_table.c.symbol == symbol, versions_table.c.cadence == cadence
            ).order_by(versions_table.c.version)).all()
        return [self._row_to_version(r) for r in rows]

    def champion(self, symbol: str, cadence: str) -> ModelVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(champions_table.c.version).where(
                champions_table.c.symbol == symbol, champions_table.c.cadence == cadence)).first()
        return self.get(symbol, cadence, row.version) if row else None

    def champions(self) -> list[ModelVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(champions_table).order_by(champions_table.c.symbol,
                                                                    champions_table.c.cadence)).all()
        return [self.get(r.symbol, r.cadence, r.version) for r in rows]

    def _set_champion(self, conn, symbol: str, cadence: str, version: int, at: datetime) -> int | None:
        previous = conn.execute(sa.select(champions_table.c.version).where(
            champions_table.c.symbol == symbol, champions_table.c.cadence == cadence)).scalar()
        if previous is None:
            conn.execute(champions_table.insert().values(symbol=symbol, cadence=cadence, version=version, since=at))
        else:
            conn.execute(champions_table.update().where(
                champions_table.c.symbol == symbol, champions_table.c.cadence == cadence
            ).values(version=version, since=at))
        return previous

    def _record(self, conn, symbol, cadence, version, action, previous, reason, by, at) -> Decision:
        conn.execute(decisions_table.insert().values(
            symbol=symbol, cadence=cadence, version=version, action=action, previous_champion=previous,
            reason=reason, by=by, at=at))
        return Decision(symbol, cadence, version, action, previous, reason, by, at)

    def promote(self, mv: ModelVersion, reason: str, by: str = "promotion-gate") -> Decision:
        """Make ``mv`` champion. Refuses (ArtifactIntegrityError) if its file fails verification."""
        self.verify(mv)
        at = self.clock()
        with self.engine.begin() as conn:
            previous = self._set_champion(conn, mv.symbol, mv.cadence, mv.version, at)
            return self._record(conn, mv.symbol, mv.cadence, mv.version, "promoted", previous, reason, by, at)

    def reject(self, mv: ModelVersion, reason: str, by: str = "promotion-gate") -> Decision:
        """Record that a challenger was not promoted; the champion stays in service."""
        at = self.clock()
        current = self.champion(mv.symbol, mv.cadence)
        with self.engine.begin() as conn:
            return self._record(conn, mv.symbol, mv.cadence, mv.version, "rejected",
                                current.version if current else None, reason, by, at)

    def keep_champion(self, symbol: str, cadence: str, reason: str, by: str = "fallback") -> Decision:
        """Record that the champion kept serving because a cadence failed (graceful degradation)."""
        at = self.clock()
        current = self.champion(symbol, cadence)
        with self.engine.begin() as conn:
            return self._record(conn, symbol, cadence, current.version if current else None, "kept",
                                current.version if current else None, reason, by, at)

    def rollback(self, symbol: str, cadence: str, to_version: int | None = None, *, reason: str,
                 by: str = "operator") -> Decision:
        """Make an earlier version champion again: ``to_version``, or the champion before the current one."""
        at = self.clock()
        if to_version is None:
            chain = self._champion_chain(symbol, cadence)
            if len(chain) < 2:
                raise PermanentError(f"{symbol}/{cadence} has no earlier champion to roll back to", where="model registry")
            to_version = chain[-2]
        target = self.get(symbol, cadence, to_version)
        self.load(target)  # never roll back onto a file that fails its digest check
        with self.engine.begin() as conn:
            previous = self._set_champion(conn, symbol, cadence, target.version, at)
            return self._record(conn, symbol, cadence, target.version, "rolled_back", previous, reason, by, at)

    def _champion_chain(self, symbol: str, cadence: str) -> list[int]:
        """The champions in order, as an undo stack: a promotion pushes; a rollback to a version in the stack
        pops back to it (so a version rolled away from is not reinstated by the next plain rollback)."""
        query = sa.select(decisions_table.c.action, decisions_table.c.version).where(
            decisions_table.c.symbol == symbol, decisions_table.c.cadence == cadence,
            decisions_table.c.action.in_(("promoted", "rolled_back"))).order_by(decisions_table.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()  # the whole chain: ``history``'s limit must not cut it
        chain: list[int] = []
        for action, version in rows:
            if action == "rolled_back" and version in chain:
                del chain[len(chain) - chain[::-1].index(version):]  # back to its latest occurrence
            elif not chain or chain[-1] != version:
                chain.append(version)
        return chain

    def history(self, symbol: str | None = None, cadence: str | None = None, limit: int = 1000) -> list[Decision]:
        """The most recent ``limit`` decisions, oldest first."""
        query = sa.select(decisions_table).order_by(decisions_table.c.id.desc())
        if symbol:
            query = query.where(decisions_table.c.symbol == symbol)
        if cadence:
            query = query.where(decisions_table.c.cadence == cadence)
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).all()[::-1]
        return [Decision(r.symbol, r.cadence, r.version, r.action, r.previous_champion, r.reason, r.by,
                         _aware(r.at)) for r in rows]
