"""Ingestion benchmark: candles per second into the platform's partition store vs a raw pyarrow write.

Size: 5 symbols x 1 year of 15m bars (175,680 candles) by default. The platform path is what the
candle IO manager does for a one-year backfill run: convert the frame to the canonical Arrow schema,
split it by UTC day, and write 366 Parquet files atomically (temp file, fsync, rename). Two baselines
run in the same process, interleaved, repeated: (a) the same frame written straight to ONE Parquet file
with pyarrow (the issue's baseline); (b) the same 366 day files written with pyarrow, with no temp
file, fsync or rename (what the split costs vs what atomicity costs).

    python bench/bench_ingestion.py [--symbols 5] [--days 366] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alphapulse_assets.market_data.schema import to_arrow
from alphapulse_assets.market_data.sources.sample import SampleSource
from alphapulse_assets.market_data.storage import NS_PER_DAY, ParquetPartitionStore

DEFAULT_SYMBOLS = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT"]


def raw_single_file(frame: pd.DataFrame, root: Path) -> None:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), root / "all.parquet")


def raw_day_files(frame: pd.DataFrame, root: Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    day = pd.DatetimeIndex(frame["timestamp"]).asi8 // NS_PER_DAY
    order = np.argsort(day, kind="stable")
    table, day = table.take(pa.array(order)), day[order]
    bounds = np.flatnonzero(np.diff(day)) + 1
    for lo, hi in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(day)]]), strict=False):
        pq.write_table(table.slice(lo, hi - lo), root / f"{int(day[lo])}.parquet")


def platform_store(frame: pd.DataFrame, root: Path, days: list[str]) -> None:
    ParquetPartitionStore(str(root)).write_days("market_candles", to_arrow(frame), days)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--days", type=int, default=366)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    symbols = DEFAULT_SYMBOLS[: args.symbols] + [f"SYN{i}USDT" for i in range(max(0, args.symbols - 5))]
    start = pd.Timestamp("2024-01-01", tz="UTC")
    end = start + pd.Timedelta(days=args.days)
    frame = SampleSource().fetch(symbols, start, end)
    days = [str(d.date()) for d in pd.date_range(start, end, freq="D", inclusive="left")]
    n = len(frame)
    timings: dict[str, list[float]] = {"raw_single_file": [], "raw_day_files": [], "platform_store": []}
    base = Path(tempfile.mkdtemp(prefix="alphapulse-bench-"))
    try:
        for i in range(args.repeat):
            for name in timings:  # interleaved so that machine noise hits all three alike
                root = base / f"{name}-{i}"
                root.mkdir()
                t0 = time.perf_counter()
                if name == "raw_single_file":
                    raw_single_file(frame, root)
                elif name == "raw_day_files":
                    raw_day_files(frame, root)
                else:
                    platform_store(frame, root, days)
                timings[name].append(time.perf_counter() - t0)
                shutil.rmtree(root)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in timings.items()}
    result = {
        "candles": n,
        "symbols": len(symbols),
        "days": args.days,
        "repeat": args.repeat,
        "median_seconds": {k: round(v, 4) for k, v in med.items()},
        "candles_per_second": {k: round(n / v) for k, v in med.items()},
        "ratio_vs_raw_single_file": round(med["raw_single_file"] / med["platform_store"], 3),
        "ratio_vs_raw_day_files": round(med["raw_day_files"] / med["platform_store"], 3),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
