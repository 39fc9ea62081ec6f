"""The ``files`` source: candles from a folder of CSV or Parquet files, any market, any bar size.

Point ``ALPHAPULSE_FILES_DIR`` at a folder laid out in one of these ways (they may be mixed):

1. One file per symbol, named after it::

       <root>/BTCUSDT.csv        (also .csv.gz, .csv.zip, .zip, .parquet)
       <root>/EURUSD.parquet

2. One folder per symbol holding many files, for example one per month as Binance's public data dumps
   (data.binance.vision) are laid out. Sub-folders are searched too, so a mirrored
   ``BTCUSDT/15m/BTCUSDT-15m-2024-01.zip`` tree works as it is::

       <root>/BTCUSDT/BTCUSDT-15m-2024-01.csv
       <root>/BTCUSDT/BTCUSDT-15m-2024-02.zip
       <root>/ETHUSDT/2024-01.parquet

   Top-level files named like Binance's, ``<SYMBOL>-<bar size>-<YYYY-MM[-DD]>.<ext>``, are grouped under
   that symbol as well.

3. Files with a ``symbol`` column (also ``ticker``, ``pair``, ``instrument``, ``asset``) holding several
   symbols, e.g. ``<root>/candles.csv``. A top-level file with such a column is read as this layout
   whatever its name.

File names are upper-cased to give the symbol (``btcusdt.csv`` serves ``BTCUSDT``). A file whose name
ends in a date (``...-2024-01``, ``...-2024-01-31``, ``..._2024``) is taken to hold only that month, day
or year (UTC, give or take a day); files whose period cannot overlap the window are not opened. Parquet
files are also skipped row group by row group from their timestamp statistics. A bar-size token in a
name (``-15m-``, ``/1h/``) selects the files of the configured bar size when several are present.

Columns and timestamp formats are those :func:`~alphapulse_assets.market_data.schema.normalize_candles`
accepts, which covers the exports people actually have:

- Binance kline dumps, with or without a header (12 numeric columns; open time in ms, or in µs as the
  2025+ spot dumps use);
- Yahoo Finance CSV (``Date,Open,High,Low,Close,Adj Close,Volume``; ``Adj Close`` is ignored);
- Dukascopy / MetaTrader exports (``Gmt time`` as ``01.01.2024 00:00:00.000``, day first; ``Local time``
  with ``GMT+0200``; MetaTrader 5's tab-separated ``<DATE> <TIME> <OPEN> ...`` with separate date and time
  columns; MetaTrader 4's header-less ``2024.01.02,00:00,open,high,low,close,volume``);
- TradingView exports (``time`` as unix seconds, or ISO strings);
- ISO 8601 strings with or without an offset (``2024-01-01T00:00:00+02:00``), ``,``/``;``/tab/``|``
  separators.

Timestamps without an offset are read in ``source_timezone`` (UTC when not given); strings with an offset
and epoch numbers are already unambiguous and ignore it. Times are bar OPEN times.

Errors are classified (``alphapulse_assets.recovery.errors``) and name the file and, where it applies,
the row and line: no file for a symbol raises ``UnknownSymbolError`` listing the symbols that exist; an
empty file, missing columns, text in a price column, unparseable timestamps, local times that do not
exist in ``source_timezone``, an unknown zone name and files holding another bar size than the
configured one raise ``DataValidationError``. Duplicated timestamps are NOT rejected here: they are
passed through unchanged so that the data-quality check reports them with the rest.

Parsed files are cached in-process, keyed by (path, modification time, size, time zone) and bounded in
memory, so daily partitions do not re-read a month file, or a whole folder, once per day.
"""

from __future__ import annotations

import gzip
import os
import re
import threading
import warnings
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alphapulse_assets.market_data.schema import (
    COLUMN_ALIASES,
    NUMERIC_COLUMNS,
    check_timezone,
    empty_candles,
    epoch_ns,
    normalize_candles,
    timeframe_to_timedelta,
)
from alphapulse_assets.market_data.sources.base import CandleSource
from alphapulse_assets.recovery.errors import (
    AlphaPulseError,
    DataValidationError,
    PermanentError,
    TransientError,
    UnknownSymbolError,
)

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.zip", ".zip")
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Written by :func:`export_sample` so that anyone looking at the folder knows the data is invented.
SYNTHETIC_MARKER = "SAMPLE_DATA_IS_SYNTHETIC.txt"

