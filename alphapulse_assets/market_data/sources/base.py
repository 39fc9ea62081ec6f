"""The interface every market-data source implements, and the result it returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class FetchResult:
    """Candles for a window, and which source produced each symbol's rows."""

    candles: pd.DataFrame
    source_by_symbol: dict[str, str]
    # (source, symbol, one-line error) for every source that was tried and failed before one succeeded.
    fallbacks: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def degraded(self) -> bool:
        return bool(self.fallbacks)


class CandleSource(ABC):
    """A market-data source. ``fetch`` returns canonical candles (see ``schema``) for [start, end)."""

    name: str = "source"
    #: True for sources that invent their data; shown wherever the data is shown.
    synthetic: bool = False
    #: How many symbols a fallback chain may fetch from this source at once (threads): 1 unless the source
    #: is safe to call from several threads and gains from it (a remote API whose latency dominates).
    concurrency: int = 1
    #: True for a source that serves many symbols in one call for about the cost of one (a database query): a
    #: fallback chain led by it asks it once for every symbol, and walks the chain symbol by symbol only for
    #: the symbols that call did not serve.
    serves_many_at_once: bool = False

    @abstractmethod
    def fetch(self, symbols: Sequence[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Canonical candles for ``symbols`` with bar open time in [start, end), sorted by symbol, time.

        Raises a classified error (``alphapulse_assets.recovery.errors``) when it cannot.
        """

    def check_reachable(self) -> None:  # noqa: B027 - optional hook; the default is "nothing to reach"
        """Raise a classified error if the source cannot be reached now; used by health checks."""

    def describe(self) -> str:
        """A description safe to show in logs and the UI (never credentials)."""
        return self.name
