"""Technical features from canonical candles: vectorised, per symbol, with no look-ahead.

``build_features(candles)`` returns one column per feature, indexed like the input. The value of a
feature at bar ``t`` of a symbol depends only on that symbol's bars ``t - FEATURE_LOOKBACK[name] .. t``
(never on later bars, never on other symbols). That bound is exact, not approximate: exponential
averages are truncated at ``3 * span`` bars (the weight left beyond that is about 0.25%), so that
``MAX_LOOKBACK`` is a true bound and the embargo derived from it (``training.splits.required_embargo``)
is sufficient. Rows whose window is not yet full are NaN; callers drop them.

Prices enter as log returns or ratios to the current close, so features are comparable across symbols
whose prices differ by five orders of magnitude.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphapulse_assets.recovery.errors import DataValidationError

RETURN_HORIZONS = (1, 4, 16)
VOL_WINDOWS = (16, 96)
RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BOLLINGER_WINDOW, BOLLINGER_K = 20, 2.0
ATR_PERIOD = 14
VOLUME_WINDOW = 96
PERSISTENCE_WINDOW = 32
AUTOCORR_WINDOW = 96
SHORT_AUTOCORR_WINDOW = 32
EMA_TRUNCATION = 3  # an EMA of span s uses the last 3*s bars


def _ema_window(span: float) -> int:
    return int(round(EMA_TRUNCATION * span))


# Bars before t that each feature may read (t itself is always read).
FEATURE_LOOKBACK: dict[str, int] = {
    **{f"log_ret_{h}": h for h in RETURN_HORIZONS},
    **{f"realized_vol_{w}": w for w in VOL_WINDOWS},
    **{f"ret_z_{h}": max(h, max(VOL_WINDOWS)) for h in RETURN_HORIZONS},
    "rsi_14": _ema_window(2 * RSI_PERIOD - 1),  # Wilder smoothing = EMA of span 2n-1, over diffs
    "macd_line": _ema_window(MACD_SLOW) - 1,
    "macd_signal": _ema_window(MACD_SLOW) - 1 + _ema_window(MACD_SIGNAL) - 1,
    "macd_hist": _ema_window(MACD_SLOW) - 1 + _ema_window(MACD_SIGNAL) - 1,
    "bollinger_pct_b": BOLLINGER_WINDOW - 1,
    "atr_14": _ema_window(2 * ATR_PERIOD - 1),  # true range reads the previous close
    "volume_z": VOLUME_WINDOW - 1,
    "range_hl": 0,
    "momentum_persistence": PERSISTENCE_WINDOW + 1,  # each pair reads two returns, i.e. three closes
    "return_autocorr": AUTOCORR_WINDOW + 1,
    "return_autocorr_short": SHORT_AUTOCORR_WINDOW + 1,
    "regime_weighted_move": max(AUTOCORR_WINDOW + 1, max(VOL_WINDOWS)),
}
MAX_LOOKBACK: int = max(FEATURE_LOOKBACK.values())

FEATURE_DOCS: dict[str, str] = {
    **{f"log_ret_{h}": f"log(close_t / close_(t-{h})): the return over the last {h} bar(s)" for h in RETURN_HORIZONS},
    **{f"realized_vol_{w}": f"standard deviation (ddof=1) of the last {w} one-bar log returns" for w in VOL_WINDOWS},
    **{
        f"ret_z_{h}": f"log_ret_{h} / (realized_vol_{max(VOL_WINDOWS)} * sqrt({h})): the return in units of recent volatility"
        for h in RETURN_HORIZONS
    },
    "rsi_14": "RSI(14) with Wilder smoothing, rescaled to [-1, 1] ((RSI - 50) / 50)",
    "macd_line": "(EMA12 - EMA26) of close, divided by close_t",
    "macd_signal": "EMA9 of the MACD line (12/26 on close), divided by close_t",
    "macd_hist": "MACD line minus its signal line, divided by close_t",
    "bollinger_pct_b": "Bollinger %B(20, 2): (close - lower band) / (upper - lower); 0.5 = on the 20-bar mean",
    "atr_14": "average true range (Wilder, 14) divided by close_t",
    "volume_z": "z-score of log volume against its last 96 bars (mean and std include bar t)",
    "range_hl": "(high_t - low_t) / close_t: the bar's own range",
    "momentum_persistence": (
        "share of the last 32 bars whose return has the sign of the bar before it, minus 0.5: "
        "positive when moves continue (momentum), negative when they reverse"
    ),
    "return_autocorr": (
        "lag-1 autocorrelation of one-bar log returns over the last 96 pairs: "
        "how strongly moves have continued lately (a trend/momentum regime detector)"
    ),
    "return_autocorr_short": "the same over the last 32 pairs: reacts faster to a change of regime",
    "regime_weighted_move": (
        "ret_z_1 * return_autocorr: the last move, signed by whether moves have lately continued "
        "(positive) or reversed (negative); the interaction a tree would otherwise need many splits for"
    ),
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_LOOKBACK)
assert set(FEATURE_DOCS) == set(FEATURE_NAMES)


def _truncated_ema(x: np.ndarray, span: float) -> np.ndarray:
    """EMA with weights alpha*(1-alpha)^i for i < 3*span, renormalised; NaN until the window is full.

    A FIR filter instead of the usual recursive one, so the value at t provably ignores bars older than
    the window (see the module docstring). NaN inputs propagate to every output whose window holds them.
    """
    alpha = 2.0 / (span + 1.0)
    window = _ema_window(span)
    weights = alpha * (1.0 - alpha) ** np.arange(window)
    weights /= weights.sum()
    out = np.full(len(x), np.nan)
    if len(x) >= window:
        # convolve with "valid" gives out[t] = sum_i w[i] * x[t - i] for full windows only
        out[window - 1 :] = np.convolve(x, weights, mode="valid")
    return out


def _rolling(x: np.ndarray, window: int) -> np.ndarray | None:
    return np.lib.stride_tricks.sliding_window_view(x, window) if len(x) >= window else None


def _rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    view = _rolling(x, window)
    if view is not None:
        out[window - 1 :] = view.mean(axis=1)
    return out


def _rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    view = _rolling(x, window)
    if view is not None:
        out[window - 1 :] = view.std(axis=1, ddof=1)
    return out


def _lag(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def _symbol_features(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> dict[str, np.ndarray]:
    """All features of one symbol's bars (arrays in time order)."""
    # Idiom below: ``np.where(cond, a, b) + 0 * x`` keeps NaN where x is NaN (np.where alone would not).
    n = len(close)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_close = np.log(close)
        r1 = log_close - _lag(log_close, 1)
        out: dict[str, np.ndarray] = {}
        for h in RETURN_HORIZONS:
            out[f"log_ret_{h}"] = log_close - _lag(log_close, h)
        for w in VOL_WINDOWS:
            out[f"realized_vol_{w}"] = _rolling_std(r1, w)
        long_vol = out[f"realized_vol_{max(VOL_WINDOWS)}"]
        for h in RETURN_HORIZONS:
            out[f"ret_z_{h}"] = (
                np.where(long_vol > 0, out[f"log_ret_{h}"] / (long_vol * np.sqrt(h)), 0.0) + 0 * long_vol
            )

        # RSI: Wilder's smoothing is an EMA with alpha = 1/n, i.e. span 2n - 1.
        diff = close - _lag(close, 1)
        gain = _truncated_ema(np.where(diff > 0, diff, 0.0) + 0 * diff, 2 * RSI_PERIOD - 1)
        loss = _truncated_ema(np.where(diff < 0, -diff, 0.0) + 0 * diff, 2 * RSI_PERIOD - 1)
        total = gain + loss
        out["rsi_14"] = np.where(total > 0, (gain - loss) / total, 0.0) + 0 * total  # (RSI-50)/50

        line = _truncated_ema(close, MACD_FAST) - _truncated_ema(close, MACD_SLOW)
        signal = np.full(n, np.nan)
        first = np.flatnonzero(~np.isnan(line))
        if len(first):
            signal[first[0] :] = _truncated_ema(line[first[0] :], MACD_SIGNAL)
        out["macd_line"] = line / close
        out["macd_signal"] = signal / close
        out["macd_hist"] = (line - signal) / close

        mean20 = _rolling_mean(close, BOLLINGER_WINDOW)
        std20 = _rolling_std(close, BOLLINGER_WINDOW)
        width = 2 * BOLLINGER_K * std20
        out["bollinger_pct_b"] = np.where(width > 0, (close - (mean20 - BOLLINGER_K * std20)) / width, 0.5) + 0 * width

        prev_close = _lag(close, 1)
        true_range = np.maximum(high - low, np.maximum(np.abs(high - prev_close), np.abs(low - prev_close)))
        out["atr_14"] = _truncated_ema(true_range, 2 * ATR_PERIOD - 1) / close

        log_volume = np.log1p(np.maximum(volume, 0.0))
        vol_mean = _rolling_mean(log_volume, VOLUME_WINDOW)
        vol_std = _rolling_std(log_volume, VOLUME_WINDOW)
        out["volume_z"] = np.where(vol_std > 0, (log_volume - vol_mean) / vol_std, 0.0) + 0 * vol_std

        out["range_hl"] = (high - low) / close

        # Momentum regime: do consecutive bar moves keep their sign, and are returns autocorrelated?
        same_sign = np.where(
            np.isnan(r1) | np.isnan(_lag(r1, 1)), np.nan, (np.sign(r1) * np.sign(_lag(r1, 1)) > 0).astype(float)
        )
        out["momentum_persistence"] = _rolling_mean(same_sign, PERSISTENCE_WINDOW) - 0.5
        x, y = _lag(r1, 1), r1
        for name, w in (("return_autocorr", AUTOCORR_WINDOW), ("return_autocorr_short", SHORT_AUTOCORR_WINDOW)):
            mx, my = _rolling_mean(x, w), _rolling_mean(y, w)
            cov = _rolling_mean(x * y, w) - mx * my
            vx = _rolling_mean(x * x, w) - mx * mx
            vy = _rolling_mean(y * y, w) - my * my
            denom = np.sqrt(np.maximum(vx, 0) * np.maximum(vy, 0))
            out[name] = np.where(denom > 0, cov / denom, 0.0) + 0 * denom
        out["regime_weighted_move"] = out["ret_z_1"] * out["return_autocorr"]
    return out


