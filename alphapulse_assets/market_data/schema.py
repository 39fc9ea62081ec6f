"""The canonical candle schema, bar sizes, and the normalisation every source goes through.

Every source returns a pandas DataFrame with exactly these columns, sorted by (symbol, timestamp):

======== ======================= =====================================================
column   dtype                   meaning
======== ======================= =====================================================
timestamp datetime64[ns, UTC]    bar open time, UTC
symbol   string                  instrument, upper case (e.g. ``BTCUSDT``)
open     float64                 first trade price of the bar
high     float64                 highest price
low      float64                 lowest price
close    float64                 last price
volume   float64                 traded volume in base units
======== ======================= =====================================================

``normalize_candles`` maps the column names and timestamp formats that real exports use onto it, and
raises :class:`DataValidationError` naming the problem and where it was found. Content problems that a
data-quality check reports better (duplicates, OHLC inconsistency, gaps) are left for the checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from alphapulse_assets.recovery.errors import DataValidationError

PRICE_COLUMNS = ("open", "high", "low", "close")
NUMERIC_COLUMNS = (*PRICE_COLUMNS, "volume")
CANDLE_COLUMNS = ("timestamp", "symbol", *NUMERIC_COLUMNS)

ARROW_SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.timestamp("ns", tz="UTC"), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        *[pa.field(c, pa.float64()) for c in NUMERIC_COLUMNS],
    ]
)

# Names real exports use (Binance, Yahoo, MetaTrader, Dukascopy, TradingView, Kaggle dumps), lower-cased.
COLUMN_ALIASES: Mapping[str, tuple[str, ...]] = {
    "timestamp": (
        "timestamp", "time", "date", "datetime", "open_time", "open time", "opentime", "gmt time",
        "local time", "ts", "unix", "date_time",
    ),
    "symbol": ("symbol", "ticker", "pair", "instrument", "asset"),
    "open": ("open", "o", "open_price", "opening price"),
    "high": ("high", "h", "high_price", "highest price"),
    "low": ("low", "l", "low_price", "lowest price"),
    "close": ("close", "c", "close_price", "closing price", "last", "price"),
    "volume": ("volume", "v", "vol", "base_volume", "volume_base", "tick volume", "tickvol", "qty"),
}

_TIMEFRAME_UNITS = {"m": "min", "h": "h", "d": "D", "w": "W"}


def timeframe_to_timedelta(timeframe: str) -> pd.Timedelta:
    """'15m' -> 15 minutes, '1h', '4h', '1d'. Raises ValueError naming the bad value."""
    tf = timeframe.strip().lower()
    if len(tf) < 2 or tf[-1] not in _TIMEFRAME_UNITS or not tf[:-1].isdigit() or int(tf[:-1]) <= 0:
        raise ValueError(f"unknown bar size {timeframe!r}: use a number and one of m, h, d, w (e.g. 15m, 1h, 1d)")
    return pd.Timedelta(int(tf[:-1]), unit=_TIMEFRAME_UNITS[tf[-1]])


def pandas_freq(timeframe: str) -> str:
    tf = timeframe.strip().lower()
    timeframe_to_timedelta(tf)
    return f"{int(tf[:-1])}{_TIMEFRAME_UNITS[tf[-1]]}"


def day_bounds(day: date | str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of a UTC calendar day."""
    d = date.fromisoformat(day) if isinstance(day, str) else day
    start = pd.Timestamp(datetime.combine(d, time(0), tzinfo=timezone.utc))
    return start, start + pd.Timedelta(days=1)


def days_between(start: date, end_inclusive: date) -> list[date]:
    n = (end_inclusive - start).days + 1
    return [start + timedelta(days=i) for i in range(max(n, 0))]


