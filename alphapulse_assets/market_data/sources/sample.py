"""A seeded SYNTHETIC market: the embedded default source, so the platform runs with no data of its own.

The data is invented. It is deterministic per (symbol, day) and continuous across days (each day opens
at the previous day's close), and it has the stylised facts a model meets on a real market:

- regime changes: a hidden Markov chain per symbol moves between calm, up-trend, down-trend and
  turbulent days (mean stay 6-17 days);
- volatility clustering: daily volatility follows a log-AR(1) process on top of the regime's level, and
  within a day it follows the usual U-shaped intraday profile;
- fat tails: bar returns are Student-t with 4.5 degrees of freedom;
- plausible volume: log-normal, higher on volatile bars and at the day's open and close hours.

The weak, DOCUMENTED predictable component, so that the demo can show models beating naive baselines:
inside trending regimes, returns follow their own recent average (an ARMA(1,1) trend-following term,
``MOMENTUM_DECAY`` and ``MOMENTUM_STRENGTH``, whose autocorrelation fades over a few hours, so it shows on
15m, 1h and 4h bars) plus a small drift in the trend's direction. Outside trends, returns are
unpredictable, except that calm regimes mean-revert (the same term with the opposite sign), so that
"the last move continues" is right in trends and wrong in calm markets. Each year of bars comes from
one generator seeded by (symbol, year, bar size), and each day opens at the previous day's close.
A model trained on shuffled labels still finds nothing, which is what the promotion gate must see.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import date, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd

from alphapulse_assets.market_data.schema import CANDLE_COLUMNS, empty_candles, timeframe_to_timedelta
from alphapulse_assets.market_data.sources.base import CandleSource
from alphapulse_assets.recovery.errors import NoDataError, PermanentError, UnknownSymbolError

EPOCH = date(2020, 1, 1)
HORIZON_DAYS = 365 * 15  # the synthetic market exists from EPOCH for this many days
# Trend-following component inside trending regimes (see _momentum_filter): memory and strength.
MOMENTUM_DECAY = 0.9  # per 15 minutes: the trend signal fades over a few hours
MOMENTUM_STRENGTH = 0.8
# Calm regimes mean-revert: pooled over all regimes, "the last move continues" is nearly a coin flip, so
# only a model that recognises the regime (e.g. from recent return autocorrelation) has an edge.
REVERSION_STRENGTH = 0.8
TREND_DRIFT_PER_DAY = 0.004  # log drift per day in the trend's direction

# Hand-set start prices and daily volatilities for the default universe; other symbols get derived ones.
_KNOWN = {
    "BTCUSDT": (42_000.0, 0.025, 900.0),
    "ETHUSDT": (2_300.0, 0.032, 12_000.0),
    "ADAUSDT": (0.60, 0.042, 9_000_000.0),
    "DOTUSDT": (7.5, 0.045, 600_000.0),
    "LINKUSDT": (15.0, 0.046, 400_000.0),
}
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,12}(USDT|USDC|USD|BTC|ETH|EUR)$")

# Regimes: 0 calm, 1 up-trend, 2 down-trend, 3 turbulent.
_REGIME_VOL = np.array([0.7, 1.0, 1.1, 1.9])
_REGIME_TRANSITIONS = np.array(
    [
        [0.94, 0.025, 0.025, 0.01],
        [0.04, 0.94, 0.005, 0.015],
        [0.04, 0.005, 0.93, 0.025],
        [0.10, 0.03, 0.04, 0.83],
    ]
)


def _seed(*parts: object) -> int:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def symbol_parameters(symbol: str) -> tuple[float, float, float]:
    """(start price, daily volatility, mean volume per 15m bar) of a symbol."""
    if symbol in _KNOWN:
        return _KNOWN[symbol]
    if not _SYMBOL_RE.match(symbol):
        raise UnknownSymbolError(
            f"unknown symbol {symbol!r}: the sample market has pairs like BTCUSDT or SOLUSDT (upper case, quote asset last)",
            where="sample source",
        )
    rng = np.random.default_rng(_seed("params", symbol))
    return float(np.exp(rng.uniform(-2, 8))), float(rng.uniform(0.03, 0.06)), float(np.exp(rng.uniform(8, 14)))


@lru_cache(maxsize=256)
def _daily_path(symbol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-day regime, volatility and drift over the whole horizon (cheap: a few ms per symbol)."""
    _, vol0, _ = symbol_parameters(symbol)
    rng = np.random.default_rng(_seed("daily", symbol))
    u = rng.random(HORIZON_DAYS)
    regimes = np.empty(HORIZON_DAYS, dtype=np.int8)
    cumulative = np.cumsum(_REGIME_TRANSITIONS, axis=1)
    state = 0
    for i in range(HORIZON_DAYS):
        regimes[i] = state
        state = int(np.searchsorted(cumulative[state], u[i]))
    log_vol_shock = _lfilter([1.0], [1.0, -0.85], rng.normal(0, 0.18, HORIZON_DAYS))
    vol = vol0 * _REGIME_VOL[regimes] * np.exp(log_vol_shock)
    drift = np.where(regimes == 1, TREND_DRIFT_PER_DAY, np.where(regimes == 2, -TREND_DRIFT_PER_DAY, 0.0))
    return regimes, vol, drift


