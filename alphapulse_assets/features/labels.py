"""Labels (and the forward returns that go with them) from canonical candles, per symbol, vectorised.

A label at bar t looks at the FUTURE bars t+1 .. t+horizon of the same symbol, so the last ``horizon``
bars of every symbol have no label (NaN): their future is not known yet. Callers drop NaN labels.

Triple barrier: from the close at t, an upper (take-profit) and a lower (stop-loss) barrier are set.
The label is 1 when a future bar's HIGH reaches the upper barrier before any future bar's LOW reaches the
lower one, within ``horizon`` bars; otherwise 0 (stop-loss first, or neither barrier within the horizon:
the vertical barrier). A bar whose range touches both barriers counts as stop-loss first, because bars do
not say which came first and a long position must assume the worse: this biases the label slightly
towards 0, never towards promising profits that a trader could not have had.

Which barriers give a balanced label: the old system's fixed +2% / -1% over 10 bars is hit rarely on
15m bars (most 2.5-hour windows never move 2%): on 120 days of the sample market (BTCUSDT, ETHUSDT) its
positive rate is 5% on 15m bars, 19% on 1h and 31% on 4h. Volatility-scaled barriers
(``volatility_scaled_barriers=True``) set each barrier to a multiple of the recent one-bar volatility
times sqrt(horizon), which behaves the same on every bar size. Measured positive rates with symmetric
multiples m over 10 bars: m=0.5 -> 48% / 47% / 45% (15m / 1h / 4h), m=0.75 -> 41%, m=1.0 -> 30%,
m=1.5 -> 16%; the 2:1 asymmetric (2.0 / 1.0) version -> 7%. ``RECOMMENDED_LABELS`` therefore uses
m=0.5 for every cadence; it is below 50% because ties and the vertical barrier count as 0.

What a model can learn on the sample market (its documented component is ONE-bar momentum in trending
regimes, weaker on coarser bars): out-of-sample log-loss edge over the base rate of a regularised
gradient-boosting model in purged walk-forward on 15m bars, 120 days x 5 symbols (60 days x 2 in
brackets): direction(1) +0.0019 nats, p=0.001 (+0.0001, p=0.47); scaled 0.5/0.5 over 2 bars +0.0013,
p=0.001; scaled 0.5/0.5 over 10 bars +0.0009, p=0.06 (-0.005); direction(4) -0.0001. The fixed +2%/-1%
label shows a large edge (+0.05) that is mostly volatility forecasting (whether 2% is reachable at all),
not direction: judge it with care.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from alphapulse_assets.features.indicators import _check_candles, symbol_slices
from alphapulse_assets.recovery.errors import PermanentError

DEFAULT_VOL_WINDOW = 96


def _future_windows(x: np.ndarray, horizon: int) -> np.ndarray:
    """Row t holds x[t+1 .. t+horizon]; rows without a full future get NaN (shape n x horizon)."""
    n = len(x)
    out = np.full((n, horizon), np.nan)
    if n > horizon:
        out[: n - horizon] = np.lib.stride_tricks.sliding_window_view(x[1:], horizon)[: n - horizon]
    return out


def _check_horizon(horizon: int, where: str) -> None:
    if not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise PermanentError(f"horizon must be a positive whole number of bars, got {horizon!r}", where=where)


def rolling_volatility(candles: pd.DataFrame, window: int = DEFAULT_VOL_WINDOW) -> pd.Series:
    """Per-symbol std (ddof=1) of the last ``window`` one-bar log returns, known at bar t (no look-ahead)."""
    _check_candles(candles, "rolling_volatility")
    out = np.full(len(candles), np.nan)
    close = candles["close"].to_numpy(dtype="float64")
    for sl in symbol_slices(candles):
        r = np.diff(np.log(close[sl]))
        if len(r) >= window:
            out[sl][window:] = np.lib.stride_tricks.sliding_window_view(r, window).std(axis=1, ddof=1)
    return pd.Series(out, index=candles.index, name=f"volatility_{window}")


def triple_barrier_labels(
    candles: pd.DataFrame,
    take_profit: float = 0.02,
    stop_loss: float = 0.01,
    horizon: int = 10,
    *,
    volatility_scaled_barriers: bool = False,
    vol_window: int = DEFAULT_VOL_WINDOW,
) -> pd.Series:
    """1 if take-profit (on highs) is touched before stop-loss (on lows) within ``horizon`` bars, else 0.

    Fixed barriers (default): upper = close * (1 + take_profit), lower = close * (1 - stop_loss).
    With ``volatility_scaled_barriers=True`` the two numbers are multiples of ``sigma_t * sqrt(horizon)``
    where sigma_t is ``rolling_volatility(candles, vol_window)`` at t: upper = close * exp(+tp * s),
    lower = close * exp(-sl * s). Rows without a full future (last ``horizon`` bars of each symbol) or,
    when scaled, without a volatility estimate yet, are NaN. See the module docstring for ties.
    """
    where = "triple_barrier_labels"
    _check_candles(candles, where)
    _check_horizon(horizon, where)
    if not (take_profit > 0 and stop_loss > 0):
        raise PermanentError(
            f"barriers must be positive, got take_profit={take_profit}, stop_loss={stop_loss}", where=where
        )
    if not volatility_scaled_barriers and stop_loss >= 1:
        raise PermanentError(f"a fixed stop_loss of {stop_loss} (>= 100%) can never be touched", where=where)

    close = candles["close"].to_numpy(dtype="float64")
    high = candles["high"].to_numpy(dtype="float64")
    low = candles["low"].to_numpy(dtype="float64")
    if volatility_scaled_barriers:
        scale = rolling_volatility(candles, vol_window).to_numpy() * np.sqrt(horizon)
        upper = close * np.exp(take_profit * scale)
        lower = close * np.exp(-stop_loss * scale)
    else:
        upper = close * (1.0 + take_profit)
        lower = close * (1.0 - stop_loss)

    out = np.full(len(candles), np.nan)
    never = horizon + 1  # "not touched within the horizon"
    for sl in symbol_slices(candles):
        fut_high = _future_windows(high[sl], horizon)
        fut_low = _future_windows(low[sl], horizon)
        hit_up = fut_high >= upper[sl, None]
        hit_down = fut_low <= lower[sl, None]
        # index of the first touching future bar (0-based), or `never`
        first_up = np.where(hit_up.any(axis=1), hit_up.argmax(axis=1), never)
        first_down = np.where(hit_down.any(axis=1), hit_down.argmax(axis=1), never)
        label = (first_up < first_down).astype(float)  # equal index = same bar: stop-loss wins
        known = ~np.isnan(fut_high[:, -1]) & ~np.isnan(fut_low[:, -1]) & ~np.isnan(upper[sl]) & ~np.isnan(lower[sl])
        out[sl] = np.where(known, label, np.nan)
    return pd.Series(out, index=candles.index, name="triple_barrier")


def direction_labels(candles: pd.DataFrame, horizon: int = 1) -> pd.Series:
    """1 if the close ``horizon`` bars later is above this close, else 0; NaN for the last ``horizon`` bars."""
    _check_candles(candles, "direction_labels")
    _check_horizon(horizon, "direction_labels")
    ret = forward_returns(candles, horizon).to_numpy()
    out = np.where(np.isnan(ret), np.nan, (ret > 0).astype(float))
    return pd.Series(out, index=candles.index, name="direction")


def forward_returns(candles: pd.DataFrame, horizon: int = 1) -> pd.Series:
    """Simple return from the close at t to the close ``horizon`` bars later (per symbol; NaN at the end).

    What a long position opened at the close of bar t earns; the input of ``strategy_returns``.
    """
    _check_horizon(horizon, "forward_returns")
    close = candles["close"].to_numpy(dtype="float64")
    out = np.full(len(candles), np.nan)
    for sl in symbol_slices(candles):
        c = close[sl]
        if len(c) > horizon:
            out[sl][: len(c) - horizon] = c[horizon:] / c[:-horizon] - 1.0
    return pd.Series(out, index=candles.index, name=f"forward_return_{horizon}")


def last_direction(candles: pd.DataFrame, horizon: int = 1) -> pd.Series:
    """1 if this close is above the close ``horizon`` bars earlier, else 0 (NaN at each symbol's start).

    Known at t; the input of the persistence baseline (``training.evaluation.naive_baselines``).
    """
    _check_horizon(horizon, "last_direction")
    close = candles["close"].to_numpy(dtype="float64")
    out = np.full(len(candles), np.nan)
    for sl in symbol_slices(candles):
        c = close[sl]
        if len(c) > horizon:
            out[sl][horizon:] = (c[horizon:] > c[:-horizon]).astype(float)
    return pd.Series(out, index=candles.index, name=f"last_direction_{horizon}")


# name -> function(candles, **params) -> Series of 0/1/NaN
LABELS: dict[str, Callable[..., pd.Series]] = {
    "triple_barrier": triple_barrier_labels,
    "direction": direction_labels,
}

# Label settings per cadence that give a roughly balanced 0/1 label on every bar size (see module doc).
# Symmetric volatility-scaled barriers: the label says which way the next `horizon` bars break out.
RECOMMENDED_LABELS: dict[str, dict[str, Any]] = {
    cadence: {
        "name": "triple_barrier",
        "params": {"take_profit": 0.5, "stop_loss": 0.5, "horizon": 10, "volatility_scaled_barriers": True},
    }
    for cadence in ("nightly", "weekly", "monthly")
}


def make_labels(candles: pd.DataFrame, name: str, **params: Any) -> pd.Series:
    """Labels by registry name, e.g. ``make_labels(c, "triple_barrier", horizon=10)``."""
    try:
        fn = LABELS[name]
    except KeyError:
        raise PermanentError(
            f"unknown label {name!r}; known labels: {', '.join(sorted(LABELS))}", where="make_labels"
        ) from None
    return fn(candles, **params)
