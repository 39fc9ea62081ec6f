"""Writing the bundled synthetic sample market as files in the documented layouts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from alphapulse_assets.market_data.schema import (
    NUMERIC_COLUMNS,
)
from alphapulse_assets.market_data.sources.files.catalogue import SYNTHETIC_MARKER

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
    # Imported here: the sample imports scipy.signal (0.9 s), which FileSource users (files/__init__ imports
    # this module) should not pay for.
    from alphapulse_assets.market_data.sources.sample import SampleSource

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
            out = frame.assign(
                timestamp=frame["timestamp"]
                .dt.strftime("%Y-%m-%dT%H:%M:%S%z")
                .str.replace(r"\+0000$", "+00:00", regex=True)
            )
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