# Column names of Binance kline dumps, which come without a header row.
BINANCE_KLINE_COLUMNS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time",
    "quote_volume", "trades", "taker_buy_base_volume", "taker_buy_quote_volume", "ignore",
)
HEADERLESS_OHLCV_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
# MetaTrader 4 history exports: 2024.01.02,00:00,open,high,low,close,volume.
HEADERLESS_DATE_TIME_COLUMNS = ("date", "time", "open", "high", "low", "close", "volume")
_DATE_OR_TIME = re.compile(r"^\d{1,4}[-./:]\d{1,2}")

# Files whose name says when they start are trusted to hold that period only, give or take this much
# (a local-time month starts up to 14 hours away from the UTC one).
_NAME_PERIOD_SLACK = pd.Timedelta(days=1)
_DATE_IN_NAME = re.compile(r"(?:^|[-_ ])(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_TIMEFRAME_IN_NAME = re.compile(r"(?:^|[-_])(\d+[smhdw])(?=[-_]|$)")
# <SYMBOL>[-<bar size>][-<YYYY[-MM[-DD]]>] at the top level: the symbol is what comes first.
_TOP_LEVEL_NAME = re.compile(
    r"^(?P<symbol>[A-Za-z0-9_.^=]+?)(?:[-_](?P<tf>\d+[smhdw]))?(?:[-_](?:19|20)\d{2}(?:-\d{2}(?:-\d{2})?)?)?$"
)
_DEFAULT_CACHE_BYTES = 512 * 2**20


# --------------------------------------------------------------------------------------------- cache


_Window = tuple[pd.Timestamp, pd.Timestamp]


class _BoundedCache:
    """A thread-safe LRU bounded by the memory of what it holds."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> object | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: tuple, value: object, nbytes: int) -> None:
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if nbytes > self.max_bytes:
                return  # larger than the whole budget: serve it once, keep nothing
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    def info(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._items), "bytes": self._bytes, "hits": self.hits, "misses": self.misses,
                    "max_bytes": self.max_bytes}


_PARSED = _BoundedCache(_DEFAULT_CACHE_BYTES)  # normalised frames per file (or Parquet row group)
_PEEKED = _BoundedCache(8 * 2**20)  # header sniffing results per file, about 1 kB each


def cache_info() -> dict[str, int]:
    """Entries, bytes, hits and misses of the in-process cache of parsed files."""
    return _PARSED.info()


def clear_cache() -> None:
    """Forget every parsed file (tests; or after rewriting files in place within the same second)."""
    _PARSED.clear()
    _PEEKED.clear()


# ------------------------------------------------------------------------------------ the catalogue


@dataclass(frozen=True)
class _DataFile:
    path: Path
    symbol: str | None  # None: a shared file whose rows name their symbol
    period: tuple[pd.Timestamp, pd.Timestamp] | None  # [start, end) from the name, if it has a date
    timeframe: str | None  # bar size from the name or folder, if any

    def key(self) -> tuple:
        st = self.path.stat()
        return (str(self.path), st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class _CsvFormat:
    delimiter: str
    names: tuple[str, ...] | None  # column names to impose on a file without a header row
    columns: tuple[str, ...]  # lower-cased column names as read

    @property
    def has_symbol_column(self) -> bool:
        return any(c in COLUMN_ALIASES["symbol"] for c in self.columns)


@dataclass
class _Parsed:
    """One file (or Parquet row group), normalised and split by symbol, sorted by time."""

    frames: dict[str, pd.DataFrame]
    times: dict[str, np.ndarray]  # int64 ns, for binary search of the window
    spacing: dict[str, pd.Timedelta | None]  # median spacing of distinct times, per symbol

    def nbytes(self) -> int:
        return int(sum(f.memory_usage(deep=True).sum() for f in self.frames.values())) + 256


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in (*PARQUET_SUFFIXES, *CSV_SUFFIXES):
        if name.endswith(suffix):
            return suffix
    return None


def _stem(path: Path) -> str:
    suffix = _suffix(path) or ""
    return path.name[: len(path.name) - len(suffix)]


def _period_from_name(stem: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    m = _DATE_IN_NAME.search(stem)
    if not m:
        return None
    year, month, day = int(m.group(1)), m.group(2), m.group(3)
    if not 1970 <= year <= 2100:
        return None
    try:
        if day is not None:
            first = pd.Timestamp(year=year, month=int(month), day=int(day), tz="UTC")
            return first, first + pd.Timedelta(days=1)
        if month is not None:
            first = pd.Timestamp(year=year, month=int(month), day=1, tz="UTC")
            return first, first + pd.offsets.MonthBegin(1)
    except ValueError:
        return None
    first = pd.Timestamp(year=year, month=1, day=1, tz="UTC")
    return first, pd.Timestamp(year=year + 1, month=1, day=1, tz="UTC")


def _timeframe_from_parts(parts: Iterable[str]) -> str | None:
    for part in parts:
        m = _TIMEFRAME_IN_NAME.search(part)
        if m:
            return m.group(1)
    return None


def _symbol_from_top_level_name(stem: str) -> tuple[str, str | None]:
    """'BTCUSDT' -> ('BTCUSDT', None); 'BTCUSDT-15m-2024-01' -> ('BTCUSDT', '15m'); 'BRK-B' -> ('BRK-B', None)."""
    m = _TOP_LEVEL_NAME.match(stem)
    if m:
        return m.group("symbol").upper(), m.group("tf")
    return stem.upper(), None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_line(path: Path) -> str:
    """The first non-blank line of a (possibly gzip- or zip-compressed) text file; '' if there is none."""
    name = path.name.lower()
    with ExitStack() as stack:
        if name.endswith(".gz"):
            raw = stack.enter_context(gzip.open(path, "rb"))
        elif name.endswith(".zip"):
            archive = stack.enter_context(zipfile.ZipFile(path))
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if len(members) != 1:
                raise DataValidationError(
                    f"a .zip must hold exactly one CSV file, this one holds {len(members)}", where=str(path)
                )
            raw = stack.enter_context(archive.open(members[0]))
        else:
            raw = stack.enter_context(open(path, "rb"))
        for chunk in raw:
            line = chunk.decode("utf-8-sig", errors="replace").strip()
            if line:
                return line
    return ""


def _sniff_csv(path: Path) -> _CsvFormat:
    line = _first_line(path)
    if not line:
        raise DataValidationError("the file is empty: no header and no rows", where=str(path))
    delimiter = max((",", ";", "\t", "|"), key=line.count)
    fields = [f.strip().strip('"') for f in line.split(delimiter)]
    leading = 0  # date / time fields before the numbers
    while leading < min(2, len(fields)) and not _is_number(fields[leading]) and _DATE_OR_TIME.match(fields[leading]):
        leading += 1
    numbers = fields[leading:]
    if len(numbers) >= 4 and all(_is_number(f) for f in numbers if f):
        if leading == 0 and len(fields) == len(BINANCE_KLINE_COLUMNS):
            names = BINANCE_KLINE_COLUMNS
        elif leading < 2 and len(fields) == len(HEADERLESS_OHLCV_COLUMNS):
            names = HEADERLESS_OHLCV_COLUMNS
        elif leading == 2 and len(fields) == len(HEADERLESS_DATE_TIME_COLUMNS):
            names = HEADERLESS_DATE_TIME_COLUMNS
        elif leading:
            raise DataValidationError(
                f"the first line {line[:80]!r} looks like data, not column names: add a header row such as "
                f"'timestamp,open,high,low,close,volume'",
                where=str(path),
            )
        else:
            raise DataValidationError(
                f"the first line holds {len(fields)} numbers and no column names, so the columns cannot be told "
                f"apart: add a header row such as 'timestamp,open,high,low,close,volume' (only Binance kline dumps "
                f"with 12 columns and 6-column timestamp,open,high,low,close,volume files may come without one)",
                where=str(path),
            )
        return _CsvFormat(delimiter, names, names)
    return _CsvFormat(delimiter, None, tuple(f.strip("<>").strip().lower() for f in fields))


def _read_failure(path: Path, exc: BaseException) -> Exception:
    """Turn a reader's exception into a classified one that names the file."""
    if isinstance(exc, (DataValidationError, PermanentError, TransientError)):
        return exc
    if isinstance(exc, PermissionError):
        return PermanentError(f"permission denied reading the file ({exc.strerror})", where=str(path))
    if isinstance(exc, FileNotFoundError):
        return TransientError("the file disappeared while it was being read (is it being rewritten?)", where=str(path))
    if isinstance(exc, UnicodeDecodeError):
        return DataValidationError(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", where=str(path))
    if isinstance(exc, pd.errors.ParserWarning):
        return DataValidationError(
            "the rows have more fields than the header has column names: check the header row and the separator",
            where=str(path),
        )
    if isinstance(exc, (zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error)):
        return DataValidationError(f"corrupt or truncated compressed file ({exc})", where=str(path))
    if isinstance(exc, pa.ArrowException):
        return DataValidationError(f"not a readable Parquet file ({exc})", where=str(path))
    if isinstance(exc, (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError)):
        return DataValidationError(f"cannot read the CSV ({str(exc).strip()})", where=str(path))
    if isinstance(exc, OSError):
        return exc  # classify() decides by errno (disk errors, network file systems)
    return DataValidationError(f"cannot read the file ({type(exc).__name__}: {exc})", where=str(path))


def _peek(data_file: _DataFile) -> _CsvFormat | pa.Schema:
    key = ("peek", *data_file.key())
    found = _PEEKED.get(key)
    if found is not None:
        return found  # type: ignore[return-value]
    try:
        if _suffix(data_file.path) in PARQUET_SUFFIXES:
            result: _CsvFormat | pa.Schema = pq.read_schema(data_file.path)
        else:
            result = _sniff_csv(data_file.path)
    except Exception as exc:
        raise _read_failure(data_file.path, exc) from exc
    _PEEKED.put(key, result, 1024)
    return result


def _has_symbol_column(data_file: _DataFile) -> bool:
    info = _peek(data_file)
    if isinstance(info, pa.Schema):
        return any(n.strip().lower() in COLUMN_ALIASES["symbol"] for n in info.names)
    return info.has_symbol_column


@dataclass
class _Catalogue:
    by_symbol: dict[str, list[_DataFile]]
    shared: list[_DataFile]


def _visible(entry: os.DirEntry) -> bool:
    return not entry.name.startswith((".", "_", "~"))


def _walk_symbol_dir(directory: Path, symbol: str) -> list[_DataFile]:
    files = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        rel_parts = Path(dirpath).relative_to(directory).parts
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if name.startswith((".", "_", "~")) or _suffix(path) is None:
                continue
            stem = _stem(path)
            files.append(_DataFile(path, symbol, _period_from_name(stem), _timeframe_from_parts((stem, *rel_parts))))
    return files


# ------------------------------------------------------------------------------------------ reading


def _prepare_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """MetaTrader writes '<DATE>' and '<TIME>' in separate columns: join them into one timestamp."""
    names = {str(c).strip().strip("<>").strip().lower(): c for c in frame.columns}
    other_time = set(COLUMN_ALIASES["timestamp"]) - {"date", "time"}
    if "date" in names and "time" in names and not other_time & names.keys():
        date_col, time_col = names["date"], names["time"]
        stamp = frame[date_col].astype("string").str.strip() + " " + frame[time_col].astype("string").str.strip()
        frame = frame.drop(columns=[date_col, time_col]).assign(timestamp=stamp)
    return frame


def _split_by_symbol(candles: pd.DataFrame) -> _Parsed:
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
    return _Parsed(frames, times, spacing)


def _parse_csv(data_file: _DataFile, source_timezone: str | None) -> _Parsed:
    path = data_file.path
    fmt = _peek(data_file)
    assert isinstance(fmt, _CsvFormat)
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
        raise _read_failure(path, exc) from exc
    if frame.empty:
        raise DataValidationError("the file is empty: it has a header row but no data rows", where=str(path))
    frame = _prepare_columns(frame)
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


def _row_groups_for(path: Path, window: _Window | None) -> tuple[pq.ParquetFile, list[int]]:
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
    slack = pd.Timedelta(0) if zoned else _NAME_PERIOD_SLACK
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


def _parse_parquet_group(data_file: _DataFile, pf: pq.ParquetFile, group: int, source_timezone: str | None) -> _Parsed:
    path = data_file.path
    where = str(path) if pf.metadata.num_row_groups == 1 else f"{path} (row group {group})"
    try:
        frame = pf.read_row_group(group).to_pandas()
    except Exception as exc:
        raise _read_failure(path, exc) from exc
    frame = _prepare_columns(frame)
    candles = normalize_candles(frame, where=where, symbol=data_file.symbol, source_timezone=source_timezone)
    return _split_by_symbol(candles)


def _timeframe_label(step: pd.Timedelta) -> str:
    """A bar size as ALPHAPULSE_BASE_TIMEFRAME spells it, or a plain duration when it has no such name."""
    for unit, size in (("w", pd.Timedelta(weeks=1)), ("d", pd.Timedelta(days=1)), ("h", pd.Timedelta(hours=1)),
                       ("m", pd.Timedelta(minutes=1))):
        if step >= size and step % size == pd.Timedelta(0):
            return f"{step // size}{unit}"
    return str(step)


# ------------------------------------------------------------------------------------------ source


class FileSource(CandleSource):
    """Candles from a folder of CSV / Parquet files (layout in the module docstring)."""

    name = "files"

    def __init__(self, root: Path, timeframe: str = "15m", source_timezone: str | None = None):
        self.root = Path(root).expanduser()
        self.timeframe = timeframe
        self.source_timezone = source_timezone
        where = f"files source {self.root}"
        try:
            self._bar = timeframe_to_timedelta(timeframe)
        except ValueError as exc:
            raise DataValidationError(str(exc), where=where) from exc
        if source_timezone is not None:
            check_timezone(source_timezone, where)
        self.synthetic = (self.root / SYNTHETIC_MARKER).exists()

    # -- catalogue --------------------------------------------------------------------------------

    def check_reachable(self) -> None:
        if not self.root.exists():
            raise PermanentError(
                f"the market-data folder does not exist: {self.root} (set ALPHAPULSE_FILES_DIR to a folder of "
                "CSV/Parquet files)",
                where=str(self.root),
            )
        if not self.root.is_dir():
            raise PermanentError(f"{self.root} is a file, not a folder of CSV/Parquet files", where=str(self.root))
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise PermanentError(f"the market-data folder is not readable: {self.root}", where=str(self.root))
        try:
            with os.scandir(self.root) as it:
                next(it, None)
        except PermissionError as exc:
            raise PermanentError(f"the market-data folder is not readable: {exc.strerror}", where=str(self.root)) from exc

    def _catalogue(self) -> _Catalogue:
        self.check_reachable()
        by_symbol: dict[str, list[_DataFile]] = {}
        shared: list[_DataFile] = []
        with os.scandir(self.root) as it:
            entries = sorted((e for e in it if _visible(e)), key=lambda e: e.name)
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir():
                files = _walk_symbol_dir(path, entry.name.upper())
                if files:
                    by_symbol.setdefault(entry.name.upper(), []).extend(files)
                continue
            if _suffix(path) is None:
                continue
            stem = _stem(path)
            candidate = _DataFile(path, None, _period_from_name(stem), _timeframe_from_parts([stem]))
            try:
                shared_file = _has_symbol_column(candidate)
            except AlphaPulseError:
                # A broken file must not stop the other symbols: file it under its name, and let reading
                # it raise the same error when (and only when) that symbol is asked for.
                shared_file = False
            if shared_file:
                shared.append(candidate)
            else:
                symbol, tf = _symbol_from_top_level_name(stem)
                by_symbol.setdefault(symbol, []).append(_DataFile(path, symbol, candidate.period, tf))
        return _Catalogue(by_symbol, shared)

    def _select_bar_size(self, symbol: str, files: list[_DataFile]) -> list[_DataFile]:
        """Keep the files whose name says they hold the configured bar size, when names say so."""
        named = {f.timeframe for f in files if f.timeframe is not None}
        if not named:
            return files
        matching = {tf for tf in named if timeframe_to_timedelta(tf) == self._bar}
        if matching:
            return [f for f in files if f.timeframe is None or f.timeframe in matching]
        if any(f.timeframe is None for f in files):
            return [f for f in files if f.timeframe is None]
        found = ", ".join(sorted(named, key=timeframe_to_timedelta))
        raise DataValidationError(
            f"the files for {symbol} hold {found} bars (by their names), but the configured bar size is "
            f"{self.timeframe}: set ALPHAPULSE_BASE_TIMEFRAME={sorted(named, key=timeframe_to_timedelta)[0]} "
            f"to use them, or add {self.timeframe} files",
            where=str(files[0].path.parent),
        )

    # -- reading ----------------------------------------------------------------------------------

    def _load(self, data_file: _DataFile, window: _Window | None) -> list[tuple[str, _Parsed]]:
        """(where, parsed) for the parts of one file that can hold the window (all parts when None)."""
        if data_file.period is not None and window is not None:
            first, end = data_file.period
            if first - _NAME_PERIOD_SLACK >= window[1] or end + _NAME_PERIOD_SLACK <= window[0]:
                return []
        try:
            key = (*data_file.key(), data_file.symbol, self.source_timezone)
        except OSError as exc:
            raise _read_failure(data_file.path, exc) from exc
        if _suffix(data_file.path) in CSV_SUFFIXES:
            parsed = _PARSED.get(key)
            if parsed is None:
                parsed = _parse_csv(data_file, self.source_timezone)
                _PARSED.put(key, parsed, parsed.nbytes())
            return [(str(data_file.path), parsed)]  # type: ignore[list-item]
        try:
            pf, groups = _row_groups_for(data_file.path, window)
        except Exception as exc:
            raise _read_failure(data_file.path, exc) from exc
        out = []
        for g in groups:
            parsed = _PARSED.get((*key, g))
            if parsed is None:
                parsed = _parse_parquet_group(data_file, pf, g, self.source_timezone)
                _PARSED.put((*key, g), parsed, parsed.nbytes())
            where = str(data_file.path) if pf.metadata.num_row_groups == 1 else f"{data_file.path} (row group {g})"
            out.append((where, parsed))  # type: ignore[arg-type]
        return out

    def _check_bar_size(self, where: str, symbol: str, step: pd.Timedelta | None) -> None:
        if step is None or step == self._bar:
            return
        label = _timeframe_label(step)
        hint = (
            f"set ALPHAPULSE_BASE_TIMEFRAME={label} to use these files as they are"
            if label[-1] in "mhdw"
            else f"resample them to {self.timeframe} bars first"
        )
        raise DataValidationError(
            f"the file holds {label} bars for {symbol} (median spacing between rows {step}), but the configured "
            f"bar size is {self.timeframe}: {hint}, or provide {self.timeframe} bars",
            where=where,
        )

    def _known_symbols(self, catalogue: _Catalogue) -> set[str]:
        known = set(catalogue.by_symbol)
        for data_file in catalogue.shared:
            for _, parsed in self._load(data_file, None):
                known.update(parsed.frames)
        return known

    def _unknown(self, symbol: str, known: set[str]) -> UnknownSymbolError:
        listed = (", ".join(sorted(known)[:30]) + (" ..." if len(known) > 30 else "")) if known else "none"
        return UnknownSymbolError(
            f"no file for symbol {symbol!r} in {self.root}; symbols found there: {listed}. Name a file "
            f"<SYMBOL>.csv or a folder <SYMBOL>/, or add a 'symbol' column (see the files source docs)",
            where=str(self.root),
        )

    def fetch(self, symbols: Sequence[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        start, end = _utc(start), _utc(end)
        window = (start, end)
        catalogue = self._catalogue()
        wanted = [s.upper() for s in symbols]
        if not catalogue.shared:  # unknown symbols fail before any file is read
            for symbol in wanted:
                if symbol not in catalogue.by_symbol:
                    raise self._unknown(symbol, set(catalogue.by_symbol))
        shared_parts = [part for f in catalogue.shared for part in self._load(f, window)]
        in_shared = {sym for _, parsed in shared_parts for sym in parsed.frames}
        absent = [s for s in wanted if s not in catalogue.by_symbol and s not in in_shared]
        if absent:
            # Not in the shared files that can hold the window: only now read them all, to tell an unknown
            # symbol from one that merely has no rows in this window.
            known = self._known_symbols(catalogue)
            for symbol in absent:
                if symbol not in known:
                    raise self._unknown(symbol, known)
        frames: list[pd.DataFrame] = []
        for symbol in wanted:
            parts = [
                part
                for f in self._select_bar_size(symbol, catalogue.by_symbol.get(symbol, []))
                for part in self._load(f, window)
            ]
            parts += [p for p in shared_parts if symbol in p[1].frames]
            for where, parsed in parts:
                if symbol not in parsed.frames:
                    continue
                self._check_bar_size(where, symbol, parsed.spacing[symbol])
                ns = parsed.times[symbol]
                lo, hi = np.searchsorted(ns, start.value, "left"), np.searchsorted(ns, end.value, "left")
                if hi > lo:
                    frames.append(parsed.frames[symbol].iloc[lo:hi])
        if not frames:
            return empty_candles()
        out = pd.concat(frames, ignore_index=True)
        # Several files may serve one symbol: order by time, keeping duplicates for the quality check.
        return out.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)

    def symbols(self) -> list[str]:
        """Every symbol the folder holds (reads shared multi-symbol files, once)."""
        return sorted(self._known_symbols(self._catalogue()))

    def describe(self) -> str:
        tz = f", naive times in {self.source_timezone}" if self.source_timezone else ""
        synthetic = ", SYNTHETIC sample export" if self.synthetic else ""
        return f"files ({self.root}, {self.timeframe} bars{tz}{synthetic})"


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# ------------------------------------------------------------------------------------------ export

EXPORT_LAYOUTS = ("per-symbol", "per-symbol-monthly", "single-file")
EXPORT_FORMATS = ("csv", "csv.gz", "parquet")


def export_sample(
    root: Path,
    symbols: Sequence[str],
    start: date,
    end: date,
    layout: str = "per-symbol-monthly",
    *,
    timeframe: str = "15m",
    file_format: str = "csv",
) -> list[Path]:
    """Write the bundled SYNTHETIC sample market from ``start`` through ``end`` (inclusive, UTC days).

    ``layout`` is one of the documented layouts: ``per-symbol`` (``<root>/<SYMBOL>.csv``),
    ``per-symbol-monthly`` (``<root>/<SYMBOL>/<SYMBOL>-<tf>-<YYYY-MM>.csv``) or ``single-file``
    (``<root>/candles.csv`` with a symbol column). Timestamps are written as ISO 8601 UTC strings in CSV
    and as ``timestamp[ns, UTC]`` in Parquet. A marker file says the data is invented, and a
    ``FileSource`` on the folder describes itself as a synthetic export. Returns the data files written.
    """
    from alphapulse_assets.market_data.sources.sample import SampleSource  # the sample is only needed here

    if layout not in EXPORT_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(EXPORT_LAYOUTS)}")
    if file_format not in EXPORT_FORMATS:
        raise ValueError(f"unknown file format {file_format!r}; choose from {', '.join(EXPORT_FORMATS)}")
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / SYNTHETIC_MARKER).write_text(
        "The candle files in this folder were written by alphapulse_assets.market_data.sources.files.export_sample.\n"
        "They are the bundled SYNTHETIC sample market, not real prices.\n"
    )
    source = SampleSource(timeframe)
    first = pd.Timestamp(start, tz="UTC")
    stop = pd.Timestamp(end + timedelta(days=1), tz="UTC")
    written: list[Path] = []

    def write(frame: pd.DataFrame, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if file_format == "parquet":
            frame.to_parquet(path, index=False)
        else:
            out = frame.assign(timestamp=frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S%z").str.replace(
                r"\+0000$", "+00:00", regex=True))
            out.to_csv(path, index=False, compression="gzip" if file_format == "csv.gz" else None)
        written.append(path)

    columns = ["timestamp", *NUMERIC_COLUMNS]
    if layout == "single-file":
        candles = source.fetch([s.upper() for s in symbols], first, stop)
        write(candles[["timestamp", "symbol", *NUMERIC_COLUMNS]], root / f"candles.{file_format}")
        return written
    for symbol in (s.upper() for s in symbols):
        candles = source.fetch([symbol], first, stop)[columns]
        if layout == "per-symbol":
            write(candles, root / f"{symbol}.{file_format}")
            continue
        month = candles["timestamp"].dt.strftime("%Y-%m")
        for key, part in candles.groupby(month, sort=True):
            write(part, root / symbol / f"{symbol}-{timeframe}-{key}.{file_format}")
    return written