def _lfilter(b, a, x, axis: int = -1) -> np.ndarray:
    """scipy.signal.lfilter, imported on first use: importing scipy.signal costs every process that loads the
    definitions about 0.6 s (bench/README.md, "Import time"), and most of them never make sample candles."""
    from scipy.signal import lfilter as scipy_lfilter

    return scipy_lfilter(b, a, x, axis=axis)


def _intraday_profile(n: int) -> np.ndarray:
    x = np.linspace(0, 1, n, endpoint=False)
    profile = 1.0 + 0.6 * (np.cos(2 * np.pi * x) ** 2)
    return profile / np.sqrt(np.mean(profile**2))


@lru_cache(maxsize=32)
def _momentum_filter(n: int, strength: float) -> tuple[list[float], list[float], float]:
    """ARMA(1,1) of the trend-following (strength > 0) or mean-reverting (< 0) component, and the noise
    scale that keeps the day's volatility what the regime says.

    r_t = e_t + b * m_(t-1), with m an exponential average (decay a) of past returns: autocorrelation
    that decays slowly, so it shows on 15m, 1h and 4h bars alike.
    """
    a = MOMENTUM_DECAY ** (96 / n)  # the same memory in hours whatever the bar size
    rho = a + strength * (1 - a)
    impulse = _lfilter([1.0, -a], [1.0, -rho], np.r_[1.0, np.zeros(n - 1)])
    tail = np.cumsum(impulse)[::-1]  # effect of a shock at bar j on the day's total return
    variance_ratio = float(np.mean(tail**2))
    return [1.0, -a], [1.0, -rho], 1.0 / np.sqrt(variance_ratio)


def _year_index(year: int) -> np.ndarray:
    first = (date(year, 1, 1) - EPOCH).days
    return np.arange(first, (date(year + 1, 1, 1) - EPOCH).days)


