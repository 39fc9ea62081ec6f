"""Parquet storage for day-partitioned frames, on a local path or any fsspec URL, written atomically.

Layout: log-structured segments. A write of a run of consecutive days (one nightly partition, or a
quarter of a backfill) becomes ONE Parquet file ``<root>/<dataset>/<first>__<last>__<generation>.parquet``
with one row group per day; its file metadata maps days to row groups. The newest segment that covers a
day holds that day: re-running one day writes a one-day segment that shadows the older one, and a
segment shadowed on every day it covers is deleted.

Why segments rather than one file per day: a Parquet file costs about 1.5 ms to write however small,
plus an fsync, so a one-year backfill split into 366 files ran at a tenth of a plain pyarrow write of the
same frame (bench/README.md). One file per run costs what the data costs.

Atomicity: a segment is written to a hidden temporary name, flushed and fsynced, then renamed into place
(on an object store the segment is uploaded once under its final key: the store publishes an object only
when its upload completes, and a failed upload is aborted, which gives the same guarantee). A
reader therefore sees a day's previous segment or its new one, never half of one, and a killed writer
leaves only a hidden temporary file that readers ignore.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alphapulse_assets.atomic_files import atomic_write
from alphapulse_assets.recovery.errors import DataValidationError, ErrorClass, classify
from alphapulse_assets.store_fs import forget_listing, list_names, open_store

NS_PER_DAY = 86_400 * 10**9
_DAYS_KEY = b"alphapulse.days"
# The partition keys a per-key file holds, and when it was written: a later read of some of them finds it.
_KEYS_KEY = b"alphapulse.keys"
_WRITTEN_KEY = b"alphapulse.written_at"


@dataclass(frozen=True, order=True)
class Segment:
    generation: str
    first: date
    last: date
    name: str

    @classmethod
    def parse(cls, name: str) -> Segment | None:
        if name.startswith(".") or not name.endswith(".parquet"):
            return None
        try:
            first, last, generation = name[: -len(".parquet")].split("__")
            return cls(generation, date.fromisoformat(first), date.fromisoformat(last), name)
        except ValueError:
            return None

    def covers(self, day: date) -> bool:
        return self.first <= day <= self.last


def _consecutive_runs(days: Sequence[date]) -> list[list[date]]:
    runs: list[list[date]] = []
    for d in sorted(set(days)):
        if runs and d == runs[-1][-1] + timedelta(days=1):
            runs[-1].append(d)
        else:
            runs.append([d])
    return runs


class ParquetPartitionStore:
    def __init__(self, root: str, *, compression: str = "snappy"):
        self.root = str(root).rstrip("/")
        self.fs, self._root_path, self.is_local = open_store(self.root)
        self.compression = compression

    def _dir(self, dataset: str) -> str:
        return f"{self._root_path}/{dataset}"

    def url(self, dataset: str, partition: str | None = None) -> str:
        """Where a dataset (or the segment holding one of its days) lives, for the UI."""
        base = self._dir(dataset) if self.is_local else f"{self.root}/{dataset}"
        if partition is None:
            return base
        seg = self._newest_covering(self._segments(dataset), date.fromisoformat(partition))
        return f"{base}/{seg.name}" if seg else base

    # -- listing ---------------------------------------------------------------------------------
    def _segments(self, dataset: str) -> list[Segment]:
        directory = self._dir(dataset)
        try:
            names = list_names(self.fs, directory)
        except FileNotFoundError:
            return []
        return sorted(s for s in map(Segment.parse, names) if s is not None)

    @staticmethod
    def _newest_covering(segments: list[Segment], day: date) -> Segment | None:
        for seg in reversed(segments):  # sorted by generation, newest last
            if seg.covers(day):
                return seg
        return None

    def segments(self, dataset: str, *, fresh: bool = False) -> list[Segment]:
        """The dataset's segments, oldest generation first: one listing. A segment is never rewritten (a new
        write is a new name), so the names holding some days identify their content. ``fresh`` drops a cached
        listing first (remote filesystems cache them), for a long-lived reader that must see new writes."""
        if fresh:
            self.fs.invalidate_cache(self._dir(dataset))
        return self._segments(dataset)

    @staticmethod
    def days_in(segments: list[Segment]) -> list[str]:
        """Every day the segments hold, sorted."""
        days: set[date] = set()
        for seg in segments:
            days.update(seg.first + timedelta(days=i) for i in range((seg.last - seg.first).days + 1))
        return [str(d) for d in sorted(days)]

    @classmethod
    def holder(cls, segments: list[Segment], day: str) -> str | None:
        """The name of the segment that holds ``day`` now (the newest covering it), or None."""
        seg = cls._newest_covering(segments, date.fromisoformat(day))
        return seg.name if seg else None

    def exists(self, dataset: str, partition: str) -> bool:
        return self._newest_covering(self._segments(dataset), date.fromisoformat(partition)) is not None

    def missing_days(self, dataset: str, days: Iterable[str]) -> list[str]:
        """Which of ``days`` have not been written, in the order given: one listing however many days (a
        listing per day made a window of 550 days cost 550 requests to an object store)."""
        segments = self._segments(dataset)
        return [d for d in days if self._newest_covering(segments, date.fromisoformat(d)) is None]

    def list_partitions(self, dataset: str) -> list[str]:
        return self.days_in(self._segments(dataset))

    # -- writing ---------------------------------------------------------------------------------
    def write_days(self, dataset: str, table: pa.Table, days: Iterable[str]) -> dict[str, int]:
        """Write ``table`` as the content of ``days`` (UTC days of its ``timestamp`` column).

        Days with no rows become empty partitions; rows outside ``days`` raise, since they would be
        lost silently. Consecutive days go into one segment. Returns rows written per day.
        """
        wanted = [date.fromisoformat(d) for d in days]
        if not wanted:
            raise DataValidationError("no partitions to write", where=self.url(dataset))
        ts = table.column("timestamp").cast(pa.int64()).to_numpy() if table.num_rows else np.empty(0, "int64")
        day_index = ts // NS_PER_DAY
        wanted_index = np.array([np.datetime64(d, "D").astype("int64") for d in wanted])
        outside = np.setdiff1d(np.unique(day_index), wanted_index)
        if outside.size:
            first = str(np.datetime64(int(outside[0]), "D"))
            raise DataValidationError(
                f"{outside.size} day(s) of rows fall outside the partitions being written (first {first})",
                where=self.url(dataset),
            )
        order = np.argsort(day_index, kind="stable")  # keeps symbol/time order inside each day
        table = table.take(pa.array(order)) if not np.all(order[:-1] < order[1:]) else table
        sorted_days = day_index[order]
        counts: dict[str, int] = {}
        written: list[Segment] = []
        for run in _consecutive_runs(wanted):
            slices = []
            for d in run:
                key = np.datetime64(d, "D").astype("int64")
                lo, hi = np.searchsorted(sorted_days, [key, key + 1])
                slices.append((d, int(lo), int(hi - lo)))
                counts[str(d)] = int(hi - lo)
            written.append(self._write_segment(dataset, table, run[0], run[-1], slices))
        self._collect_garbage(dataset)
        return counts

    def _write_segment(
        self, dataset: str, table: pa.Table, first: date, last: date, slices: list[tuple[date, int, int]]
    ) -> Segment:
        generation = f"{time.time_ns():020d}{uuid.uuid4().hex[:8]}"
        name = f"{first}__{last}__{generation}.parquet"
        target = f"{self._dir(dataset)}/{name}"
        nonempty = [(d, lo, n) for d, lo, n in slices if n]
        schema = table.schema.with_metadata(
            {**(table.schema.metadata or {}), _DAYS_KEY: json.dumps([str(d) for d, _, _ in nonempty]).encode()}
        )
        atomic_write(
            self.fs,
            self.is_local,
            target,
            lambda fh: self._write_row_groups(fh, schema, table, nonempty),
            what=f"{dataset} {first}..{last}",
        )
        return Segment(generation, first, last, name)

    # -- one file per key (weekly / monthly partitions, training sets) -------------------------------
    def write_key(self, dataset: str, key: str, table: pa.Table, *, holds: Sequence[str] = ()) -> str:
        """Write ``table`` as the whole content of partition ``key``, atomically; returns its path. ``holds``: the
        partition keys it holds when ``key`` names several (kept in its metadata for ``read_covering``)."""
        safe = key.replace("/", "_")
        target = f"{self._dir(dataset)}/by_key/{safe}.parquet"
        table = table.replace_schema_metadata(
            {
                **(table.schema.metadata or {}),
                _KEYS_KEY: json.dumps(list(holds or [key])).encode(),
                _WRITTEN_KEY: str(time.time()).encode(),
            }
        )
        atomic_write(
            self.fs,
            self.is_local,
            target,
            lambda fh: pq.write_table(table, fh, compression=self.compression),
            what=f"{dataset} {key}",
        )
        return target

    def read_key(self, dataset: str, key: str) -> pd.DataFrame:
        path = f"{self._dir(dataset)}/by_key/{key.replace('/', '_')}.parquet"
        try:
            forget_listing(self.fs, path)  # written by another process, maybe after this one listed the folder
            with self.fs.open(path, "rb") as fh:
                return pq.read_table(fh).to_pandas()
        except FileNotFoundError as exc:
            raise DataValidationError(f"partition {key} of {dataset} has not been written", where=path) from exc
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataValidationError(f"partition {key} of {dataset} is unreadable: {exc}", where=path) from exc

    def read_covering(self, dataset: str, keys: Sequence[str], prefix: str) -> tuple[pd.DataFrame, list[str]] | None:
        """The newest per-key file whose name starts with ``prefix`` and that holds every one of ``keys`` (a run
        over some of the partitions another run wrote together), with the keys it holds; None if there is none.
        Only the files' footers are read to choose."""
        directory = f"{self._dir(dataset)}/by_key"
        try:
            names = [n for n in list_names(self.fs, directory) if n.startswith(prefix) and n.endswith(".parquet")]
        except FileNotFoundError:
            return None
        wanted, best = set(keys), None
        for name in names:
            path = f"{directory}/{name}"
            try:
                with self.fs.open(path, "rb") as fh:
                    meta = pq.read_schema(fh).metadata or {}
            except (FileNotFoundError, pa.ArrowInvalid, OSError):  # replaced or removed meanwhile: not a candidate
                continue
            held = json.loads(meta.get(_KEYS_KEY, b"[]"))
            written = float(meta.get(_WRITTEN_KEY, b"0"))
            if wanted <= set(held) and (best is None or written > best[0]):
                best = (written, path, held)
        if best is None:
            return None
        with self.fs.open(best[1], "rb") as fh:
            return pq.read_table(fh).to_pandas(), best[2]

    def _write_row_groups(self, fh, schema: pa.Schema, table: pa.Table, nonempty) -> None:
        with pq.ParquetWriter(fh, schema, compression=self.compression) as writer:
            for _, lo, n in nonempty:  # one row group per day, so a one-day read touches one group
                writer.write_table(table.slice(lo, n).replace_schema_metadata(schema.metadata), row_group_size=n)

    def _collect_garbage(self, dataset: str) -> None:
        """Delete segments that a newer segment shadows on every day they cover."""
        segments = self._segments(dataset)
        for i, seg in enumerate(segments):
            newer = segments[i + 1 :]
            day, shadowed = seg.first, True
            while day <= seg.last and shadowed:
                shadowed = any(n.covers(day) for n in newer)
                day += timedelta(days=1)
            if shadowed and newer:
                try:
                    self.fs.rm(f"{self._dir(dataset)}/{seg.name}")
                except FileNotFoundError:
                    pass  # another writer collected it first

    # -- reading ---------------------------------------------------------------------------------
    def read_days(self, dataset: str, days: Iterable[str], *, _retry: bool = True) -> pd.DataFrame:
        """The rows of ``days`` as one frame sorted by symbol and time. Unwritten days raise."""
        wanted = [date.fromisoformat(d) for d in days]
        if not wanted:
            raise DataValidationError("no partitions requested", where=self.url(dataset))
        segments = self._segments(dataset)
        by_segment: dict[Segment, list[date]] = {}
        for d in wanted:
            seg = self._newest_covering(segments, d)
            if seg is None:
                raise DataValidationError(f"partition {d} of {dataset} has not been written", where=self.url(dataset))
            by_segment.setdefault(seg, []).append(d)
        tables = []
        for seg, seg_days in by_segment.items():
            try:
                tables.append(self._read_segment(dataset, seg, seg_days))
            except FileNotFoundError:
                if not _retry:
                    raise
                # A concurrent writer shadowed and collected this segment after we listed: list again.
                return self.read_days(dataset, [str(d) for d in wanted], _retry=False)
        table = pa.concat_tables(tables, promote_options="default")
        frame = table.to_pandas()
        if "symbol" in frame.columns:
            frame["symbol"] = frame["symbol"].astype(object)
            sort = ["symbol", "timestamp"] if "timestamp" in frame.columns else ["symbol"]
            frame = frame.sort_values(sort, kind="stable").reset_index(drop=True)
        return frame

    def _read_segment(self, dataset: str, seg: Segment, days: list[date]) -> pa.Table:
        path = f"{self._dir(dataset)}/{seg.name}"
        try:
            with self.fs.open(path, "rb") as fh:
                pf = pq.ParquetFile(fh)
                stored = json.loads((pf.schema_arrow.metadata or {}).get(_DAYS_KEY, b"[]"))
                groups = [stored.index(str(d)) for d in days if str(d) in stored]
                table = pf.read_row_groups(groups) if groups else pf.schema_arrow.empty_table()
        except FileNotFoundError:
            raise
        except (pa.ArrowInvalid, OSError, ValueError, json.JSONDecodeError) as exc:
            if isinstance(exc, OSError) and classify(exc).error_class is ErrorClass.SYSTEM:
                raise
            raise DataValidationError(f"segment {seg.name} of {dataset} is unreadable: {exc}", where=path) from exc
        return table.replace_schema_metadata({k: v for k, v in (table.schema.metadata or {}).items() if k != _DAYS_KEY})
