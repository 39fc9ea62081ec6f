"""Resampling candles from the base bar size to coarser bars (1h and 4h for the weekly/monthly cadences)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphapulse_assets.market_data.schema import CANDLE_COLUMNS, empty_candles, epoch_ns, timeframe_to_timedelta


def resample_candles(
    frame: pd.DataFrame, base_timeframe: str, target_timeframe: str, *, complete_only: bool = True
) -> pd.DataFrame:
    """Aggregate canonical candles to ``target_timeframe`` bars, per symbol, labelled by bar open time.

    open = first, high = max, low = min, close = last, volume = sum. With ``complete_only`` a target bar
    is kept only when every base bar inside it is present, so a gap never hides inside a coarser bar.
    When the base bars are already as coarse as the target, the frame is returned unchanged.
    """
    base, target = timeframe_to_timedelta(base_timeframe), timeframe_to_timedelta(target_timeframe)
    if target <= base:
        return frame.copy()
    if target % base != pd.Timedelta(0):
        raise ValueError(f"{target_timeframe} bars cannot be built from {base_timeframe} bars")
    if frame.empty:
        return empty_candles()
    per_bar = int(target / base)
    ts = epoch_ns(frame["timestamp"])
    bucket = ts - ts % target.value
    # Group by arrays, not Series: a frame filtered from a larger one keeps its index, and Series keys
    # would be aligned on it (and silently match nothing).
    grouped = frame[["open", "high", "low", "close", "volume"]].groupby([frame["symbol"].to_numpy(), bucket], sort=True)
    out = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
    )
    counts = grouped.size()
    if complete_only:
        out = out[counts.to_numpy() == per_bar]
    out.index.names = ["symbol", "bucket"]
    out = out.reset_index()
    out["timestamp"] = pd.to_datetime(out["bucket"].astype(np.int64), utc=True).astype("datetime64[ns, UTC]")
    out["symbol"] = out["symbol"].astype(object)
    return out[list(CANDLE_COLUMNS)].reset_index(drop=True)
