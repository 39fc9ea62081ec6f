"""An ordered chain of sources: each symbol comes from the first source that can serve it.

The chain never degrades silently: the result records which source served each symbol and every
failure met on the way, and the candle asset puts both on the partition's materialization.

Symbols are served concurrently when a source allows it (``CandleSource.concurrency``, e.g. the exchange's
``ALPHAPULSE_EXCHANGE_CONCURRENCY``): each symbol walks the chain in its own worker thread, and each source is
entered by at most its own ``concurrency`` threads at once (a source of 1 is called by one thread at a time).
The exchange's rate limit is kept by the exchange source itself, across its threads. Results, failures and
errors come out in the symbols' order, as when they were served one after another.

A chain led by a source that serves many symbols at once (``CandleSource.serves_many_at_once``: a database)
first asks it for every symbol in one call. The symbols it served are done; the others walk the chain one after
another (not in threads: a database at the head of the chain is expected to serve nearly all of them). If that
call fails as a whole, a source-wide outage (transient) counts as the first source's failure for every symbol
and they walk the rest of the chain; any other error (e.g. one unknown symbol fails the query) sends every
symbol back through the whole chain one by one, so each failure is told apart per symbol.

The fetch threads are daemon threads, not a ``ThreadPoolExecutor``'s: an executor's threads are joined when
its block ends and again at interpreter exit, so a SIGTERM or Ctrl-C of a run would wait for a stalled
request's timeout before the process could end. A daemon thread is abandoned with its request instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

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
        self._gates = [threading.Semaphore(max(1, int(getattr(s, "concurrency", 1) or 1))) for s in self.sources]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    @property
    def concurrency(self) -> int:
        """Symbols served at once: the most any source of the chain allows."""
        return max(max(1, int(getattr(s, "concurrency", 1) or 1)) for s in self.sources)

    def _serve(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp, first: int = 0, failures=None):
        """(frame or None, source name or None, failures) for one symbol, from the chain's ``first`` source on
        (``failures``: those already met before it); SYSTEM errors propagate."""
        failures: list[tuple[str, str, str, ErrorClass]] = list(failures or [])
        for source, gate in zip(self.sources[first:], self._gates[first:], strict=True):
            try:
                with gate:
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
            return frame, source.name, failures
        return None, None, failures

    def fetch(self, symbols: Sequence[str], start: pd.Timestamp, end: pd.Timestamp) -> FetchResult:
        symbols = list(symbols)
        if len(symbols) > 1 and self.sources[0].serves_many_at_once:
            return self._collect(symbols, self._serve_batch_first(symbols, start, end))
        workers = min(self.concurrency, len(symbols))
        if workers <= 1:  # one after another: a symbol no source serves stops the fetch there
            served = (self._serve(s, start, end) for s in symbols)
            return self._collect(symbols, served)
        served = self._serve_in_threads(symbols, start, end, workers)
        try:
            return self._collect(symbols, served)  # errors in symbol order
        finally:
            served.close()  # an error stops what has not started yet

    def _serve_batch_first(self, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp) -> Iterator:
        """Each symbol's ``_serve`` result in symbol order, the first source asked once for all of them."""
        source, gate = self.sources[0], self._gates[0]
        try:
            with gate:
                frame = source.fetch(symbols, start, end)
        except Exception as exc:  # classified below; nothing is swallowed silently
            c = classify(exc)
            if c.error_class is ErrorClass.SYSTEM:
                raise
            if c.error_class is ErrorClass.TRANSIENT:  # the source is out for every symbol: asking again won't help
                for symbol in symbols:
                    failed = [(source.name, symbol, f"{c.error_class.value}: {exc}", c.error_class)]
                    yield self._serve(symbol, start, end, first=1, failures=failed)
            else:  # which symbol it refused, and why, is told apart one symbol at a time
                for symbol in symbols:
                    yield self._serve(symbol, start, end)
            return
        by_symbol = dict(tuple(frame.groupby("symbol", sort=False))) if not frame.empty else {}
        for symbol in symbols:
            rows = by_symbol.get(symbol)
            if rows is not None and not rows.empty:
                yield rows.reset_index(drop=True), source.name, []
            else:
                failed = [(source.name, symbol, "permanent: no rows for the window", ErrorClass.PERMANENT)]
                yield self._serve(symbol, start, end, first=1, failures=failed)

    def _serve_in_threads(self, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp, workers: int) -> Iterator:
        """Each symbol's ``_serve`` result in symbol order, from ``workers`` daemon threads; an exception raised
        for a symbol is raised when its turn comes. Closing the generator stops symbols not yet started."""
        outcomes: list[tuple[bool, object]] = [(False, None)] * len(symbols)
        finished = [threading.Event() for _ in symbols]
        pending = iter(range(len(symbols)))
        lock, stop = threading.Lock(), threading.Event()

        def work() -> None:
            while not stop.is_set():
                with lock:
                    i = next(pending, None)
                if i is None:
                    return
                try:
                    outcomes[i] = (True, self._serve(symbols[i], start, end))
                except BaseException as exc:  # handed to the caller in symbol order, not lost in the thread
                    outcomes[i] = (False, exc)
                finished[i].set()

        for n in range(workers):
            threading.Thread(target=work, name=f"alphapulse-fetch-{n}", daemon=True).start()
        try:
            for i in range(len(symbols)):
                finished[i].wait()  # interruptible: a signal's exception is raised here, in the main thread
                ok, value = outcomes[i]
                if not ok:
                    raise value
                yield value
        finally:
            stop.set()

    def _collect(self, symbols: list[str], served) -> FetchResult:
        frames: list[pd.DataFrame] = []
        used: dict[str, str] = {}
        failures: list[tuple[str, str, str, ErrorClass]] = []
        for symbol, (frame, name, symbol_failures) in zip(symbols, served, strict=True):
            failures.extend(symbol_failures)
            if frame is None:
                self._raise_exhausted(symbol, symbol_failures)
            frames.append(frame)
            used[symbol] = name
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