def epoch_ns(timestamps: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds since the epoch (no copy, no warning for tz-aware data)."""
    return pd.DatetimeIndex(timestamps).asi8


def empty_candles() -> pd.DataFrame:
    return ARROW_SCHEMA.empty_table().to_pandas()


def _resolve_columns(columns: list[str], where: str) -> dict[str, str]:
    """Map the frame's own column names to canonical ones."""
    lowered = {str(c).strip().lower(): c for c in columns}
    mapping: dict[str, str] = {}
    for canonical, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in lowered:
                mapping[lowered[alias]] = canonical
                break
    found = set(mapping.values())
    missing = [c for c in CANDLE_COLUMNS if c not in found and c != "symbol"]
    if missing:
        raise DataValidationError(
            f"missing required column(s) {', '.join(missing)}; found columns {list(columns)}. "
            f"Accepted names: " + "; ".join(f"{c}: {'/'.join(COLUMN_ALIASES[c][:4])}" for c in missing),
            where=where,
        )
    return mapping


def parse_timestamps(values: pd.Series, where: str, source_timezone: str | None = None) -> pd.Series:
    """Parse epoch numbers (s, ms, us, ns by magnitude) or date strings into UTC timestamps.

    Naive timestamps are taken to be in ``source_timezone`` (UTC when not given); strings with an
    offset are converted to UTC. Anything unparseable raises, naming the first bad value and its row.
    """
    if len(values) == 0:
        return pd.Series(pd.DatetimeIndex([], tz="UTC"))
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values)
    elif pd.api.types.is_numeric_dtype(values):
        v = values.astype("float64")
        if v.isna().any():
            row = int(np.flatnonzero(v.isna().to_numpy())[0])
            raise DataValidationError(f"empty timestamp at row {row}", where=where)
        magnitude = float(np.nanmedian(np.abs(v.to_numpy())))
        unit = "s" if magnitude < 1e11 else "ms" if magnitude < 1e14 else "us" if magnitude < 1e17 else "ns"
        parsed = pd.to_datetime(v.astype("int64"), unit=unit, utc=True)
    else:
        text = values.astype("string").str.strip()
        parsed = pd.to_datetime(text, errors="coerce", format="mixed", utc=False)
        bad = parsed.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataValidationError(
                f"unparseable timestamp {text.iloc[row]!r} at row {row} "
                f"({int(bad.sum())} bad value(s) in all)",
                where=where,
            )
    if getattr(parsed.dt, "tz", None) is None:
        tz = source_timezone or "UTC"
        try:
            parsed = parsed.dt.tz_localize(tz, ambiguous="raise", nonexistent="raise")
        except Exception as exc:  # unknown zone name or a DST gap/overlap
            raise DataValidationError(f"cannot place naive timestamps in time zone {tz!r}: {exc}", where=where) from exc
    return parsed.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def normalize_candles(
    frame: pd.DataFrame,
    *,
    where: str,
    symbol: str | None = None,
    source_timezone: str | None = None,
) -> pd.DataFrame:
    """Bring any OHLCV frame to the canonical schema, or raise DataValidationError saying why."""
    if frame is None or len(frame.columns) == 0:
        raise DataValidationError("no columns: the file or response is empty", where=where)
    mapping = _resolve_columns(list(frame.columns), where)
    if "symbol" not in mapping.values() and symbol is None:
        raise DataValidationError("no symbol column and no symbol given for this data", where=where)
    df = frame[list(mapping)].rename(columns=mapping)
    if symbol is not None:
        if "symbol" in df.columns:
            other = set(df["symbol"].astype("string").str.upper().unique()) - {symbol.upper()}
            if other:
                raise DataValidationError(f"rows for other symbol(s) {sorted(other)[:5]} in data for {symbol}", where=where)
        df["symbol"] = symbol
    out = pd.DataFrame(
        {
            "timestamp": parse_timestamps(df["timestamp"].reset_index(drop=True), where, source_timezone),
            "symbol": df["symbol"].astype("string").str.upper().str.strip().reset_index(drop=True).astype(object),
        }
    )
    for col in NUMERIC_COLUMNS:
        raw = df[col].reset_index(drop=True)
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna() & raw.notna() & (raw.astype("string").str.strip() != "")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataValidationError(
                f"non-numeric value {raw.iloc[row]!r} in column {col!r} at row {row} "
                f"({int(bad.sum())} bad value(s) in that column)",
                where=where,
            )
        out[col] = values.astype("float64")
    out = out.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    return out


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Canonical frame -> Arrow table with the exact canonical schema (raises if a column is off)."""
    return pa.Table.from_pandas(frame[list(CANDLE_COLUMNS)], schema=ARROW_SCHEMA, preserve_index=False)


def schema_problems(frame: pd.DataFrame) -> list[str]:
    """What is wrong with a frame's columns and dtypes, as sentences; empty when it is canonical."""
    problems = []
    missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    extra = [c for c in frame.columns if c not in CANDLE_COLUMNS]
    if extra:
        problems.append(f"unexpected column(s): {', '.join(map(str, extra))}")
    if "timestamp" in frame.columns:
        dtype = frame["timestamp"].dtype
        if not (isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC"):
            problems.append(f"timestamp must be datetime64[ns, UTC], is {dtype}")
    for col in NUMERIC_COLUMNS:
        if col in frame.columns and frame[col].dtype != np.float64:
            problems.append(f"{col} must be float64, is {frame[col].dtype}")
    return problems
