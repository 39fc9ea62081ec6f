"""When a market trades: how many bars a year it has (Sharpe annualisation) and which bars a window should hold.

Three calendars, all in UTC:

=========== ================================================ ================================================
calendar    trades                                           bars a year for a bar of size ``b``
=========== ================================================ ================================================
crypto      24/7                                             365 days x 24 h / b (35,040 for 15m, 365 for 1d)
fx          24/5: Monday to Friday (UTC days)                52 x 5 x 24 h / b under a day (6,240 h a year);
                                                             260 / N for N-day bars
exchange    one session a weekday (252 a year), of           252 x ceil(session / b) under a day (26 for 15m
            ``session_hours`` (6.5 h: NYSE/Nasdaq 09:30-16:00)  with 6.5 h, 7 for 1h); 252 / N for N-day bars
=========== ================================================ ================================================

Week bars are 52 / N a year on the fx and exchange calendars (365 / 7 / N on crypto's).

``infer_calendar`` tells them apart from the bars themselves (the ``auto`` setting): bars on Saturdays (UTC)
mean 24/7; otherwise intraday bars covering most of each weekday (at least 80 % of a full day) mean 24/5, fewer
mean an exchange session; daily bars on nearly every weekday (at least 98.5 %, i.e. at most about 4 missing a
year) mean 24/5, fewer (exchange holidays, about 9 a year) an exchange. With under two weeks of bars, or bars
of a week or more, nothing can be told and 24/7 is assumed, and said. This module does not import Dagster.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from alphapulse_assets.settings import canonical_timeframe, timeframe_to_timedelta

CALENDARS = ("crypto", "fx", "exchange")
DESCRIPTIONS = {
    "crypto": "24/7",
    "fx": "24/5 (Monday to Friday, UTC)",
    "exchange": "exchange days (252 a year, one session a weekday)",
}
DEFAULT_SESSION_HOURS = 6.5
EXCHANGE_DAYS_PER_YEAR = 252
FX_DAYS_PER_YEAR = 260
CRYPTO_DAYS_PER_YEAR = 365
WEEKS_PER_YEAR = 52
# Inference thresholds (module docstring).
SATURDAY_SHARE_FOR_24_7 = 0.05  # 24/7 bars put 1/7 (14 %) of themselves on Saturdays; 24/5 ones none
FULL_DAY_SHARE_FOR_24_5 = 0.8
WEEKDAY_SHARE_FOR_24_5 = 0.985
MIN_SPAN_TO_INFER = pd.Timedelta(days=14)

_DAY = pd.Timedelta(days=1)
_WEEK = pd.Timedelta(weeks=1)


def _check(calendar: str) -> str:
    if calendar not in CALENDARS:
        raise ValueError(f"unknown market calendar {calendar!r}; use one of {', '.join(CALENDARS)}")
    return calendar


def bars_per_session(timeframe: str, session_hours: float = DEFAULT_SESSION_HOURS) -> int:
    """Intraday bars in one exchange session: a last, shorter bar counts (6.5 h holds seven 1h bars)."""
    return max(math.ceil(pd.Timedelta(hours=session_hours) / timeframe_to_timedelta(timeframe) - 1e-9), 1)


def bars_per_year(timeframe: str, calendar: str, session_hours: float = DEFAULT_SESSION_HOURS) -> float:
    """How many bars of ``timeframe`` (any spelling ``canonical_timeframe`` reads) a year of ``calendar`` holds.

    >>> bars_per_year("15m", "crypto"), bars_per_year("1h", "fx"), bars_per_year("1d", "exchange")
    (35040.0, 6240.0, 252.0)
    """
    bar = timeframe_to_timedelta(timeframe)
    calendar = _check(calendar)
    if calendar == "crypto":
        return CRYPTO_DAYS_PER_YEAR * _DAY / bar
    if bar >= _WEEK and bar % _WEEK == pd.Timedelta(0):
        return WEEKS_PER_YEAR / (bar / _WEEK)
    if bar >= _DAY:
        days = FX_DAYS_PER_YEAR if calendar == "fx" else EXCHANGE_DAYS_PER_YEAR
        return days / (bar / _DAY)
    if calendar == "fx":
        return FX_DAYS_PER_YEAR * _DAY / bar
    return float(EXCHANGE_DAYS_PER_YEAR * bars_per_session(timeframe, session_hours))


@dataclass(frozen=True)
class Annualisation:
    """The calendar a Sharpe ratio was annualised with, how many bars a year that is, and why that calendar."""

    timeframe: str
    calendar: str
    bars_per_year: float
    rule: str  # "setting ..." or what the inference saw
    session_hours: float | None = None  # exchange calendar only

    def describe(self) -> str:
        session = f", {self.session_hours:g} h sessions" if self.session_hours is not None else ""
        return (
            f"{self.calendar} ({DESCRIPTIONS[self.calendar]}{session}): {self.bars_per_year:g} {self.timeframe} "
            f"bars a year ({self.rule})"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def infer_calendar(timestamps, timeframe: str) -> tuple[str, str]:
    """(calendar, what in the bars told it) from bar open times (UTC); rules in the module docstring."""
    bar = timeframe_to_timedelta(timeframe)
    ts = pd.DatetimeIndex(pd.to_datetime(pd.Series(timestamps), utc=True)).unique().sort_values()
    if bar >= _WEEK:
        return "crypto", f"{canonical_timeframe(timeframe)} bars do not show the trading days; 24/7 assumed"
    if len(ts) < 2 or ts[-1] - ts[0] < MIN_SPAN_TO_INFER:
        return "crypto", "under two weeks of bars, too few to tell the trading days; 24/7 assumed"
    saturday = float(np.mean(ts.dayofweek == 5))
    if saturday >= SATURDAY_SHARE_FOR_24_7:
        return "crypto", f"inferred: {saturday:.0%} of the bars fall on Saturdays (UTC)"
    weekday = ts[ts.dayofweek < 5]
    if len(weekday) == 0:
        return "crypto", "no bar falls on a weekday; 24/7 assumed"
    if bar < _DAY:
        per_day = pd.Series(1, index=weekday.normalize()).groupby(level=0).size()
        share = float(per_day.median()) / (_DAY / bar)
        if share >= FULL_DAY_SHARE_FOR_24_5:
            return "fx", f"inferred: no Saturday bars, and a weekday holds {share:.0%} of a full day's bars"
        return "exchange", f"inferred: no Saturday bars, and a weekday holds {share:.0%} of a full day's bars"
    days = pd.bdate_range(ts[0].normalize(), ts[-1].normalize())
    share = len(weekday.normalize().unique()) / max(len(days), 1)
    if share >= WEEKDAY_SHARE_FOR_24_5:
        return "fx", f"inferred: no weekend bars, and {share:.1%} of the weekdays have a bar (no holidays)"
    return "exchange", f"inferred: no weekend bars, and {share:.1%} of the weekdays have a bar (holidays)"


def annualisation(
    timeframe: str,
    calendar: str = "auto",
    timestamps=None,
    session_hours: float = DEFAULT_SESSION_HOURS,
) -> Annualisation:
    """The annualisation of ``timeframe`` bars: on the ``calendar`` given, or inferred from ``timestamps``
    when it is ``auto``."""
    tf = canonical_timeframe(timeframe)
    if calendar == "auto":
        chosen, rule = infer_calendar([] if timestamps is None else timestamps, tf)
    else:
        chosen, rule = _check(calendar), "set by ALPHAPULSE_CALENDAR__MARKET / __BY_SYMBOL or --calendar"
    return Annualisation(
        tf,
        chosen,
        bars_per_year(tf, chosen, session_hours),
        rule,
        session_hours if chosen == "exchange" and timeframe_to_timedelta(tf) < _DAY else None,
    )


def calendar_grid(start: pd.Timestamp, end: pd.Timestamp, timeframe: str, calendar: str) -> pd.DatetimeIndex | None:
    """The bars [start, end) should hold on ``calendar``, or None when they cannot be placed in time.

    Crypto: every bar. FX, and daily or longer bars of an exchange: every bar on a weekday (UTC). Intraday
    exchange bars: None, since a session's UTC hours depend on the exchange and its daylight saving; count
    ``bars_per_session`` of them on each weekday instead (``weekdays``)."""
    calendar = _check(calendar)
    bar = timeframe_to_timedelta(timeframe)
    grid = pd.date_range(start, end, freq=bar, inclusive="left")
    if calendar == "crypto":
        return grid
    if calendar == "fx" or bar >= _DAY:
        return grid[grid.dayofweek < 5]
    return None


def weekdays(start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    """The UTC weekdays that [start, end) touches."""
    days = pd.date_range(pd.Timestamp(start).floor("D"), end, freq=_DAY, inclusive="left")
    return days[days.dayofweek < 5]
