"""An ordered chain of sources: each symbol comes from the first source that can serve it.

The chain never degrades silently: the result records which source served each symbol and every
failure met on the way, and the candle asset puts both on the partition's materialization.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from alphapulse_assets.market_data.sources.base import CandleSource, FetchResult
from alphapulse_assets.recovery.errors import (
    ErrorClass,
    NoDataError,
    PermanentError,
    TransientError,
    classify,
)


class FallbackChain:
    def __init__(self, sources: Sequence[CandleSource]):
        if not sources:
            raise ValueError("a fallback chain needs at least one source")
        self.sources = list(sources)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    def fetch(self, symbols: Sequence[str], start: pd.Timestamp, end: pd.Timestamp) -> FetchResult:
        frames: list[pd.DataFrame] = []
        used: dict[str, str] = {}
        failures: list[tuple[str, str, str, ErrorClass]] = []
        for symbol in symbols:
            for source in self.sources:
                try:
                    frame = source.fetch([symbol], start, end)
                except Exception as exc:  # classified below; nothing is swallowed silently
                    c = classify(exc)
                    if c.error_class is ErrorClass.SYSTEM:
                        raise  # the host is in trouble: another source will not help
                    failures.append((source.name, symbol, f"{c.error_class.value}: {exc}", c.error_class))
                    continue
                if frame.empty:
                    failures.append((source.name, symbol, "permanent: no rows for the window", ErrorClass.PERMANENT))
                    continue
                frames.append(frame)
                used[symbol] = source.name
                break
            else:
                self._raise_exhausted(symbol, [f for f in failures if f[1] == symbol])
        candles = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return FetchResult(candles, used, [(src, sym, msg) for src, sym, msg, _ in failures])

    def _raise_exhausted(self, symbol: str, failures: list[tuple[str, str, str, ErrorClass]]) -> None:
        detail = "; ".join(f"{src}: {msg}" for src, _, msg, _ in failures)
        where = f"sources {' -> '.join(self.names)}"
        if any(cls is ErrorClass.TRANSIENT for *_, cls in failures):
            # At least one source may come back: let the retry policy try the whole chain again.
            raise TransientError(f"no source could serve {symbol}: {detail}", where=where)
        if all("no rows" in msg for _, _, msg, _ in failures):
            raise NoDataError(f"no source has data for {symbol} in the window: {detail}", where=where)
        raise PermanentError(f"no source could serve {symbol}: {detail}", where=where)
