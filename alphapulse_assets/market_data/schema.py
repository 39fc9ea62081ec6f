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
from alphapulse_assets.settings import (  # noqa: F401 (imported from here too)
    TIMEFRAME_UNITS,
    canonical_timeframe,
    timeframe_to_timedelta,
)

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
        "timestamp",
        "time",
        "date",
        "datetime",
        "open_time",
        "open time",
        "opentime",
        "gmt time",
        "local time",
        "ts",
        "unix",
        "date_time",
    ),
    "symbol": ("symbol", "ticker", "pair", "instrument", "asset"),
    "open": ("open", "o", "open_price", "opening price"),
    "high": ("high", "h", "high_price", "highest price"),
    "low": ("low", "l", "low_price", "lowest price"),
    "close": ("close", "c", "close_price", "closing price", "last", "price"),
    "volume": ("volume", "v", "vol", "base_volume", "volume_base", "tick volume", "tickvol", "qty"),
}


def pandas_freq(timeframe: str) -> str:
    tf = canonical_timeframe(timeframe)
    return f"{int(tf[:-1])}{TIMEFRAME_UNITS[tf[-1]]}"


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
    lowered = {str(c).strip().strip("<>").strip().lower(): c for c in columns}
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


# Ends in a UTC offset, "Z", or a zone word: "...00:00:00+02:00", "...00:00Z", "... 00:00 UTC". A date alone
# ("2024-01-01") does not match: an offset needs four digits after its sign.
_OFFSET_RE = r"(?:Z|[+-]\d{2}:?\d{2}|UTC|GMT)$"
# Formats tried before pandas' row-by-row "mixed" parser, which is ten times slower on large files.
_DAY_FIRST_FORMATS = tuple(
    f"%d{sep}%m{sep}%Y{clock}{zone}"
    for sep in (".", "/", "-")
    for clock in (" %H:%M:%S.%f", " %H:%M:%S", " %H:%M", "")
    for zone in ("", "%z")
)
_OTHER_FORMATS = (
    "ISO8601",
    "%Y.%m.%d %H:%M:%S",
    "%Y.%m.%d %H:%M",
    "%Y.%m.%d",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
)
# Dukascopy's "GMT+0200" means two hours east of UTC; dateutil reads it with the POSIX (opposite) sign.
_GMT_PREFIX_RE = r"\s*(?:GMT|UTC)\s*(?=[+-]\d{2}:?\d{2}$)"


def _at_row(row: int, line_offset: int | None) -> str:
    """'at row 3', or 'at row 3 (line 5 of the file)' when the caller knows where data rows start."""
    return f"at row {row}" + (f" (line {row + line_offset} of the file)" if line_offset is not None else "")


def check_timezone(name: str, where: str) -> None:
    """Raise DataValidationError unless ``name`` is a time zone pandas knows (IANA names like 'Europe/Berlin')."""
    try:
        pd.Timestamp("2000-01-01").tz_localize(name)
    except Exception as exc:
        raise DataValidationError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC', 'Europe/London' or 'America/New_York' ({exc})",
            where=where,
        ) from exc


def _day_first(text: pd.Series, where: str) -> bool:
    """Whether dates are written day first: '01.02.2024' (Dukascopy, MetaTrader, European exports) always
    is; '13/01/2024' is when some first field exceeds 12. Parsing row by row would otherwise read
    '02.01.2024' as 1 February and '13.01.2024' as 13 January in the same file."""
    if text.str.match(r"\d{1,2}\.\d{1,2}\.\d{4}").fillna(False).any():
        return True
    candidates = text[text.str.match(r"\d{1,2}/\d{1,2}/\d{4}").fillna(False).astype(bool)]
    if candidates.empty:
        return False
    slashed = candidates.str.extract(r"^(\d{1,2})/(\d{1,2})/").astype(int)
    first_big, second_big = bool((slashed[0] > 12).any()), bool((slashed[1] > 12).any())
    if first_big and second_big:
        raise DataValidationError("dates mix day-first and month-first order (e.g. 13/01 and 01/13)", where=where)
    return first_big


def _strings_to_datetime(text: pd.Series, dayfirst: bool, utc: bool) -> pd.Series:
    """Parse with the first fixed format that fits the whole column, else row by row (NaT where nothing fits)."""
    sample = text.head(500)
    for fmt in _DAY_FIRST_FORMATS if dayfirst else _OTHER_FORMATS:
        try:
            if pd.to_datetime(sample, format=fmt, errors="coerce", utc=utc).isna().any():
                continue
            parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=utc)
        except (ValueError, TypeError):
            continue
        if not parsed.isna().any():
            return parsed
        break
    return pd.to_datetime(text, errors="coerce", format="mixed", dayfirst=dayfirst, utc=utc)


