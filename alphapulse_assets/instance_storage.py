"""Dagster's local SQLite storage with reused connections: the same files, a fraction of the cost per event.

Dagster's stock SQLite storages build a new engine and connection for every statement and commit each with
a full fsync: about five connections per asset event. A nightly run writes about a hundred events (planned
materializations and checks, results, step events), so on the local instance most of a small run's time
was spent opening SQLite files (bench/README.md has the figures).

``PooledSqliteStorage`` is ``DagsterSqliteStorage`` with one change: each database file keeps a small pool
of open connections (a bounded number of files at once: the event log has one file per run), and WAL
commits use ``synchronous=NORMAL`` by default. In WAL mode NORMAL never corrupts the database and loses
nothing when a process crashes or is killed; only a power cut can drop the last few commits. Set
``synchronous: FULL`` in dagster.yaml to fsync every commit as before. Files, schema and layout are
Dagster's own (``history/``, ``history/runs/``, ``schedules/`` under ``base_dir``), so an existing
instance keeps its data and Dagster's tools (``dagster instance migrate``, the UI) work unchanged.

Production runs on PostgreSQL (deploy/dagster.yaml), which this module does not touch.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from dagster import Field, StringSource
from dagster import __version__ as dagster_version
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
# Seconds a writer waits for another process's lock (Dagster's own default for SQLite).
BUSY_TIMEOUT_SECONDS = 30
# Open database files kept per storage: the index, runs and schedules files plus the newest run shards.
MAX_OPEN_FILES = 16
# Beside the run files, not among them: Dagster lists runs by globbing *.db in the event log folder.
TEMPLATE_DIR = ".templates"


class EnginePool:
    """One SQLAlchemy engine (and its connection pool) per SQLite URL, least recently used closed first."""

    def __init__(self, synchronous: str = "NORMAL", max_open: int | None = None):
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"storage config 'synchronous' must be one of {', '.join(SYNCHRONOUS_MODES)}, "
                             f"got {synchronous!r} (dagster.yaml, storage.custom.config)")
        self.synchronous = synchronous
        self.max_open = max_open or MAX_OPEN_FILES
        self._engines: OrderedDict[str, sa.Engine] = OrderedDict()
        self._lock = threading.Lock()

    def engine(self, url: str) -> sa.Engine:
        with self._lock:
            engine = self._engines.get(url)
            if engine is not None:
                self._engines.move_to_end(url)
                return engine
            # Connections are checked out by one thread at a time (the pool guarantees it), but the daemon's
            # and webserver's threads take turns on them, hence check_same_thread=False.
            engine = sa.create_engine(url, pool_size=1, max_overflow=4, pool_pre_ping=False,
                                      connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False})
            sa.event.listen(engine, "connect", self._on_connect)
            self._engines[url] = engine
            while len(self._engines) > self.max_open:
                _, oldest = self._engines.popitem(last=False)
                oldest.dispose()
            return engine

    def _on_connect(self, dbapi_connection, _record) -> None:
        dbapi_connection.execute(f"PRAGMA synchronous={self.synchronous}")

    @contextmanager
    def transaction(self, url: str) -> Iterator[sa.Connection]:
        with self.engine(url).connect() as conn, conn.begin():
            yield conn

    @property
    def open_files(self) -> int:
        return len(self._engines)

    def dispose(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Run-sharded SQLite event log (one file per run plus an index file) on pooled connections.

    Dagster creates each run's file with its schema migrations (alembic check, create tables, stamp): 50-80 ms
    per run, more than the rest of a small run's bookkeeping. Here a new run's file is a copy of a template
    made once by that same procedure (per Dagster version), published without overwriting (another process
    may create the same run's file at the same moment). Existing files are checked the stock way.
    """

    def __init__(self, base_dir: str, inst_data=None, pool: EnginePool | None = None):
        self._pool = pool or EnginePool()
        super().__init__(base_dir, inst_data=inst_data)
        self._template = Path(self._base_dir) / TEMPLATE_DIR / f"run-shard-{dagster_version}.db"

    @contextmanager
    def _connect(self, shard: str) -> Iterator[sa.Connection]:
        # As Dagster's: one statement batch at a time per storage (its watcher threads share it), the run's
        # file created on first use; only the engine is kept instead of built and disposed every time.
        with self._db_lock:
            engine = self._pool.engine(self.conn_string_for_shard(shard))
            if shard not in self._initialized_dbs:
                if shard == INDEX_SHARD_NAME or not self._create_from_template(Path(self.path_for_shard(shard))):
                    self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _create_from_template(self, path: Path) -> bool:
        """A new run's file from the template; False when the file exists already (then Dagster checks it)."""
        if path.exists():
            return False
        if not self._template.exists():
            self._template.parent.mkdir(parents=True, exist_ok=True)
            staging = self._template.with_name(f".{self._template.name}.{os.getpid()}.{uuid.uuid4().hex}")
            engine = sa.create_engine(f"sqlite:///{staging}", poolclass=NullPool)
            try:
                self._initdb(engine)  # Dagster's own schema and alembic stamp, exactly as for a run's file
            finally:
                engine.dispose()
            os.replace(staging, self._template)
        staging = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
        shutil.copyfile(self._template, staging)
        try:
            os.link(staging, path)  # publish without overwriting a file another process just created
        except FileExistsError:
            return False
        finally:
            staging.unlink()
        return True

    def wipe(self) -> None:
        self._pool.dispose()  # wipe deletes the run files: never write through a handle to a deleted file
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self._pool.dispose()


class _PooledConnections:
    """``connect()`` of Dagster's run and schedule storages, on the pool (one file each)."""

    _conn_string: str

    def __init__(self, conn_string: str, inst_data=None):
        super().__init__(conn_string, inst_data)
        self._pool = EnginePool()  # from_local migrates a new database before the owner sets the pool

    def use_pool(self, pool: EnginePool) -> None:
        self._pool.dispose()
        self._pool = pool

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        with self._pool.transaction(self._conn_string) as conn:
            yield conn

    def dispose(self) -> None:
        super().dispose()
        self._pool.dispose()


class PooledSqliteRunStorage(_PooledConnections, SqliteRunStorage):
    pass


class PooledSqliteScheduleStorage(_PooledConnections, SqliteScheduleStorage):
    pass


class PooledSqliteStorage(DagsterSqliteStorage):
    """``storage: custom:`` in dagster.yaml; config ``base_dir`` (as ``storage: sqlite:``) and ``synchronous``."""

    def __init__(self, base_dir: str, synchronous: str = "NORMAL", inst_data=None):
        # Not DagsterSqliteStorage.__init__: it would build the stock storages; the layout is the same.
        self.base_dir = base_dir
        self._inst_data = inst_data
        self._run_storage = PooledSqliteRunStorage.from_local(_runs_directory(base_dir))
        self._run_storage.use_pool(EnginePool(synchronous))
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir),
                                                              pool=EnginePool(synchronous))
        self._schedule_storage = PooledSqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._schedule_storage.use_pool(EnginePool(synchronous))
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def config_type(cls):
        return {"base_dir": StringSource,
                "synchronous": Field(StringSource, is_required=False, default_value="NORMAL",
                                     description="SQLite PRAGMA synchronous for commits: NORMAL or FULL.")}

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledSqliteStorage:
        return cls(inst_data=inst_data, **config_value)

    @classmethod
    def from_local(cls, base_dir: str, inst_data=None, synchronous: str = "NORMAL") -> PooledSqliteStorage:
        os.makedirs(base_dir, exist_ok=True)
        return cls(base_dir, synchronous=synchronous, inst_data=inst_data)
