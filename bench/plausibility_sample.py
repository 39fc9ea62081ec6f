"""What the bundled sample market gives each cadence's challengers: direction AUC, baseline AUCs, log-loss edge.

The implausibility guard's defaults (``ALPHAPULSE_GATE__MAX_AUC``, ``__MAX_BASELINE_AUC``, ``__MAX_LOG_LOSS_EDGE``)
are set well above the largest values printed here. Command:

    .venv/bin/python bench/plausibility_sample.py [--ends 2025-06-30,2025-09-30]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
from threadpoolctl import threadpool_limits

from alphapulse_assets.market_data.resample import resample_candles
from alphapulse_assets.market_data.sources.sample import SampleSource
from alphapulse_assets.settings import DEFAULT_SYMBOLS
from alphapulse_assets.training.challenger import DEFAULT_SPECS, train_challenger
from alphapulse_assets.training.promotion import CALIBRATED_BASELINES


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ends", default="2025-06-30,2025-09-30")
    parser.add_argument("--cadences", default="nightly,weekly,monthly")
    args = parser.parse_args()
    print("| cadence | end | symbol | model AUC | max baseline AUC | log-loss edge over best baseline |")
    print("|---|---|---|---|---|---|")
    worst = {}
    for cadence in args.cadences.split(","):
        spec = DEFAULT_SPECS[cadence]
        for end_text in args.ends.split(","):
            end = pd.Timestamp(end_text, tz="UTC")
            start = end - pd.Timedelta(days=spec.window_days) - pd.Timedelta(days=60)
            base = SampleSource().fetch(list(DEFAULT_SYMBOLS), start, end)
            candles = base if spec.timeframe == "15m" else resample_candles(base, "15m", spec.timeframe)
            for symbol in DEFAULT_SYMBOLS:
                rows = candles[candles.symbol == symbol]
                rows = rows[rows.timestamp >= end - pd.Timedelta(days=spec.window_days) - pd.Timedelta(days=3)]
                t0 = time.perf_counter()
                with threadpool_limits(1):
                    ch = train_challenger(rows, spec, symbol=symbol, n_boot=50)
                auc = float(ch.report.model["auc"])
                base_auc = max(float(v.get("auc", float("nan"))) for v in ch.report.baselines.values())
                fair = {k: float(v["log_loss"]) for k, v in ch.report.baselines.items() if k in CALIBRATED_BASELINES}
                edge = min(fair.values()) - float(ch.report.model["log_loss"])
                w = worst.setdefault(cadence, [0.0, 0.0, -1.0])
                w[0], w[1], w[2] = max(w[0], auc), max(w[1], base_auc), max(w[2], edge)
                print(
                    f"| {cadence} | {end.date()} | {symbol} | {auc:.3f} | {base_auc:.3f} | {edge:+.4f} |"
                    f"  <!-- {time.perf_counter() - t0:.1f}s -->",
                    flush=True,
                )
    for cadence, (auc, base_auc, edge) in worst.items():
        print(f"largest for {cadence}: model AUC {auc:.3f}, baseline AUC {base_auc:.3f}, edge {edge:+.4f}")


if __name__ == "__main__":
    main()