def _localize(parsed: pd.Series, text: pd.Series | None, tz: str, where: str, line_offset: int | None) -> pd.Series:
    check_timezone(tz, where)
    try:
        # "infer" resolves the repeated hour at the end of summer time from the order of the rows.
        return parsed.dt.tz_localize(tz, ambiguous="infer", nonexistent="raise")
    except Exception as exc:
        probe = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        bad = probe.isna() & parsed.notna()
        row = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else None
        shown = (text if text is not None else parsed.astype("string")).iloc[row] if row is not None else None
        what = (
            f"local time {shown!r} {_at_row(row, line_offset)} does not exist or is ambiguous in {tz!r} "
            f"(a daylight-saving change; {int(bad.sum())} such row(s))"
            if row is not None
            else f"cannot place naive timestamps in time zone {tz!r} ({exc})"
        )
        raise DataValidationError(
            f"{what}: if the file's times are UTC, do not set a source time zone; otherwise export with UTC offsets",
            where=where,
        ) from exc


def parse_timestamps(
    values: pd.Series,
    where: str,
    source_timezone: str | None = None,
    *,
    line_offset: int | None = None,
) -> pd.Series:
    """Parse epoch numbers (s, ms, us, ns by magnitude), YYYYMMDD integers or date strings into UTC.

    Naive timestamps are taken to be in ``source_timezone`` (UTC when not given); strings with an
    offset are converted to UTC (the offset wins over ``source_timezone``). Day-first dates
    ('31.01.2024 00:00:00.000') are recognised. Anything unparseable raises, naming the first bad value and
    its row (and its line in the file when ``line_offset``, the line number of row 0, is given).
    """
    if source_timezone is not None:
        check_timezone(source_timezone, where)
    if len(values) == 0:
        return pd.Series(pd.DatetimeIndex([], tz="UTC"))
    text: pd.Series | None = None
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values)
    elif pd.api.types.is_numeric_dtype(values):
        v = values.astype("float64")
        if v.isna().any():
            row = int(np.flatnonzero(v.isna().to_numpy())[0])
            raise DataValidationError(f"empty timestamp {_at_row(row, line_offset)}", where=where)
        magnitude = float(np.nanmedian(np.abs(v.to_numpy())))
        as_int = v.astype("int64")
        if 1e7 <= magnitude < 1e8:
            # 20240131: a date written as a number (epoch seconds this small would be 1970-1973).
            parsed = pd.to_datetime(as_int.astype("string"), format="%Y%m%d", errors="coerce")
            bad = parsed.isna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataValidationError(
                    f"unparseable timestamp {values.iloc[row]!r} {_at_row(row, line_offset)}: "
                    "numbers this size are read as YYYYMMDD dates",
                    where=where,
                )
        else:
            unit = "s" if magnitude < 1e11 else "ms" if magnitude < 1e14 else "us" if magnitude < 1e17 else "ns"
            parsed = pd.to_datetime(as_int, unit=unit, utc=True)
    else:
        text = values.astype(pd.StringDtype("pyarrow")).str.strip()
        if text.str.contains("GMT|UTC", regex=True).fillna(False).any():
            text = text.str.replace(_GMT_PREFIX_RE, "", regex=True)
        has_offset = text.str.contains(_OFFSET_RE, regex=True).fillna(False).astype(bool)
        if has_offset.any() and not has_offset.all():
            with_, without = (
                int(np.flatnonzero(has_offset.to_numpy())[0]),
                int(np.flatnonzero(~has_offset.to_numpy())[0]),
            )
            raise DataValidationError(
                f"timestamps mix values with a UTC offset ({text.iloc[with_]!r} {_at_row(with_, line_offset)}) "
                f"and without one ({text.iloc[without]!r} {_at_row(without, line_offset)})",
                where=where,
            )
        dayfirst = _day_first(text, where)
        parsed = _strings_to_datetime(text, dayfirst, utc=bool(has_offset.all()))
        bad = parsed.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataValidationError(
                f"unparseable timestamp {text.iloc[row]!r} {_at_row(row, line_offset)} "
                f"({int(bad.sum())} bad value(s) in all)",
                where=where,
            )
    if getattr(parsed.dt, "tz", None) is None:
        parsed = _localize(parsed, text, source_timezone or "UTC", where, line_offset)
    return parsed.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def normalize_candles(
    frame: pd.DataFrame,
    *,
    where: str,
    symbol: str | None = None,
    source_timezone: str | None = None,
    line_offset: int | None = None,
) -> pd.DataFrame:
    """Bring any OHLCV frame to the canonical schema, or raise DataValidationError saying why.

    ``line_offset`` is the file line of row 0 (2 for a CSV with a header), so messages can name the line.
    """
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
                raise DataValidationError(
                    f"rows for other symbol(s) {sorted(other)[:5]} in data for {symbol}", where=where
                )
        df["symbol"] = symbol
    out = pd.DataFrame(
        {
            "timestamp": parse_timestamps(
                df["timestamp"].reset_index(drop=True), where, source_timezone, line_offset=line_offset
            ),
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
                f"non-numeric value {raw.iloc[row]!r} in column {col!r} {_at_row(row, line_offset)} "
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
