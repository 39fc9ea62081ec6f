"""Data-quality rules for candle frames: pure functions, one per rule, each saying what, how much, where.

Each rule returns a :class:`QualityResult`. ``blocking`` rules stop bad data from flowing on (the asset
check is blocking in Dagster, and a training set refuses any day whose blocking checks failed or never
ran); the outlier rule only warns, since crypto does have violent bars. A move no real market makes in
one bar (a price multiplied or divided by ``max_bar_move_factor``, 10 by default) is a feed error, and
blocks (``implausible_moves``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alphapulse_assets.market_data import calendars as calendars_lib
from alphapulse_assets.market_data.schema import (
    NUMERIC_COLUMNS,
    PRICE_COLUMNS,
    epoch_ns,
    schema_problems,
    timeframe_to_timedelta,
)

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class QualityResult:
    rule: str
    passed: bool
    blocking: bool
    description: str
    violations: int = 0
    fraction: float = 0.0
    # First offending places, e.g. "BTCUSDT 2024-03-01T00:15:00+00:00: high 10.0 < close 11.0".
    examples: list[str] = field(default_factory=list)
    details: dict[str, float | int | str] = field(default_factory=dict)
    # The symbols with at least one offending row.
    symbols: list[str] = field(default_factory=list)


def _examples(frame: pd.DataFrame, mask: np.ndarray | pd.Series, explain: Callable[[pd.Series], str]) -> list[str]:
    rows = frame.loc[np.asarray(mask)].head(MAX_EXAMPLES)
    return [f"{r.symbol} {pd.Timestamp(r.timestamp).isoformat()}: {explain(r)}" for r in rows.itertuples()]


def _result(rule: str, blocking: bool, mask: np.ndarray, frame: pd.DataFrame, what: str, explain) -> QualityResult:
    n = int(np.count_nonzero(mask))
    total = max(len(frame), 1)
    passed = n == 0
    desc = f"no {what}" if passed else f"{n} row(s) with {what} ({n / total:.2%})"
    symbols = sorted(set(frame["symbol"].to_numpy()[np.asarray(mask)])) if n else []
    return QualityResult(
        rule, passed, blocking, desc, n, n / total, _examples(frame, mask, explain) if n else [], symbols=symbols
    )


def check_schema(frame: pd.DataFrame) -> QualityResult:
    problems = schema_problems(frame)
    return QualityResult(
        "schema_and_dtypes",
        not problems,
        True,
        "columns and dtypes match the candle schema" if not problems else "; ".join(problems),
        len(problems),
        examples=problems[:MAX_EXAMPLES],
    )


def check_no_nan(frame: pd.DataFrame) -> QualityResult:
    cols = [c for c in NUMERIC_COLUMNS if c in frame.columns]
    isna = frame[cols].isna()
    mask = isna.any(axis=1).to_numpy() | frame["timestamp"].isna().to_numpy()
    res = _result(
        "no_nan",
        True,
        mask,
        frame,
        "missing values",
        lambda r: "NaN in " + ", ".join(c for c in cols if pd.isna(getattr(r, c))),
    )
    res.details.update({f"nan_{c}": int(isna[c].sum()) for c in cols})
    return res


def check_ohlc_consistency(frame: pd.DataFrame) -> QualityResult:
    o, h, low, c = (frame[k].to_numpy() for k in PRICE_COLUMNS)
    with np.errstate(invalid="ignore"):
        mask = (h < np.maximum(o, c)) | (low > np.minimum(o, c)) | (h < low)
    return _result(
        "ohlc_consistency",
        True,
        mask,
        frame,
        "high below max(open, close) or low above min(open, close)",
        lambda r: f"open {r.open:g} high {r.high:g} low {r.low:g} close {r.close:g}",
    )


def check_positive_prices(frame: pd.DataFrame) -> QualityResult:
    with np.errstate(invalid="ignore"):
        mask = (frame[list(PRICE_COLUMNS)].to_numpy() <= 0).any(axis=1)
    return _result(
        "positive_prices",
        True,
        mask,
        frame,
        "zero or negative prices",
        lambda r: f"open {r.open:g} high {r.high:g} low {r.low:g} close {r.close:g}",
    )


def check_non_negative_volume(frame: pd.DataFrame) -> QualityResult:
    with np.errstate(invalid="ignore"):
        mask = frame["volume"].to_numpy() < 0
    return _result("non_negative_volume", True, mask, frame, "negative volume", lambda r: f"volume {r.volume:g}")


def check_timestamps(frame: pd.DataFrame, timeframe: str) -> QualityResult:
    """Unique and strictly increasing per symbol, and on the bar grid (a shifted time zone shows here)."""
    bar_ns = timeframe_to_timedelta(timeframe).value
    ts = epoch_ns(frame["timestamp"])
    sym = frame["symbol"].to_numpy()
    same_symbol = np.concatenate([[False], sym[1:] == sym[:-1]])
    not_increasing = same_symbol & np.concatenate([[False], ts[1:] <= ts[:-1]])
    duplicated = frame.duplicated(["symbol", "timestamp"], keep="first").to_numpy()
    off_grid = (ts % bar_ns) != 0 if bar_ns < 86_400 * 10**9 else np.zeros(len(ts), bool)
    mask = not_increasing | duplicated | off_grid
    res = _result(
        "unique_increasing_timestamps",
        True,
        mask,
        frame,
        f"duplicated, out-of-order or off-grid ({timeframe}) timestamps",
        lambda r: (
            "off the bar grid (wrong time zone or bar size?)"
            if pd.Timestamp(r.timestamp).value % bar_ns and bar_ns < 86_400 * 10**9
            else "duplicated or out of order"
        ),
    )
    res.details.update(
        {
            "duplicated": int(duplicated.sum()),
            "out_of_order": int((not_increasing & ~duplicated).sum()),
            "off_grid": int(off_grid.sum()),
        }
    )
    return res


def expected_bars(
    start: pd.Timestamp, end: pd.Timestamp, timeframe: str, weekdays_only: bool = False
) -> pd.DatetimeIndex:
    grid = pd.date_range(start, end, freq=timeframe_to_timedelta(timeframe), inclusive="left")
    return grid[grid.dayofweek < 5] if weekdays_only else grid


def _missing_session_bars(have: pd.DatetimeIndex, days: pd.DatetimeIndex, per_session: int) -> tuple[int, list]:
    """Bars an exchange's weekdays lack, counted per day (at most ``per_session`` a day), and the short days."""
    counts = pd.Series(1, index=have.floor("D")).groupby(level=0).size().reindex(days, fill_value=0)
    short = (per_session - counts.clip(upper=per_session)).astype(int)
    return int(short.sum()), [d for d, n in short.items() if n > 0]


