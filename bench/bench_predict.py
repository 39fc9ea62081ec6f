"""Predict latency: ``Predictor.predict`` (warm) against the champion's own ``predict_proba`` on the same row.

In one process, interleaved call by call, for each cadence (its bar size, its estimator: nightly SGD pipeline
on 15m bars, weekly and monthly gradient boosting on 1h / 4h bars):

- predictor: ``Predictor.predict(symbol, cadence)`` once warm (its model loaded, the newest candles read): the
  champion's version looked up in the platform database (SQLite here), the candle store listed (one listing),
  and, the model and the segments holding the look-back being unchanged, the answer already computed on them;
- predictor_new_bar: the same call right after new candles were stored (its candle and answer caches
  cleared): the look-back days read from the Parquet store, the features built, ``predict_proba``;
- model: the champion's ``predict_proba`` on the very feature row the predictor used (the floor: any serving
  must at least call the model);
- plain: the unavoidable work of a new bar written as a plain loop, no champion check: read the same days from the store,
  ``candle_features`` on the symbol's rows, ``predict_proba`` on the newest row;
- predict_all: ``Predictor.predict_all(cadence)`` for every symbol (one store read for all), against
  ``len(symbols)`` single ``predict`` calls.

Data: the bundled sample market (synthetic), 30 days of candles written straight into a temporary candle store,
a real model per symbol and cadence fitted on them, registered and promoted in a temporary registry.

    python bench/bench_predict.py [--symbols 5] [--calls 300] [--json bench/results/predict_5.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path


def _quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"p50_ms": statistics.median(ordered) * 1e3, "p99_ms": p99 * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300, help="timed calls per path and cadence")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="alphapulse-bench-predict-"))
    defaults = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT"]
    symbols = (defaults + [f"SYN{i:02d}USDT" for i in range(args.symbols)])[: args.symbols]
    os.environ.update(
        {
            "ALPHAPULSE_SYMBOLS": ",".join(symbols),
            "ALPHAPULSE_HOME": str(work / "home"),
            "DAGSTER_HOME": str(work),
            "ALPHAPULSE_PLATFORM_DB_URL": f"sqlite:///{work / 'platform.db'}",
            # The sample market's bars are older than a live feed's: this run measures latency, not freshness.
            **{f"ALPHAPULSE_SERVING__MAX_DATA_AGE__{c.upper()}": "100000000" for c in ("nightly", "weekly", "monthly")},
        }
    )
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    import pandas as pd
    from threadpoolctl import threadpool_limits

    from alphapulse_assets.market_data.resample import resample_candles
    from alphapulse_assets.market_data.schema import to_arrow
    from alphapulse_assets.market_data.sources.sample import SampleSource
    from alphapulse_assets.market_data.storage import ParquetPartitionStore
    from alphapulse_assets.serving import Predictor
    from alphapulse_assets.settings import get_settings
    from alphapulse_assets.training.challenger import (
        cadence_spec,
        candle_dataset,
        candle_features,
        make_dataset,
        new_estimator,
    )
    from alphapulse_assets.training.registry import ModelRegistry

    settings = get_settings()
    end = pd.Timestamp("2024-06-30", tz="UTC")
    start = end - pd.Timedelta(days=args.days)
    days = [str(d.date()) for d in pd.date_range(start, end, freq="D", inclusive="left")]
    base = SampleSource().fetch(symbols, start, end)
    store = ParquetPartitionStore(settings.candle_store_url)
    frames = {"15m": base, "1h": resample_candles(base, "15m", "1h"), "4h": resample_candles(base, "15m", "4h")}
    for timeframe, frame in frames.items():
        store.write_days(candle_dataset(timeframe), to_arrow(frame), days)

    registry = ModelRegistry(str(settings.home / "models"), os.environ["ALPHAPULSE_PLATFORM_DB_URL"])
    models = {}
    for cadence in ("nightly", "weekly", "monthly"):
        spec = cadence_spec(cadence, settings)
        for symbol in symbols:
            ds = make_dataset(frames[spec.timeframe][frames[spec.timeframe]["symbol"] == symbol], spec)
            model = new_estimator("sgd" if spec.estimator == "sgd" else "hgb", 0).fit(ds.X.to_numpy(), ds.y)
            mv = registry.register(symbol, cadence, model, info={"gate_passed": True})
            registry.promote(mv, reason="benchmark")
            models[(symbol, cadence)] = model

    predictor = Predictor(registry=registry, candle_store=store, settings=settings)
    symbol = symbols[0]

    def measure(cadence: str) -> dict:
        spec = cadence_spec(cadence, settings)
        dataset = candle_dataset(spec.timeframe)
        model = models[(symbol, cadence)]
        first = predictor.predict(symbol, cadence)  # warm: loads and verifies the model once
        newest_day = pd.Timestamp(first.bar_time).date()
        lookback = predictor._lookback_days(spec)
        read_days = [str(newest_day - timedelta(days=i)) for i in range(lookback, -1, -1)]
        rows, X = candle_features(store.read_days(dataset, read_days).query("symbol == @symbol"))
        row = X.iloc[[-1]].to_numpy()
        assert abs(model.predict_proba(row)[0, 1] - first.prob_up) < 1e-12, "the predictor answers on that row"

        def plain():
            candles = store.read_days(dataset, read_days)
            _, features = candle_features(candles[candles["symbol"] == symbol])
            return model.predict_proba(features.iloc[[-1]].to_numpy())[0, 1]

        def new_bar():
            # What the first call after new candles were written does: the store read and the features again.
            predictor._candles.clear()
            predictor._answers.clear()
            return predictor.predict(symbol, cadence)

        calls = {
            "predictor": lambda: predictor.predict(symbol, cadence),
            "model": lambda: model.predict_proba(row),
            "predictor_new_bar": new_bar,
            "plain": plain,
        }
        timings: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.calls):
            for name, call in calls.items():
                t0 = time.perf_counter()
                call()
                timings[name].append(time.perf_counter() - t0)
        for name in ("predict_all", "single_calls"):
            timings[name] = []
        predictor.predict_all(cadence)  # warm: the other symbols' models loaded once
        for _ in range(max(args.calls // 10, 5)):
            t0 = time.perf_counter()
            answers = predictor.predict_all(cadence)
            timings["predict_all"].append(time.perf_counter() - t0)
            assert all(not isinstance(a, Exception) for a in answers.values()), answers
            t0 = time.perf_counter()
            for s in symbols:
                predictor.predict(s, cadence)
            timings["single_calls"].append(time.perf_counter() - t0)
        figures: dict = {name: _quantiles(samples) for name, samples in timings.items()}
        p50 = {name: f["p50_ms"] for name, f in figures.items()}
        figures["ratio_p50_predictor_vs_model"] = p50["predictor"] / p50["model"]
        figures["ratio_p50_new_bar_vs_model"] = p50["predictor_new_bar"] / p50["model"]
        figures["ratio_p50_new_bar_vs_plain"] = p50["predictor_new_bar"] / p50["plain"]
        figures["ratio_p50_predict_all_vs_singles"] = p50["predict_all"] / p50["single_calls"]
        figures.update(timeframe=spec.timeframe, days_read=len(read_days), bars_for_symbol=len(rows))
        return figures

    results: dict = {"symbols": len(symbols), "calls": args.calls, "symbol": symbol, "cadences": {}}
    with threadpool_limits(1):  # one numeric thread, as a serving worker would run
        for cadence in ("nightly", "weekly", "monthly"):
            results["cadences"][cadence] = measure(cadence)
    results["load_average"] = os.getloadavg()[0]
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
