"""Reading a CSV file or a Parquet row group into normalised candles split by symbol; Parquet row-group pruning."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alphapulse_assets.market_data.schema import (
    COLUMN_ALIASES,
    epoch_ns,
    normalize_candles,
)
from alphapulse_assets.market_data.sources.files.catalogue import (
    NAME_PERIOD_SLACK,
    DataFile,
    Window,
)
from alphapulse_assets.market_data.sources.files.sniffing import (
    CsvFormat,
    peek,
    read_failure,
)
from alphapulse_assets.recovery.errors import (
    DataValidationError,
)


@dataclass
class Parsed:
    """One file (or Parquet row group), normalised and split by symbol, sorted by time."""

    frames: dict[str, pd.DataFrame]
    times: dict[str, np.ndarray]  # int64 ns, for binary search of the window
    spacing: dict[str, pd.Timedelta | None]  # median spacing of distinct times, per symbol

    def nbytes(self) -> int:
        return int(sum(f.memory_usage(deep=True).sum() for f in self.frames.values())) + 256


# What pandas calls an index column it wrote without a name: "Unnamed: 0" in a CSV, "index" or
# "__index_level_0__" in Parquet (after reset_index).
_UNNAMED_INDEX = re.compile(r"^(unnamed: ?0|index|level_0|__index_level_0__)$")


def _index_as_timestamp(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """A frame written by pandas with its index (``df.to_csv(path)``) has the bar times in an unnamed first
    column when the DatetimeIndex had no name: use it as the time column when no column is named as one.
    An unnamed column of row numbers (a RangeIndex: 0, 1, 2, ...) is never taken as time."""
    if not isinstance(frame.index, pd.RangeIndex):  # Parquet written by pandas restores its index
        frame = frame.reset_index()
    names = [str(c).strip().strip("<>").strip().lower() for c in frame.columns]
    if not len(frame.columns) or set(names) & set(COLUMN_ALIASES["timestamp"]):
        return frame
    first = frame.columns[0]
    if not _UNNAMED_INDEX.match(names[0]):
        return frame  # normalize_candles names the missing time column
    values = frame[first]
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = pd.to_numeric(values, errors="coerce")
        if (
            len(numbers)
            and numbers.notna().all()
            and (numbers.diff().iloc[1:] == 1).all()
            and numbers.iloc[0] in (0, 1)
        ):
            raise DataValidationError(
                f"no time column: the first column has no name and holds row numbers "
                f"({int(numbers.iloc[0])}, {int(numbers.iloc[0]) + 1}, ...), as pandas writes a RangeIndex, not bar "
                f"times; found columns {[str(c) for c in frame.columns]}. Name the time column 'timestamp' "
                f"(e.g. df.to_csv(path, index_label='timestamp') from a DatetimeIndex)",
                where=where,
            )
    return frame.rename(columns={first: "timestamp"})


def _prepare_columns(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """The time column of a pandas-written file (``_index_as_timestamp``); MetaTrader's '<DATE>' and '<TIME>'
    columns joined into one timestamp."""
    frame = _index_as_timestamp(frame, where)
    names = {str(c).strip().strip("<>").strip().lower(): c for c in frame.columns}
    other_time = set(COLUMN_ALIASES["timestamp"]) - {"date", "time"}
    if "date" in names and "time" in names and not other_time & names.keys():
        date_col, time_col = names["date"], names["time"]
        stamp = frame[date_col].astype("string").str.strip() + " " + frame[time_col].astype("string").str.strip()
        frame = frame.drop(columns=[date_col, time_col]).assign(timestamp=stamp)
    return frame


def _split_by_symbol(candles: pd.DataFrame) -> Parsed:
    frames: dict[str, pd.DataFrame] = {}
    times: dict[str, np.ndarray] = {}
    spacing: dict[str, pd.Timedelta | None] = {}
    for symbol, group in candles.groupby("symbol", sort=False):
        group = group.reset_index(drop=True)  # normalize_candles sorted it by (symbol, time), stably
        ns = epoch_ns(group["timestamp"])
        frames[str(symbol)] = group
        times[str(symbol)] = ns
        steps = np.diff(np.unique(ns))
        spacing[str(symbol)] = pd.Timedelta(int(np.median(steps)), unit="ns") if len(steps) >= 2 else None
    return Parsed(frames, times, spacing)


def parse_csv(data_file: DataFile, source_timezone: str | None) -> Parsed:
    path = data_file.path
    fmt = peek(data_file)
    assert isinstance(fmt, CsvFormat)
    try:
        with warnings.catch_warnings():
            # Rows longer than the header would otherwise be cut silently (or shift into an index).
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                index_col=False,
                sep=fmt.delimiter,
                header=None if fmt.names else 0,
                names=list(fmt.names) if fmt.names else None,
                skipinitialspace=True,
                compression="infer",
                encoding="utf-8-sig",
            )
    except Exception as exc:
        raise read_failure(path, exc) from exc
    if frame.empty:
        raise DataValidationError("the file is empty: it has a header row but no data rows", where=str(path))
    frame = _prepare_columns(frame, str(path))
    candles = normalize_candles(
        frame,
        where=str(path),
        symbol=data_file.symbol,
        source_timezone=source_timezone,
        line_offset=1 if fmt.names else 2,
    )
    return _split_by_symbol(candles)


def _stat_to_utc(value: object, arrow_type: pa.DataType) -> pd.Timestamp | None:
    """A Parquet min/max statistic of the timestamp column as a UTC time, or None if it cannot be read."""
    if value is None:
        return None
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        ts = pd.Timestamp(value)
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if pa.types.is_integer(arrow_type):
        v = abs(int(value))
        unit = "s" if v < 1e11 else "ms" if v < 1e14 else "us" if v < 1e17 else "ns"
        return pd.Timestamp(int(value), unit=unit, tz="UTC")
    return None


def row_groups_for(path: Path, window: Window | None) -> tuple[pq.ParquetFile, list[int]]:
    """The row groups whose timestamp statistics overlap the window (all of them when unknown)."""
    pf = pq.ParquetFile(path)
    meta, schema = pf.metadata, pf.schema_arrow
    if meta.num_rows == 0:
        raise DataValidationError("the file is empty: the Parquet file has no rows", where=str(path))
    groups = list(range(meta.num_row_groups))
    lowered = {n.strip().lower(): n for n in schema.names}
    column = next((lowered[a] for a in COLUMN_ALIASES["timestamp"] if a in lowered), None)
    if window is None or column is None:
        return pf, groups  # normalize_candles will name a missing column
    arrow_type = schema.field(column).type
    paths = [meta.row_group(0).column(i).path_in_schema for i in range(meta.num_columns)] if groups else []
    if column not in paths:
        return pf, groups
    leaf = paths.index(column)
    keep = []
    # Epoch numbers and zoned timestamps are UTC already; naive ones may be local time, hence the slack.
    zoned = pa.types.is_integer(arrow_type) or (pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None)
    slack = pd.Timedelta(0) if zoned else NAME_PERIOD_SLACK
    lo, hi = window[0] - slack, window[1] + slack
    for g in groups:
        stats = meta.row_group(g).column(leaf).statistics
        if stats is None or not stats.has_min_max:
            keep.append(g)
            continue
        first, last = _stat_to_utc(stats.min, arrow_type), _stat_to_utc(stats.max, arrow_type)
        if first is None or last is None or (first < hi and last >= lo):
            keep.append(g)
    return pf, keep


def parse_parquet_group(data_file: DataFile, pf: pq.ParquetFile, group: int, source_timezone: str | None) -> Parsed:
    path = data_file.path
    where = str(path) if pf.metadata.num_row_groups == 1 else f"{path} (row group {group})"
    try:
        frame = pf.read_row_group(group).to_pandas()
    except Exception as exc:
        raise read_failure(path, exc) from exc
    frame = _prepare_columns(frame, where)
    candles = normalize_candles(frame, where=where, symbol=data_file.symbol, source_timezone=source_timezone)
    return _split_by_symbol(candles)


def timeframe_label(step: pd.Timedelta) -> str:
    """A bar size as ALPHAPULSE_BASE_TIMEFRAME spells it, or a plain duration when it has no such name."""
    for unit, size in (
        ("w", pd.Timedelta(weeks=1)),
        ("d", pd.Timedelta(days=1)),
        ("h", pd.Timedelta(hours=1)),
        ("m", pd.Timedelta(minutes=1)),
    ):
        if step >= size and step % size == pd.Timedelta(0):
            return f"{step // size}{unit}"
    return str(step)
