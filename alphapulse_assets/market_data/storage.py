"""Parquet storage for day-partitioned frames, on a local path or any fsspec URL, written atomically.

Layout: ``<root>/<dataset>/<YYYY-MM-DD>.parquet``, one file per day partition, rows sorted by symbol and
time. A write goes to a hidden temporary file beside the target and is renamed over it only when the
file is complete and flushed, so a reader sees the previous file or the new one, never half of one
(object stores commit an object only when its upload completes, which gives the same guarantee).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import date

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alphapulse_assets.recovery.errors import DataValidationError, SystemResourceError, classify, ErrorClass

NS_PER_DAY = 86_400 * 10**9


class ParquetPartitionStore:
    def __init__(self, root: str, *, compression: str = "snappy"):
        self.root = str(root).rstrip("/")
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root)
        self.is_local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.compression = compression

    def path(self, dataset: str, partition: str) -> str:
        return f"{self._root_path}/{dataset}/{partition}.parquet"

    def url(self, dataset: str, partition: str) -> str:
        return self.path(dataset, partition) if self.is_local else f"{self.root}/{dataset}/{partition}.parquet"

    def exists(self, dataset: str, partition: str) -> bool:
        return self.fs.exists(self.path(dataset, partition))

    # -- writing ---------------------------------------------------------------------------------
    def write_table(self, dataset: str, partition: str, table: pa.Table) -> str:
        target = self.path(dataset, partition)
        try:
            if self.is_local:
                directory = os.path.dirname(target)
                os.makedirs(directory, exist_ok=True)
                tmp = os.path.join(directory, f".{partition}.{uuid.uuid4().hex}.tmp")
                try:
                    with open(tmp, "wb") as fh:
                        pq.write_table(table, fh, compression=self.compression)
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.replace(tmp, target)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
            else:
                self.fs.makedirs(os.path.dirname(target), exist_ok=True)
                with self.fs.open(target, "wb") as fh:
                    pq.write_table(table, fh, compression=self.compression)
        except OSError as exc:
            if classify(exc).error_class is ErrorClass.SYSTEM:
                raise SystemResourceError(f"cannot write partition {partition}: {exc}", where=target) from exc
            raise
        return target

    def write_days(self, dataset: str, table: pa.Table, days: Iterable[str]) -> dict[str, int]:
        """Split ``table`` by the UTC day of its ``timestamp`` and write one file per day in ``days``.

        Days with no rows get an empty file (the partition exists and is empty); rows outside ``days``
        raise, since they would be silently lost. Returns rows written per day.
        """
        days = list(days)
        ts = table.column("timestamp").cast(pa.int64()).to_numpy()
        day_index = ts // NS_PER_DAY
        wanted = {np.datetime64(d, "D").astype("int64"): d for d in days}
        unknown = np.setdiff1d(np.unique(day_index), np.fromiter(wanted, dtype="int64", count=len(wanted)))
        if unknown.size:
            first = str(np.datetime64(int(unknown[0]), "D"))
            raise DataValidationError(
                f"{unknown.size} day(s) of rows fall outside the partitions being written (first {first})",
                where=f"{self.root}/{dataset}",
            )
        order = np.argsort(day_index, kind="stable")  # keeps symbol/time order inside each day
        sorted_days = day_index[order]
        table = table.take(pa.array(order))
        counts: dict[str, int] = {}
        for key, name in sorted(wanted.items()):
            lo, hi = np.searchsorted(sorted_days, [key, key + 1])
            self.write_table(dataset, name, table.slice(lo, hi - lo))
            counts[name] = int(hi - lo)
        return counts

    # -- reading ---------------------------------------------------------------------------------
    def read_table(self, dataset: str, partition: str) -> pa.Table:
        path = self.path(dataset, partition)
        try:
            with self.fs.open(path, "rb") as fh:
                return pq.read_table(fh)
        except FileNotFoundError as exc:
            raise DataValidationError(f"partition {partition} of {dataset} has not been written", where=path) from exc
        except (pa.ArrowInvalid, OSError) as exc:
            if isinstance(exc, OSError) and classify(exc).error_class is ErrorClass.SYSTEM:
                raise
            raise DataValidationError(f"partition {partition} of {dataset} is unreadable: {exc}", where=path) from exc

    def read_days(self, dataset: str, days: Iterable[str]) -> pd.DataFrame:
        tables = [self.read_table(dataset, d) for d in days]
        if not tables:
            raise DataValidationError("no partitions requested", where=f"{self.root}/{dataset}")
        table = pa.concat_tables(tables, promote_options="default")
        frame = table.to_pandas()
        if "symbol" in frame.columns:
            frame["symbol"] = frame["symbol"].astype(object)
            frame = frame.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
        return frame

    def list_partitions(self, dataset: str) -> Iterator[str]:
        base = f"{self._root_path}/{dataset}"
        if not self.fs.exists(base):
            return iter(())
        names = sorted(os.path.basename(p) for p in self.fs.ls(base, detail=False))
        return (n[: -len(".parquet")] for n in names if n.endswith(".parquet") and not n.startswith("."))


def day_keys(start: date, end_inclusive: date) -> list[str]:
    return [str(d) for d in pd.date_range(start, end_inclusive, freq="D").date]
