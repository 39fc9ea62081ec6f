"""The postgres source behind the fallback chain: every symbol in one query, against one query per symbol.

A real PostgreSQL 15 server on 127.0.0.1 (the test suite's harness) holds ``--days`` of 15m sample candles for
``--symbols`` symbols in an ``ohlcv`` table. Each round fetches one day's window for every symbol through a
chain ``[postgres, sample]``, as an ingestion run's candle step does: once with the source as shipped (one
query for all symbols) and once with ``serves_many_at_once`` turned off (one connection and query per symbol,
as before), interleaved. Reported: the median seconds of each and their ratio, per round.

    .venv/bin/python bench/bench_source_batch.py --symbols 50 --days 3 --repeat 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alphapulse_assets.market_data.schema import normalize_candles  # noqa: E402
from alphapulse_assets.market_data.sources.fallback import FallbackChain  # noqa: E402
from alphapulse_assets.market_data.sources.postgres import PostgresSource, write_ohlcv  # noqa: E402
from alphapulse_assets.market_data.sources.sample import SampleSource  # noqa: E402
from alphapulse_assets_tests.pg_harness import PostgresServer, end_on_sigterm  # noqa: E402

DAY0 = pd.Timestamp("2024-03-01", tz="UTC")


def symbols(n: int) -> list[str]:
    return [f"S{i:03d}USDT" for i in range(n)]


def timed_fetch(chain: FallbackChain, names: list[str], day: pd.Timestamp) -> tuple[float, int]:
    t = time.perf_counter()
    result = chain.fetch(names, day, day + pd.Timedelta(days=1))
    seconds = time.perf_counter() - t
    assert set(result.source_by_symbol.values()) == {"postgres"}, result.fallbacks[:3]
    return seconds, len(result.candles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    end_on_sigterm()  # a `kill` stops the server this started, as Ctrl-C does
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", file=sys.stderr)
    names = symbols(args.symbols)
    with PostgresServer() as server:
        server.create_database("bench")
        url = server.password_url("bench")
        frame = normalize_candles(
            SampleSource().fetch(names, DAY0, DAY0 + pd.Timedelta(days=args.days)), where="sample"
        )
        write_ohlcv(url, frame)
        batched = FallbackChain([PostgresSource(url), SampleSource()])
        one_by_one_source = PostgresSource(url)
        one_by_one_source.serves_many_at_once = False
        one_by_one = FallbackChain([one_by_one_source, SampleSource()])
        timed_fetch(batched, names, DAY0)  # warm both paths (first connection, imports)
        timed_fetch(one_by_one, names, DAY0)
        rows = {"batched": [], "one_by_one": [], "ratio": []}
        for i in range(args.repeat):
            day = DAY0 + pd.Timedelta(days=i % args.days)
            b, nb = timed_fetch(batched, names, day)
            o, no = timed_fetch(one_by_one, names, day)
            assert nb == no == 96 * args.symbols, (nb, no)
            rows["batched"].append(b)
            rows["one_by_one"].append(o)
            rows["ratio"].append(b / o)
    out = {
        "symbols": args.symbols,
        "repeat": args.repeat,
        "batched_s": round(statistics.median(rows["batched"]), 4),
        "one_by_one_s": round(statistics.median(rows["one_by_one"]), 4),
        "ratio": round(statistics.median(rows["ratio"]), 3),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