def check_coverage(
    frame: pd.DataFrame,
    symbols: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    timeframe: str,
    max_missing_fraction: float,
    weekdays_only: bool = False,
    calendars: dict[str, str] | None = None,
    session_hours: float = calendars_lib.DEFAULT_SESSION_HOURS,
) -> QualityResult:
    """Each symbol must have at least (1 - max_missing_fraction) of the bars the window should hold.

    Which bars it should hold follows the symbol's market calendar (``calendars[symbol]``, see
    ``market_data/calendars.py``): every bar (crypto, the default), weekday bars (fx, daily exchange bars,
    or ``weekdays_only``), or ``bars_per_session`` bars on each weekday (intraday exchange bars)."""
    worst_fraction, examples, total_missing, short, expected_total = 0.0, [], 0, [], 0
    details: dict[str, float | int | str] = {}
    for symbol in symbols:
        calendar = (calendars or {}).get(symbol, "fx" if weekdays_only else "crypto")
        have = pd.DatetimeIndex(frame.loc[frame["symbol"] == symbol, "timestamp"])
        grid = calendars_lib.calendar_grid(start, end, timeframe, calendar)
        if grid is None:
            days = calendars_lib.weekdays(start, end)
            per_session = calendars_lib.bars_per_session(timeframe, session_hours)
            expected = len(days) * per_session
            n_missing, first = _missing_session_bars(have, days, per_session)
            where = ", ".join(f"{d:%Y-%m-%d} (short of a {session_hours:g} h session)" for d in first[:3])
        else:
            missing = grid.difference(have)
            expected, n_missing = len(grid), len(missing)
            where = ", ".join(t.isoformat() for t in missing[:3])
        expected_total = max(expected_total, expected)
        if expected == 0:
            continue
        fraction = n_missing / expected
        details[f"missing_{symbol}"] = n_missing
        total_missing += n_missing
        worst_fraction = max(worst_fraction, fraction)
        if fraction > max_missing_fraction:
            short.append(symbol)
            examples.append(
                f"{symbol}: {n_missing}/{expected} bars missing ({fraction:.1%}) on its {calendar} calendar, "
                f"first {where}"
            )
    if expected_total == 0:
        return QualityResult("bar_coverage", True, True, "no bars expected in this window (market closed)")
    passed = not examples
    desc = (
        f"every symbol has at least {1 - max_missing_fraction:.0%} of its expected {timeframe} bars "
        f"(up to {expected_total})"
        if passed
        else f"{len(examples)} symbol(s) miss more than {max_missing_fraction:.0%} of their bars"
    )
    return QualityResult(
        "bar_coverage", passed, True, desc, total_missing, worst_fraction, examples[:MAX_EXAMPLES], details, short
    )


