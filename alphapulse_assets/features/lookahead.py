"""The look-ahead check: a feature's value at bar t must not change when the bars after t are not there.

``look_ahead_problems(build, candles)`` computes every feature on the whole of ``candles`` and on prefixes of
each symbol's bars (cut at a few points), and requires the values on each prefix to be the same (NaN where
NaN; numbers equal up to floating-point rounding, ``RTOL``). A feature whose value at t reads t + 1 or later
differs there; the problem names the feature, the symbol, the first bar where it differs and both values.

It runs at start (``config_check``: the configured feature set, user features included, on the bundled
sample market) and in the tests (the built-in features). This module does not import Dagster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alphapulse_assets.features.indicators import symbol_slices

# Prefix cuts, as fractions of each symbol's bars: early (inside warm-up for long look-backs), middle, late.
CUTS = (0.35, 0.6, 0.85)
RTOL, ATOL = 1e-9, 1e-12


@dataclass(frozen=True)
class LookAhead:
    feature: str
    symbol: str
    timestamp: pd.Timestamp
    bar: int  # position of the bar within its symbol's candles
    on_prefix: float
    on_whole: float

    def __str__(self) -> str:
        return (
            f"feature {self.feature!r} looks ahead: at {self.symbol} bar {self.bar} ({self.timestamp}) it is "
            f"{self.on_prefix!r} when later bars are absent but {self.on_whole!r} with them"
        )


def _differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    with np.errstate(invalid="ignore"):
        close = np.isclose(a, b, rtol=RTOL, atol=ATOL)
    return (nan_a != nan_b) | (~nan_a & ~nan_b & ~close)


def look_ahead_problems(
    build: Callable[[pd.DataFrame], pd.DataFrame], candles: pd.DataFrame, cuts: Sequence[float] = CUTS
) -> list[LookAhead]:
    """The first look-ahead of each feature that reads later bars (empty when none does).

    ``build``: candles (sorted by symbol, then time) -> one column per feature, indexed like them.
    """
    candles = candles.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    whole = build(candles)
    found: dict[str, LookAhead] = {}
    for sl in symbol_slices(candles):
        n = sl.stop - sl.start
        for cut in sorted({max(1, int(n * c)) for c in cuts}):
            # Every symbol whole, except this one cut after ``cut`` bars.
            keep = np.ones(len(candles), dtype=bool)
            keep[sl.start + cut : sl.stop] = False
            prefix = build(candles[keep])
            rows = np.arange(sl.start, sl.start + cut)
            for name in whole.columns:
                if name in found:
                    continue
                a = prefix[name].to_numpy(dtype="float64")[rows]
                b = whole[name].to_numpy(dtype="float64")[rows]
                bad = np.flatnonzero(_differs(a, b))
                if len(bad):
                    i = int(bad[0])
                    found[name] = LookAhead(
                        name,
                        str(candles["symbol"].iloc[sl.start]),
                        pd.Timestamp(candles["timestamp"].iloc[sl.start + i]),
                        i,
                        float(a[i]),
                        float(b[i]),
                    )
    # Earliest bar first: where it starts is what the author needs to see.
    return sorted(found.values(), key=lambda p: (p.bar, p.feature))
