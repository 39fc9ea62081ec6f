"""Telling a file's format from its first line or Parquet schema, and classifying read errors by file."""

from __future__ import annotations

import gzip
import re
import zipfile
import zlib
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alphapulse_assets.market_data.schema import (
    COLUMN_ALIASES,
)
from alphapulse_assets.market_data.sources.files.cache import PEEKED
from alphapulse_assets.market_data.sources.files.catalogue import (
    PARQUET_SUFFIXES,
    DataFile,
    suffix_of,
)
from alphapulse_assets.recovery.errors import (
    DataValidationError,
    PermanentError,
    TransientError,
)

# Column names of Binance kline dumps, which come without a header row.
BINANCE_KLINE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
    "ignore",
)
HEADERLESS_OHLCV_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
# MetaTrader 4 history exports: 2024.01.02,00:00,open,high,low,close,volume.
HEADERLESS_DATE_TIME_COLUMNS = ("date", "time", "open", "high", "low", "close", "volume")
_DATE_OR_TIME = re.compile(r"^\d{1,4}[-./:]\d{1,2}")


@dataclass(frozen=True)
class CsvFormat:
    delimiter: str
    names: tuple[str, ...] | None  # column names to impose on a file without a header row
    columns: tuple[str, ...]  # lower-cased column names as read

    @property
    def has_symbol_column(self) -> bool:
        return any(c in COLUMN_ALIASES["symbol"] for c in self.columns)


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


def _sniff_csv(path: Path) -> CsvFormat:
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
        return CsvFormat(delimiter, names, names)
    return CsvFormat(delimiter, None, tuple(f.strip("<>").strip().lower() for f in fields))


def read_failure(path: Path, exc: BaseException) -> Exception:
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


def peek(data_file: DataFile) -> CsvFormat | pa.Schema:
    key = ("peek", *data_file.key())
    found = PEEKED.get(key)
    if found is not None:
        return found  # type: ignore[return-value]
    try:
        if suffix_of(data_file.path) in PARQUET_SUFFIXES:
            result: CsvFormat | pa.Schema = pq.read_schema(data_file.path)
        else:
            result = _sniff_csv(data_file.path)
    except Exception as exc:
        raise read_failure(data_file.path, exc) from exc
    PEEKED.put(key, result, 1024)
    return result


def has_symbol_column(data_file: DataFile) -> bool:
    info = peek(data_file)
    if isinstance(info, pa.Schema):
        return any(n.strip().lower() in COLUMN_ALIASES["symbol"] for n in info.names)
    return info.has_symbol_column
