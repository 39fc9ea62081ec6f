"""What a files-source folder holds: data files by symbol, their periods and bar sizes from their names."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.zip", ".zip")
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Written by export_sample so that anyone looking at the folder knows the data is invented.
SYNTHETIC_MARKER = "SAMPLE_DATA_IS_SYNTHETIC.txt"


# Files whose name gives their month or day (``...-2024-01``, ``...-2024-01-31``: Binance's dumps) are opened only
# for windows in that period, give or take this much (a local-time month starts up to 14 hours away from the UTC
# one); a file holding rows outside it is refused when read. Years in a name (``btc_2021``,
# ``spx_daily_2012_2019``) are never used to skip a file: the file is read, and a disagreement is reported.
NAME_PERIOD_SLACK = pd.Timedelta(days=1)
_DATE_IN_NAME = re.compile(r"(?:^|[-_ ])(\d{4})-(\d{2})(?:-(\d{2}))?$")
_YEARS_IN_NAME = re.compile(r"(?:^|[-_ ])((?:19|20)\d{2})(?:[-_ ]((?:19|20)\d{2}))?$")
# A bar size in a name: 15m, 1h, 4H, 1d, 1w, 15min, or a word (daily, hourly, weekly). Not "1M" (a month
# on Binance).
_TIMEFRAME_IN_NAME = re.compile(r"(?:^|[-_ ])(\d+(?:m|min|h|H|d|D|w|W)|daily|hourly|weekly)(?=[-_ ]|$)")
_TRAILING_DATE_OR_BAR = re.compile(
    r"[-_ ](?:(?:19|20)\d{2}(?:-\d{2}(?:-\d{2})?)?|\d+(?:m|min|h|H|d|D|w|W)|daily|hourly|weekly)$"
)


Window = tuple[pd.Timestamp, pd.Timestamp]


@dataclass(frozen=True)
class DataFile:
    path: Path
    symbol: str | None  # None: a shared file whose rows name their symbol
    period: tuple[pd.Timestamp, pd.Timestamp] | None  # [start, end) of the month or day in the name, if any
    timeframe: str | None  # bar size from the name or folder, if any
    name_years: tuple[pd.Timestamp, pd.Timestamp] | None = None  # [start, end) of the year(s) in the name

    def key(self) -> tuple:
        st = self.path.stat()
        return (str(self.path), st.st_mtime_ns, st.st_size)


def suffix_of(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in (*PARQUET_SUFFIXES, *CSV_SUFFIXES):
        if name.endswith(suffix):
            return suffix
    return None


def stem_of(path: Path) -> str:
    suffix = suffix_of(path) or ""
    return path.name[: len(path.name) - len(suffix)]


def period_from_name(stem: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """[start, end) of the month or day a name ends with (``-2024-01``, ``_2024-01-31``), in UTC."""
    m = _DATE_IN_NAME.search(stem)
    if not m:
        return None
    year, month, day = int(m.group(1)), int(m.group(2)), m.group(3)
    if not 1970 <= year <= 2100:
        return None
    try:
        if day is not None:
            first = pd.Timestamp(year=year, month=month, day=int(day), tz="UTC")
            return first, first + pd.Timedelta(days=1)
        first = pd.Timestamp(year=year, month=month, day=1, tz="UTC")
        return first, first + pd.offsets.MonthBegin(1)
    except ValueError:
        return None


def years_from_name(stem: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """[start, end) of the year or years a name ends with (``btc_2021``, ``spx_daily_2012_2019``), in UTC."""
    m = _YEARS_IN_NAME.search(stem)
    if not m:
        return None
    first, last = int(m.group(1)), int(m.group(2) or m.group(1))
    if last < first:
        return None
    return pd.Timestamp(year=first, month=1, day=1, tz="UTC"), pd.Timestamp(year=last + 1, month=1, day=1, tz="UTC")


def _bar_token(token: str) -> str:
    words = {"daily": "1d", "hourly": "1h", "weekly": "1w"}
    return words.get(token, token.lower().replace("min", "m"))


def timeframe_from_parts(parts: Iterable[str]) -> str | None:
    for part in parts:
        m = _TIMEFRAME_IN_NAME.search(part)
        if m:
            return _bar_token(m.group(1))
    return None


def symbol_from_top_level_name(stem: str) -> tuple[str, str | None]:
    """The symbol and bar size a top-level file's name gives: dates, years and bar sizes at its end are not
    part of the symbol. 'BTCUSDT' -> ('BTCUSDT', None); 'BTCUSDT-15m-2024-01' -> ('BTCUSDT', '15m');
    'spx_daily_2012_2019' -> ('SPX', '1d'); 'btc_2021' -> ('BTC', None); 'BRK-B' -> ('BRK-B', None)."""
    symbol, timeframe = stem, None
    while True:
        m = _TRAILING_DATE_OR_BAR.search(symbol)
        if not m or m.start() == 0:
            break
        token = m.group(0)[1:]
        if timeframe is None and not re.fullmatch(r"[\d-]+", token):  # a bar size, not a date
            timeframe = _bar_token(token)
        symbol = symbol[: m.start()]
    return symbol.upper(), timeframe


def catalogued(path: Path, symbol: str | None, timeframe: str | None) -> DataFile:
    stem = stem_of(path)
    return DataFile(path, symbol, period_from_name(stem), timeframe, years_from_name(stem))


@dataclass
class Catalogue:
    by_symbol: dict[str, list[DataFile]]
    shared: list[DataFile]


def visible(entry: os.DirEntry) -> bool:
    return not entry.name.startswith((".", "_", "~"))


def walk_symbol_dir(directory: Path, symbol: str) -> list[DataFile]:
    files = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        rel_parts = Path(dirpath).relative_to(directory).parts
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if name.startswith((".", "_", "~")) or suffix_of(path) is None:
                continue
            files.append(catalogued(path, symbol, timeframe_from_parts((stem_of(path), *rel_parts))))
    return files