def _check_candles(candles: pd.DataFrame, where: str) -> None:
    missing = [c for c in ("symbol", "timestamp", "open", "high", "low", "close", "volume") if c not in candles.columns]
    if missing:
        raise DataValidationError(f"candles lack column(s) {', '.join(missing)}", where=where)
    sym = candles["symbol"].to_numpy()
    ts = candles["timestamp"].to_numpy()
    if len(sym) > 1:
        same = sym[1:] == sym[:-1]
        if np.any(same & (ts[1:] <= ts[:-1])):
            raise DataValidationError(
                "candles are not sorted by time (or repeat a timestamp) within a symbol", where=where
            )


def symbol_slices(candles: pd.DataFrame) -> list[slice]:
    """Contiguous row ranges of each symbol (candles are sorted by symbol, then time)."""
    sym = candles["symbol"].to_numpy()
    if len(sym) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, sym[1:] != sym[:-1]])
    ends = np.r_[starts[1:], len(sym)]
    if len(set(sym[starts])) != len(starts):
        raise DataValidationError(
            "a symbol's rows are not contiguous: sort candles by symbol, then time", where="symbol_slices"
        )
    return [slice(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def build_features(candles: pd.DataFrame) -> pd.DataFrame:
    """One float64 column per feature (``FEATURE_NAMES`` order), indexed like ``candles``.

    Computed per symbol on its own bars; warm-up rows (fewer than ``FEATURE_LOOKBACK[name]`` earlier
    bars) are NaN.
    """
    where = "build_features"
    _check_candles(candles, where)
    columns = {name: np.full(len(candles), np.nan) for name in FEATURE_NAMES}
    arrays = {c: candles[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close", "volume")}
    for sl in symbol_slices(candles):
        feats = _symbol_features(*(arrays[c][sl] for c in ("open", "high", "low", "close", "volume")))
        for name in FEATURE_NAMES:
            columns[name][sl] = feats[name]
    out = pd.DataFrame(columns, index=candles.index)
    return out.replace([np.inf, -np.inf], np.nan)
