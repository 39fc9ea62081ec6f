"""A seeded SYNTHETIC market: the embedded default source, so the platform runs with no data of its own.

The data is invented. It is deterministic per (symbol, day) and continuous across days (each day opens
at the previous day's close), and it has the stylised facts a model meets on a real market:

- regime changes: a hidden Markov chain per symbol moves between calm, up-trend, down-trend and
  turbulent days (mean stay 5-12 days);
- volatility clustering: daily volatility follows a log-AR(1) process on top of the regime's level, and
  within a day it follows the usual U-shaped intraday profile;
- fat tails: bar returns are Student-t with 4.5 degrees of freedom;
- plausible volume: log-normal, higher on volatile bars and at the day's open and close hours.

The weak, DOCUMENTED predictable component, so that the demo can show models beating naive baselines:
inside trending regimes, 15-minute returns carry short-horizon momentum (AR(1) coefficient
``MOMENTUM_PHI``) and a small drift in the trend's direction. Outside trends, returns are unpredictable.
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
from scipy.signal import lfilter

from alphapulse_assets.market_data.schema import CANDLE_COLUMNS, empty_candles, timeframe_to_timedelta
from alphapulse_assets.market_data.sources.base import CandleSource
from alphapulse_assets.recovery.errors import NoDataError, PermanentError, UnknownSymbolError

EPOCH = date(2020, 1, 1)
HORIZON_DAYS = 365 * 15  # the synthetic market exists from EPOCH for this many days
MOMENTUM_PHI = 0.15  # AR(1) coefficient of 15m returns inside trending regimes
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
        [0.90, 0.04, 0.04, 0.02],
        [0.07, 0.90, 0.01, 0.02],
        [0.07, 0.01, 0.88, 0.04],
        [0.12, 0.03, 0.05, 0.80],
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
def _daily_path(symbol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-day regime, volatility, log return and opening log price over the whole horizon."""
    price0, vol0, _ = symbol_parameters(symbol)
    rng = np.random.default_rng(_seed("daily", symbol))
    u = rng.random(HORIZON_DAYS)
    regimes = np.empty(HORIZON_DAYS, dtype=np.int8)
    cumulative = np.cumsum(_REGIME_TRANSITIONS, axis=1)
    state = 0
    for i in range(HORIZON_DAYS):  # 5,475 steps once per symbol: a few ms
        regimes[i] = state
        state = int(np.searchsorted(cumulative[state], u[i]))
    log_vol_shock = lfilter([1.0], [1.0, -0.85], rng.normal(0, 0.18, HORIZON_DAYS))
    vol = vol0 * _REGIME_VOL[regimes] * np.exp(log_vol_shock)
    drift = np.where(regimes == 1, TREND_DRIFT_PER_DAY, np.where(regimes == 2, -TREND_DRIFT_PER_DAY, 0.0))
    shocks = rng.standard_t(3.5, HORIZON_DAYS) / np.sqrt(3.5 / 1.5)
    returns = drift + vol * shocks
    log_open = np.log(price0) + np.concatenate([[0.0], np.cumsum(returns)[:-1]])
    return regimes, vol, returns, log_open


def _intraday_profile(n: int) -> np.ndarray:
    x = np.linspace(0, 1, n, endpoint=False)
    profile = 1.0 + 0.6 * (np.cos(2 * np.pi * x) ** 2)
    return profile / np.sqrt(np.mean(profile**2))


def generate_day(symbol: str, day: date, timeframe: str = "15m") -> pd.DataFrame:
    """Canonical candles for one symbol and UTC day; the same arguments always give the same frame."""
    bar = timeframe_to_timedelta(timeframe)
    if pd.Timedelta(days=1) % bar != pd.Timedelta(0) or bar > pd.Timedelta(days=1):
        raise PermanentError(f"the sample market cannot make {timeframe} bars (use a divisor of one day)", where="sample source")
    index = (day - EPOCH).days
    if not 0 <= index < HORIZON_DAYS:
        raise NoDataError(
            f"the sample market covers {EPOCH} to {EPOCH + timedelta(days=HORIZON_DAYS - 1)}, not {day}",
            where="sample source",
        )
    _, _, base_volume = symbol_parameters(symbol)
    regimes, vol, returns, log_open = _daily_path(symbol)
    n = int(pd.Timedelta(days=1) / bar)
    rng = np.random.default_rng(_seed("intraday", symbol, day.isoformat(), timeframe))
    sigma = vol[index] / np.sqrt(n) * _intraday_profile(n)
    eps = rng.standard_t(4.5, n) / np.sqrt(4.5 / 2.5) * sigma
    trending = regimes[index] in (1, 2)
    phi = MOMENTUM_PHI * np.sqrt(n / 96) if trending else 0.0
    r = lfilter([1.0], [1.0, -min(phi, 0.6)], eps) if phi else eps
    r = r + (returns[index] - r.sum()) / n  # the day ends where the daily path says it does
    log_close = log_open[index] + np.cumsum(r)
    close = np.exp(log_close)
    open_ = np.exp(np.concatenate([[log_open[index]], log_close[:-1]]))
    wick = np.abs(rng.normal(0, 0.5, (2, n))) * sigma
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    activity = 1.0 + 1.5 * np.abs(r) / sigma.mean()
    volume = base_volume * (96 / n) * _intraday_profile(n) * activity * rng.lognormal(0, 0.35, n)
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
