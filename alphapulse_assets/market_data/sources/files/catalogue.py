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


# Files whose name says when they start are trusted to hold that period only, give or take this much
# (a local-time month starts up to 14 hours away from the UTC one).
NAME_PERIOD_SLACK = pd.Timedelta(days=1)
_DATE_IN_NAME = re.compile(r"(?:^|[-_ ])(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_TIMEFRAME_IN_NAME = re.compile(r"(?:^|[-_])(\d+[smhdw])(?=[-_]|$)")
# <SYMBOL>[-<bar size>][-<YYYY[-MM[-DD]]>] at the top level: the symbol is what comes first.
_TOP_LEVEL_NAME = re.compile(
    r"^(?P<symbol>[A-Za-z0-9_.^=]+?)(?:[-_](?P<tf>\d+[smhdw]))?(?:[-_](?:19|20)\d{2}(?:-\d{2}(?:-\d{2})?)?)?$"
)


Window = tuple[pd.Timestamp, pd.Timestamp]


@dataclass(frozen=True)
class DataFile:
    path: Path
    symbol: str | None  # None: a shared file whose rows name their symbol
    period: tuple[pd.Timestamp, pd.Timestamp] | None  # [start, end) from the name, if it has a date
    timeframe: str | None  # bar size from the name or folder, if any

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


def timeframe_from_parts(parts: Iterable[str]) -> str | None:
    for part in parts:
        m = _TIMEFRAME_IN_NAME.search(part)
        if m:
            return m.group(1)
    return None


def symbol_from_top_level_name(stem: str) -> tuple[str, str | None]:
    """'BTCUSDT' -> ('BTCUSDT', None); 'BTCUSDT-15m-2024-01' -> ('BTCUSDT', '15m'); 'BRK-B' -> ('BRK-B', None)."""
    m = _TOP_LEVEL_NAME.match(stem)
    if m:
        return m.group("symbol").upper(), m.group("tf")
    return stem.upper(), None


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
            stem = stem_of(path)
            files.append(DataFile(path, symbol, period_from_name(stem), timeframe_from_parts((stem, *rel_parts))))
    return files