def check_outlier_returns(frame: pd.DataFrame, zscore: float, max_fraction: float) -> QualityResult:
    """Warn on close-to-close log returns beyond ``zscore`` robust (MAD) standard deviations.

    The scale is estimated per symbol and UTC day, so a calm day after a turbulent one is judged
    against its own volatility rather than a month's.
    """
    close = frame["close"].to_numpy(dtype="float64")
    sym = frame["symbol"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.diff(np.log(close), prepend=np.nan)
    r[np.concatenate([[True], sym[1:] != sym[:-1]])] = np.nan
    day = epoch_ns(frame["timestamp"]) // (86_400 * 10**9)
    returns = pd.Series(r)
    groups = [frame["symbol"].to_numpy(), day]
    median = returns.groupby(groups).transform("median")
    mad = (returns - median).abs().groupby(groups).transform("median") * 1.4826
    with np.errstate(divide="ignore", invalid="ignore"):
        z = ((returns - median).abs() / mad.where(mad > 0)).to_numpy()
    z = np.nan_to_num(z, nan=0.0, posinf=0.0)
    mask = z > zscore
    res = _result(
        "outlier_returns",
        False,
        mask,
        frame,
        f"returns beyond {zscore:g} robust sigmas",
        lambda r_: f"close {r_.close:g}",
    )
    passed = res.violations / max(len(frame), 1) <= max_fraction
    return QualityResult(
        res.rule,
        passed,
        False,
        res.description,
        res.violations,
        res.fraction,
        res.examples,
        {"max_abs_robust_z": float(z.max()) if len(z) else 0.0},
        res.symbols,
    )


def check_implausible_moves(frame: pd.DataFrame, max_factor: float) -> QualityResult:
    """Block bars whose price moves by more than ``max_factor`` times (up or down) within the bar (high / low)
    or from the previous bar's close (open and close): a 1000x spike is a broken feed, not a market."""
    o, h, low, c = (frame[k].to_numpy(dtype="float64") for k in PRICE_COLUMNS)
    sym = frame["symbol"].to_numpy()
    prev = np.concatenate([[np.nan], c[:-1]])
    prev[np.concatenate([[True], sym[1:] != sym[:-1]])] = np.nan
    limit = np.log(max_factor)
    with np.errstate(divide="ignore", invalid="ignore"):
        moves = np.abs(np.stack([np.log(h / low), np.log(c / prev), np.log(o / prev)]))
    moves = np.nan_to_num(moves, nan=0.0, posinf=0.0, neginf=0.0)  # zero / NaN prices have rules of their own
    largest = moves.max(axis=0) if len(frame) else np.zeros(0)
    mask = largest > limit
    res = _result(
        "implausible_moves",
        True,
        mask,
        frame,
        f"a price move beyond {max_factor:g}x within one bar",
        lambda r: f"open {r.open:g} high {r.high:g} low {r.low:g} close {r.close:g}",
    )
    res.details["largest_move_factor"] = float(np.exp(largest.max())) if len(largest) else 1.0
    return res


def run_all(
    frame: pd.DataFrame,
    *,
    symbols: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    timeframe: str,
    max_missing_fraction: float,
    outlier_zscore: float,
    max_outlier_fraction: float,
    max_bar_move_factor: float,
    weekdays_only: bool = False,
    calendars: dict[str, str] | None = None,
    session_hours: float = calendars_lib.DEFAULT_SESSION_HOURS,
) -> list[QualityResult]:
    """Every rule, in a fixed order. If the schema is wrong, the content rules report it instead of crashing."""
    schema = check_schema(frame)
    rules = [
        "no_nan",
        "ohlc_consistency",
        "positive_prices",
        "non_negative_volume",
        "unique_increasing_timestamps",
        "bar_coverage",
        "implausible_moves",
        "outlier_returns",
    ]
    if not schema.passed:
        skipped = [
            QualityResult(r, False, r != "outlier_returns", "not evaluated: the schema check failed") for r in rules
        ]
        return [schema, *skipped]
    return [
        schema,
        check_no_nan(frame),
        check_ohlc_consistency(frame),
        check_positive_prices(frame),
        check_non_negative_volume(frame),
        check_timestamps(frame, timeframe),
        check_coverage(
            frame, symbols, start, end, timeframe, max_missing_fraction, weekdays_only, calendars, session_hours
        ),
        check_implausible_moves(frame, max_bar_move_factor),
        check_outlier_returns(frame, outlier_zscore, max_outlier_fraction),
    ]


RULE_DESCRIPTIONS = {
    "schema_and_dtypes": "Columns are timestamp (UTC), symbol, open, high, low, close, volume as float64.",
    "no_nan": "No missing value in any price, volume or timestamp.",
    "ohlc_consistency": "high >= max(open, close) and low <= min(open, close) on every bar.",
    "positive_prices": "Every price is strictly positive.",
    "non_negative_volume": "Volume is never negative.",
    "unique_increasing_timestamps": "Per symbol, timestamps are unique, strictly increasing and on the bar grid.",
    "bar_coverage": "Per symbol, missing bars stay within the configured fraction of the window.",
    "implausible_moves": "No price moves by more than the configured factor (10x) within one bar: a broken feed.",
    "outlier_returns": "Warns when too many bar returns lie beyond the robust z-score limit.",
}

BLOCKING_RULES = tuple(rule for rule in RULE_DESCRIPTIONS if rule != "outlier_returns")


@dataclass(frozen=True)
class DayVerdict:
    """Why one day may not be read: the blocking checks that failed, or that never ran on its data."""

    day: str
    failed: tuple[str, ...] = ()
    never_ran: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()  # named by the failed checks, when known

    def __str__(self) -> str:
        parts = []
        if self.failed:
            parts.append("failed " + ", ".join(self.failed) + (f" ({', '.join(self.symbols)})" if self.symbols else ""))
        if self.never_ran:
            parts.append(
                "never checked"
                if set(self.never_ran) == set(BLOCKING_RULES)
                else "not checked: " + ", ".join(self.never_ran)
            )
        return f"{self.day} ({'; '.join(parts)})"


def refused_days(
    days: list[str], statuses: dict[str, dict[str, str]], symbols: dict[str, set[str]] | None = None
) -> list[DayVerdict]:
    """The days a training set must not read, given ``statuses[day][rule]``: "passed", "failed" or absent
    (the check never ran on that day's current data). Every blocking rule must have passed. ``symbols[day]``
    are the offending symbols the failed checks named."""
    out = []
    for day in days:
        seen = statuses.get(day, {})
        failed = tuple(r for r in BLOCKING_RULES if seen.get(r) == "failed")
        never = tuple(r for r in BLOCKING_RULES if seen.get(r) not in ("passed", "failed"))
        if failed or never:
            out.append(DayVerdict(day, failed, never, tuple(sorted((symbols or {}).get(day, ())))))
    return out