@lru_cache(maxsize=1024)
def _year_bars(symbol: str, year: int, n: int) -> dict[str, np.ndarray]:
    """Log returns and noise for every bar of one year (days x bars), from one seeded generator."""
    regimes, vol, drift = _daily_path(symbol)
    idx = _year_index(year)
    rng = np.random.default_rng(_seed("bars", symbol, year, n))
    sigma = vol[idx, None] / np.sqrt(n) * _intraday_profile(n)[None, :]
    eps = rng.standard_t(4.5, (len(idx), n)) / np.sqrt(4.5 / 2.5) * sigma
    r = eps.copy()
    for mask, strength in (
        (np.isin(regimes[idx], (1, 2)), MOMENTUM_STRENGTH),
        (regimes[idx] == 0, -REVERSION_STRENGTH),
    ):
        if mask.any() and strength:
            num, den, scale = _momentum_filter(n, strength)
            r[mask] = _lfilter(num, den, eps[mask] * scale, axis=1)
    r += drift[idx, None] / n
    return {
        "r": r,
        "sigma": sigma,
        "wick": np.abs(rng.normal(0, 0.5, (2, len(idx), n))),
        "volume_noise": rng.lognormal(0, 0.35, (len(idx), n)),
    }


@lru_cache(maxsize=1024)
def _year_open(symbol: str, year: int, n: int) -> float:
    """Log price at the first bar of ``year``: the start price plus every earlier bar's return."""
    if year == EPOCH.year:
        return float(np.log(symbol_parameters(symbol)[0]))
    return _year_open(symbol, year - 1, n) + float(_year_bars(symbol, year - 1, n)["r"].sum())


def generate_day(symbol: str, day: date, timeframe: str = "15m") -> pd.DataFrame:
    """Canonical candles for one symbol and UTC day; the same arguments always give the same frame."""
    bar = timeframe_to_timedelta(timeframe)
    if pd.Timedelta(days=1) % bar != pd.Timedelta(0) or bar > pd.Timedelta(days=1):
        raise PermanentError(
            f"the sample market cannot make {timeframe} bars (use a divisor of one day)", where="sample source"
        )
    index = (day - EPOCH).days
    if not 0 <= index < HORIZON_DAYS:
        raise NoDataError(
            f"the sample market covers {EPOCH} to {EPOCH + timedelta(days=HORIZON_DAYS - 1)}, not {day}",
            where="sample source",
        )
    _, _, base_volume = symbol_parameters(symbol)
    n = int(pd.Timedelta(days=1) / bar)
    bars = _year_bars(symbol, day.year, n)
    row = (day - date(day.year, 1, 1)).days
    r, sigma = bars["r"][row], bars["sigma"][row]
    day_open = _year_open(symbol, day.year, n) + float(bars["r"][:row].sum())
    log_close = day_open + np.cumsum(r)
    close = np.exp(log_close)
    open_ = np.exp(np.concatenate([[day_open], log_close[:-1]]))
    high = np.maximum(open_, close) * np.exp(bars["wick"][0, row] * sigma)
    low = np.minimum(open_, close) * np.exp(-bars["wick"][1, row] * sigma)
    activity = 1.0 + 1.5 * np.abs(r) / sigma.mean()
    volume = base_volume * (96 / n) * _intraday_profile(n) * activity * bars["volume_noise"][row]
    start = pd.Timestamp(day, tz="UTC")
    return pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=n, freq=bar, unit="ns"),
            "symbol": symbol,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
        },
        columns=list(CANDLE_COLUMNS),
    )


class SampleSource(CandleSource):
    """The bundled synthetic market (see module docstring). Its data is not real."""

    name = "sample"
    synthetic = True

    def __init__(self, timeframe: str = "15m"):
        self.timeframe = timeframe

    def fetch(self, symbols: Sequence[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        for s in symbols:
            symbol_parameters(s)  # unknown symbols fail before any work
        first = start.tz_convert("UTC").date()
        last = (end - pd.Timedelta(1)).tz_convert("UTC").date()
        frames = [
            generate_day(s, first + timedelta(days=i), self.timeframe)
            for s in symbols
            for i in range((last - first).days + 1)
        ]
        if not frames:
            return empty_candles()
        out = pd.concat(frames, ignore_index=True)
        mask = (out["timestamp"] >= start) & (out["timestamp"] < end)
        return out.loc[mask].reset_index(drop=True)

    def describe(self) -> str:
        return f"sample (SYNTHETIC market, {self.timeframe} bars)"
