"""Linear costs: what a run or a tick asks of its stores, counted for 5 and 50 symbols (and 10 and 100 days).

Counts, not timings (a count does not depend on a busy machine), each next to the access pattern it replaced,
run side by side on the same data:

- candle store: listings of the dataset to check and read a window of days (one per day before);
- registry: SQL statements and stored-JSON bytes read by the models step's "what did this run already train"
  look-up (every version of every symbol loaded and filtered in Python before);
- health tick: SQL statements of one ``collect_health`` (instance and platform database), every symbol's
  models materialized (one freshness query per symbol per cadence before); champion files read by a tick
  after the first (every champion's file on every tick before);
- exchange ingestion: wall time of fetching 12 symbols from the fake exchange on loopback with 0.3 s latency
  and a 0.1 s rate limit, one at a time vs four at once (the one timing here; a ratio in the same run).

    python bench/bench_linear.py [--json bench/results/linear.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from alphapulse_assets.market_data.storage import ParquetPartitionStore
from alphapulse_assets.monitoring import readers
from alphapulse_assets.settings import AlphaPulseSettings
from alphapulse_assets.training.registry import ModelRegistry


class Statements:
    """SQL statements run by every engine of the process inside the ``with`` block."""

    def __enter__(self):
        self.sql: list[str] = []
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._record)
        return self

    def _record(self, conn, cursor, statement, *args):
        self.sql.append(statement)

    def __exit__(self, *exc):
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self._record)


def store_listings(root: Path, n_days: int) -> dict:
    store = ParquetPartitionStore(str(root / f"candles-{n_days}"))
    days = [str(d.date()) for d in pd.date_range("2024-01-01", periods=n_days, freq="D")]
    frame = pd.DataFrame({"timestamp": pd.to_datetime(days).as_unit("ns"), "symbol": "ETHUSDT"})
    store.write_days("market_candles", pa.Table.from_pandas(frame, preserve_index=False), days)
    calls = {"n": 0}
    listing = store._segments

    def counted(dataset):
        calls["n"] += 1
        return listing(dataset)

    store._segments = counted
    [d for d in days if not store.exists("market_candles", d)]  # the per-day check it replaced
    before = calls["n"]
    store.missing_days("market_candles", days)
    store.read_days("market_candles", days)
    return {"days": n_days, "listings_per_day_checks": before + 1, "listings_now": calls["n"] - before}


def registry_lookups(root: Path, n_symbols: int, versions_each: int = 4) -> dict:
    reg = ModelRegistry(str(root / f"models-{n_symbols}"), f"sqlite:///{root / f'registry-{n_symbols}.db'}")
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    profile = {f"f{i}": [float(q) for q in range(101)] for i in range(20)}  # a real profile's size
    symbols = [f"S{i:03d}USDT" for i in range(n_symbols)]
    for symbol in symbols:
        for v in range(versions_each):
            reg.register(
                symbol,
                "nightly",
                model,
                info={"run_id": f"run-{v}", "partition": f"p{v}", "reference_profile": profile},
            )
    with Statements() as old:
        old_bytes = 0
        for symbol in symbols:  # what the models step did before
            versions = reg.versions(symbol, "nightly")
            old_bytes += sum(len(json.dumps(v.info)) for v in versions)
            {v.info.get("partition") for v in versions if v.info.get("run_id") == "run-3"}
    with Statements() as new:
        reg.partitions_trained("nightly", "run-3")
    return {
        "symbols": n_symbols,
        "versions": n_symbols * versions_each,
        "statements_before": len(old.sql),
        "json_bytes_read_before": old_bytes,
        "statements_now": len(new.sql),
        "json_bytes_read_now": 0,
    }


def health_tick(root: Path, n_symbols: int) -> dict:
    symbols = [f"S{i:03d}USDT" for i in range(n_symbols)]
    settings = AlphaPulseSettings(symbols=symbols)
    now = 1_780_000_000.0
    folder = root / f"instance-{n_symbols}"
    folder.mkdir()
    with dg.instance_for_test(temp_dir=str(folder)) as instance:
        for cadence in readers.CADENCE_NAMES:
            expected = readers.expected_partition(cadence, now, settings, settings.monitoring)
            for symbol in symbols:  # one asset per cadence, a (time, symbol) partition per symbol's model
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(dg.AssetKey(["models", cadence]), partition=f"{expected}|{symbol}")
                )
        with Statements() as tick:
            readers.collect_health(
                instance, now=now, settings=settings, db_url=f"sqlite:///{folder / 'p.db'}", check_sources=False
            )
        with Statements() as per_symbol:  # the freshness reads it replaced: one per symbol per cadence
            for cadence in readers.CADENCE_NAMES:
                for _symbol in symbols:
                    instance.get_materialized_partitions(dg.AssetKey(["models", cadence]))
    return {
        "symbols": n_symbols,
        "statements_now": len(tick.sql),
        "per_symbol_freshness_statements": len(per_symbol.sql),
    }


def champion_files(root: Path, n_symbols: int) -> dict:
    """Files read by the health tick's champion-file check on a tick after the first (nothing changed)."""
    from sklearn.linear_model import LogisticRegression

    url = f"sqlite:///{root / f'champions-{n_symbols}.db'}"
    reg = ModelRegistry(str(root / f"champion-models-{n_symbols}"), url)
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    for i in range(n_symbols):
        for cadence in readers.CADENCE_NAMES:
            reg.promote(reg.register(f"S{i:03d}USDT", cadence, model), reason="bench")
    reads = {"n": 0}
    verify = reg.verify

    def counted(mv):
        reads["n"] += 1
        return verify(mv)

    reg.verify = counted
    readers.champion_files_check(url, reg)
    first = reads["n"]
    readers.champion_files_check(url, reg)
    return {
        "symbols": n_symbols,
        "champions": 3 * n_symbols,
        "files_read_first_tick": first,
        "files_read_next_tick": reads["n"] - first,
    }


