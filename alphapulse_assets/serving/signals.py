"""Recorded signals: each bar's prediction from the champion in force, per cadence, for the trading system and UI.

Stored as Parquet through the candle store's code (``market_data.storage.ParquetPartitionStore``: one segment per
run of UTC days, written atomically, on a path or any fsspec URL) under ``<ALPHAPULSE_HOME>/signals/<cadence>``.
One row per symbol and bar: ``symbol``, ``cadence``, ``bar_time`` (open time of the bar whose close the features
end at), ``for_bar`` (the bar predicted, the next one), ``version`` (the champion that answered), ``prob_up``,
``role`` ("champion"). The store keys days by a ``timestamp`` column, which is ``bar_time``; ``read_signals``
gives it back under that name. This module does not import Dagster.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import pandas as pd
import pyarrow as pa

from alphapulse_assets.market_data.storage import ParquetPartitionStore
from alphapulse_assets.recovery.errors import DataValidationError
from alphapulse_assets.serving.predictor import CADENCES, SIGNAL_COLUMNS, _empty_signals
from alphapulse_assets.settings import get_settings


def default_signal_store_url() -> str:
    return get_settings().store_url("signals")


class SignalStore:
    """Signals per cadence, one dataset ``signals/<cadence>`` partitioned by the UTC day of ``bar_time``."""

    def __init__(self, url: str | None = None):
        self.store = ParquetPartitionStore(url or default_signal_store_url())

    @staticmethod
    def dataset(cadence: str) -> str:
        if cadence not in CADENCES:
            raise DataValidationError(f"unknown cadence {cadence!r}; use one of {', '.join(CADENCES)}", where="cadence")
        return f"signals/{cadence}"

    def write(self, cadence: str, frame: pd.DataFrame, days: Iterable[str]) -> dict[str, int]:
        """``frame`` (``SIGNAL_COLUMNS``) as the whole content of ``days``; returns rows per day."""
        stored = frame[list(SIGNAL_COLUMNS)].rename(columns={"bar_time": "timestamp"})
        table = pa.Table.from_pandas(stored, preserve_index=False)
        return self.store.write_days(self.dataset(cadence), table, list(days))

    def days(self, cadence: str) -> list[str]:
        return self.store.list_partitions(self.dataset(cadence))

    def read(self, cadence: str, start: date | str | None = None, end: date | str | None = None) -> pd.DataFrame:
        """Signals of bars from ``start`` to ``end`` (UTC days, both included; default: every stored day)."""
        stored = self.days(cadence)
        first = date.fromisoformat(str(start)) if start else None
        last = date.fromisoformat(str(end)) if end else None
        wanted = [d for d in stored if (first is None or d >= str(first)) and (last is None or d <= str(last))]
        if not wanted:
            return _empty_signals()
        frame = self.store.read_days(self.dataset(cadence), wanted).rename(columns={"timestamp": "bar_time"})
        frame = frame.sort_values(["bar_time", "symbol"], kind="stable").reset_index(drop=True)
        return frame[list(SIGNAL_COLUMNS)]


def read_signals(
    cadence: str = "nightly",
    start: date | str | None = None,
    end: date | str | None = None,
    *,
    store_url: str | None = None,
) -> pd.DataFrame:
    """The recorded signals of ``cadence`` as a DataFrame (``SIGNAL_COLUMNS``), oldest bar first.

    ``start`` / ``end``: UTC days of ``bar_time``, both included; ``store_url``: default ``<ALPHAPULSE_HOME>/signals``.
    """
    return SignalStore(store_url).read(cadence, start, end)