def exchange_fetch(n_symbols: int = 12, latency: float = 0.3, interval_ms: float = 100.0) -> dict:
    from alphapulse_assets.market_data.sources.exchange import ExchangeSource
    from alphapulse_assets.market_data.sources.fallback import FallbackChain
    from alphapulse_assets_tests.fake_exchange import FakeBinance

    bases = ["BTC", "ETH", "ADA", "DOT", "LINK", "SOL", "XRP", "LTC", "BNB", "AVAX", "ATOM", "NEAR", "UNI", "AAVE"]
    symbols = [f"{b}USDT" for b in bases[:n_symbols]]
    start = pd.Timestamp("2024-03-04", tz="UTC")
    out = {"symbols": n_symbols, "latency_s": latency, "rate_limit_ms": interval_ms}
    out["allowed_requests_in_1s"] = 1 + int(1000 // interval_ms)
    for concurrency in (1, 4, 1, 4):  # interleaved; the second of each is kept (clients and imports warm)
        with FakeBinance(symbols, latency_seconds=latency) as fake:
            source = ExchangeSource(
                api_base_url=fake.url, page_limit=96, rate_limit_ms=interval_ms, concurrency=concurrency
            )
            began = time.perf_counter()
            FallbackChain([source]).fetch(symbols, start, start + pd.Timedelta(days=1))
            out[f"seconds_concurrency_{concurrency}"] = round(time.perf_counter() - began, 3)
            gaps = [b - a for a, b in zip(fake.arrivals, fake.arrivals[1:], strict=False)]
            out[f"min_gap_ms_concurrency_{concurrency}"] = round(1000 * min(gaps), 1)
            arrivals = fake.arrivals
            out[f"most_requests_in_1s_concurrency_{concurrency}"] = max(
                sum(1 for b in arrivals if a <= b < a + 1.0) for a in arrivals
            )
            out[f"most_in_flight_concurrency_{concurrency}"] = fake.max_in_flight
            source.close()
    out["ratio_concurrent_to_sequential"] = round(out["seconds_concurrency_4"] / out["seconds_concurrency_1"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results = {
            "store": [store_listings(root, n) for n in (10, 100)],
            "registry": [registry_lookups(root, n) for n in (5, 50)],
            "health_tick": [health_tick(root, n) for n in (5, 50)],
            "champion_files": [champion_files(root, n) for n in (5, 50)],
            "exchange": exchange_fetch(),
        }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
