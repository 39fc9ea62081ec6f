"""Candles from a crypto exchange's public REST API through ccxt (optional extra ``[exchange]``).

``ExchangeSource.fetch`` pages through ``fetch_ohlcv`` from ``start`` to ``end`` and returns canonical
candles for [start, end). What it adds around ccxt, and why:

- Classification. ccxt's exception classes do not say on their own whether retrying can help: for
  Binance an HTTP 400 without an error code comes back as ``ExchangeNotAvailable`` (a ``NetworkError``,
  which would look transient), a 500 with ``{"code":-1000}`` as ``OperationFailed`` and a 503 with
  ``{"code":-1008}`` as ``ExchangeError`` (both would look permanent). So the HTTP status of the failed
  response decides first (no response, 408, 418, 425, 429, 5xx: transient; other 4xx: permanent), then
  the class: ``BadSymbol`` -> ``UnknownSymbolError``, authentication -> ``AuthenticationError``. Every
  failure leaves here as one of the platform's classified errors, naming the exchange and symbol.
- Garbage. ccxt turns an HTML page or truncated JSON answered with status 200 into an empty list and a
  short row into ``None`` values, which would read as "no more data". Every page is checked against the
  raw JSON the exchange sent; anything else raises ``DataValidationError``.
- Resume. With a ``spool_dir``, pages are appended to a spool file per (exchange, symbol, timeframe,
  window) as they arrive. A retried fetch continues after the last stored candle instead of starting
  over; the spools are removed when the whole window has been fetched.
- Rate limiting on an injected clock: ccxt's own throttle (``enableRateLimit``: the exchange's
  calibrated ``rateLimit`` times each endpoint's weight, e.g. 50 ms x 4 before Binance's exchangeInfo)
  runs on ``clock``/``sleep`` instead of wall time, with ``rate_limit_ms`` as our own floor between any
  two requests.
- Concurrency within that limit: up to ``concurrency`` symbols are fetched at once (the fallback chain runs
  them in threads; ``ALPHAPULSE_EXCHANGE_CONCURRENCY``). Each thread has its own ccxt client (ccxt's sync
  clients keep per-request state), the market list is loaded once and shared, and one limiter serves all
  threads: each request takes the next free start time, at least the interval after the previous one, so
  requests overlap in flight (latency) but never start closer together than the rate limit allows.

Only public endpoints are called. API keys are read from ``ALPHAPULSE_EXCHANGE_API_KEY`` and
``ALPHAPULSE_EXCHANGE_API_SECRET`` if set, handed to ccxt and never logged or shown.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from alphapulse_assets.market_data.schema import empty_candles, normalize_candles, timeframe_to_timedelta
from alphapulse_assets.market_data.sources.base import CandleSource
from alphapulse_assets.recovery.errors import (
    AlphaPulseError,
    AuthenticationError,
    DataValidationError,
    PermanentError,
    TransientError,
    UnknownSymbolError,
)
from alphapulse_assets.settings import AlphaPulseSettings

log = logging.getLogger(__name__)

API_URL_ENV = "ALPHAPULSE_EXCHANGE_API_URL"
API_KEY_ENV = "ALPHAPULSE_EXCHANGE_API_KEY"
API_SECRET_ENV = "ALPHAPULSE_EXCHANGE_API_SECRET"

# Statuses that say "try again later" whatever exception class ccxt chose for them.
_TRANSIENT_STATUS = {408, 418, 425, 429}
# Raw kline row width per exchange where we know the wire format; elsewhere at least the six OHLCV fields.
_RAW_KLINE_FIELDS = {"binance": 12, "binanceus": 12}
_MIN_FIELDS = 6
# Binance's spot markets only: the other market types (futures, margin, currencies) need other hosts or keys.
_PUBLIC_ONLY_OPTIONS = {
    "fetchMarkets": {"types": ["spot"]},
    "fetchCurrencies": False,
    "fetchMargins": False,
    "adjustForTimeDifference": False,
}


def _import_ccxt() -> Any:
    try:
        import ccxt  # noqa: PLC0415 - optional extra, imported only when the source is used
    except ImportError as exc:
        raise PermanentError(
            "the exchange source needs ccxt: install alphapulse-assets[exchange]", where="exchange source"
        ) from exc
    return ccxt


def _ms(ts: pd.Timestamp) -> int:
    ts = pd.Timestamp(ts)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def _short(text: object, n: int = 160) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= n else s[: n - 3] + "..."


def override_api_urls(api_urls: Any, base_url: str) -> Any:
    """Point every REST base URL of an exchange at ``base_url``, keeping each entry's path.

    ccxt's binance keeps ``urls['api']`` as a flat dict of name -> base (``public`` is
    ``https://api.binance.com/api/v3``, ``sapi`` ``https://api.binance.com/sapi/v1``, ``fapiPublic``
    ``https://fapi.binance.com/fapi/v1`` ...); requests go to ``urls['api'][name] + '/' + path``.
    Replacing only the scheme and host keeps ``/api/v3/klines`` where the exchange serves it, and
    sends every other endpoint to the same (test) server rather than to the real one.
    """
    base = urlsplit(base_url)
    if not base.scheme or not base.netloc:
        raise PermanentError(f"exchange API URL {base_url!r} must look like http://host:port", where=API_URL_ENV)
    prefix = f"{base.scheme}://{base.netloc}{base.path.rstrip('/')}"
    if isinstance(api_urls, str):
        return prefix + urlsplit(api_urls).path
    if isinstance(api_urls, dict):
        return {k: override_api_urls(v, base_url) for k, v in api_urls.items()}
    return api_urls


class ExchangeSource(CandleSource):
    """OHLCV candles from an exchange through ccxt (see module docstring)."""

    name = "exchange"

    def __init__(
        self,
        exchange_id: str = "binance",
        timeframe: str = "15m",
        page_limit: int = 1000,
        rate_limit_ms: float | None = None,
        timeout_seconds: float = 30.0,
        api_base_url: str | None = None,
        spool_dir: Path | None = None,
        concurrency: int = 1,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        if page_limit < 1:
            raise ValueError("page_limit must be at least 1")
        self.exchange_id = exchange_id
        self.timeframe = timeframe
        self.bar_ms = int(timeframe_to_timedelta(timeframe) / pd.Timedelta(milliseconds=1))
        self.page_limit = page_limit
        self.rate_limit_ms = rate_limit_ms
        self.timeout_seconds = timeout_seconds
        self.api_base_url = api_base_url
        self.spool_dir = Path(spool_dir) if spool_dir is not None else None
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self._sleep = sleep
        self._clock = clock
        self._local = threading.local()  # this thread's ccxt client and the last response it saw
        self._clients: list[Any] = []
        self._lock = threading.Lock()  # the shared limiter's next start time, the list of clients
        self._markets_lock = threading.Lock()  # held while the first client loads the market list
        self._markets: tuple[Any, Any] | None = None
        self._last_request_at: float | None = None

    @property
    def _exchange(self) -> Any:
        return getattr(self._local, "exchange", None)

    @property
    def _last_status(self) -> int | None:
        return getattr(self._local, "status", None)

    @_last_status.setter
    def _last_status(self, value: int | None) -> None:
        self._local.status = value

    @property
    def _last_body(self) -> str:
        return getattr(self._local, "body", "")

    @_last_body.setter
    def _last_body(self, value: str) -> None:
        self._local.body = value

    @classmethod
    def from_settings(cls, settings: AlphaPulseSettings) -> ExchangeSource:
        return cls(
            exchange_id=settings.exchange_id,
            timeframe=settings.base_timeframe,
            timeout_seconds=settings.source_timeout_seconds,
            api_base_url=os.environ.get(API_URL_ENV) or None,
            spool_dir=settings.home / "exchange-spool",
            concurrency=settings.exchange_concurrency,
            rate_limit_ms=settings.exchange_rate_limit_ms,
        )

    def describe(self) -> str:
        where = f", API {self.api_base_url}" if self.api_base_url else ""
        return f"exchange ({self.exchange_id} via ccxt, {self.timeframe} bars{where})"

    # ----- the ccxt client -------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._exchange is not None:
            return self._exchange
        ccxt = _import_ccxt()
        cls = getattr(ccxt, self.exchange_id, None)
        if not isinstance(cls, type) or not issubclass(cls, ccxt.Exchange):
            raise PermanentError(f"ccxt has no exchange {self.exchange_id!r}", where="exchange source")
        config: dict[str, Any] = {
            "enableRateLimit": True,
            "timeout": int(self.timeout_seconds * 1000),
            "options": copy.deepcopy(_PUBLIC_ONLY_OPTIONS),  # ccxt may mutate the lists
        }
        key, secret = os.environ.get(API_KEY_ENV), os.environ.get(API_SECRET_ENV)
        if key and secret:
            config["apiKey"], config["secret"] = key, secret
        ex = cls(config)
        if self.api_base_url:
            ex.urls["api"] = override_api_urls(ex.urls["api"], self.api_base_url)
        ex.enableLastJsonResponse = True  # the raw page, to tell garbage from "no more data"
        ex.throttle = self._throttle  # ccxt's cost-weighted limiter, on our injected clock
        original_fetch, original_on_response = ex.fetch, ex.on_rest_response

        def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
            self._last_status, self._last_body = None, ""
            ex.last_json_response = None
            return original_fetch(url, method, headers, body)

        def on_rest_response(code: int, reason: str, url: str, method: str, *rest: Any) -> Any:
            self._last_status = code
            self._last_body = rest[1] if len(rest) > 1 and isinstance(rest[1], str) else ""
            return original_on_response(code, reason, url, method, *rest)

        ex.fetch = fetch
        ex.on_rest_response = on_rest_response
        self._local.exchange = ex
        with self._lock:
            self._clients.append(ex)
        return ex

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for ex in clients:
            session = getattr(ex, "session", None)
            if session is not None:
                session.close()
        self._local = threading.local()

    def _load_markets(self, ex: Any) -> None:
        """The market list, fetched once for every thread's client (it weighs 20 on Binance)."""
        with self._markets_lock:
            if self._markets is not None:
                if not ex.markets:
                    ex.set_markets(*self._markets)
                return
            self._call("load_markets", None, ex.load_markets)
            if ex.markets:
                self._markets = (ex.markets, ex.currencies)

    def _throttle(self, cost: float | None = None) -> None:
        """Replaces ccxt's throttle: a request starts max(our floor, rateLimit x its cost) after the previous one,
        whichever thread sent that. Each caller takes the next free start time under the lock, then sleeps until
        it outside the lock, so threads queue in order and overlap only in flight."""
        weighted = float(getattr(self._exchange, "rateLimit", 0) or 0) * (1.0 if cost is None else float(cost))
        interval = max(float(self.rate_limit_ms or 0), weighted) / 1000.0
        with self._lock:
            now = self._clock()
            start = now if self._last_request_at is None else max(now, self._last_request_at + interval)
            self._last_request_at = start
        if start > now:
            self._sleep(start - now)

    def _call(self, what: str, symbol: str | None, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one ccxt call; every failure leaves as a classified error naming exchange and symbol."""
        ccxt = _import_ccxt()
        where = self._where(symbol)
        try:
            return fn(*args, **kwargs)
        except AlphaPulseError:
            raise
        except ccxt.BaseError as exc:
            raise self._classified(exc, what, symbol) from exc
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            # ccxt's parsers choke on a body that is not what the exchange normally sends.
            raise DataValidationError(
                f"{self.exchange_id} sent a response to {what} that could not be parsed "
                f"({type(exc).__name__}: {_short(exc)}); body starts {_short(self._last_body, 80)!r}",
                where=where,
            ) from exc

    def _where(self, symbol: str | None) -> str:
        return f"exchange source {self.exchange_id}" + (f" {symbol}" if symbol else "")

    def _classified(self, exc: BaseException, what: str, symbol: str | None) -> AlphaPulseError:
        ccxt = _import_ccxt()
        status = self._last_status
        where = self._where(symbol)
        detail = f"{type(exc).__name__}: {_short(exc)}"
        http = f"HTTP {status}" if status is not None else "no response"
        if status is None:
            if isinstance(exc, ccxt.NetworkError):  # timeout, refused, reset: nothing came back
                return TransientError(f"{self.exchange_id} {what} failed ({http}, {detail})", where=where)
        elif status in _TRANSIENT_STATUS or status >= 500:
            return TransientError(f"{self.exchange_id} {what} failed ({http}, {detail})", where=where)
        if isinstance(exc, ccxt.BadSymbol):
            return UnknownSymbolError(
                f"{self.exchange_id} does not know symbol {symbol!r} ({http}, {detail})", where=where
            )
        if isinstance(exc, ccxt.AuthenticationError) or status in (401, 407):
            return AuthenticationError(
                f"{self.exchange_id} refused the request for {what} ({http}, {detail}); "
                f"check {API_KEY_ENV} / {API_SECRET_ENV}",
                where=where,
            )
        if status is not None and 400 <= status < 500:
            hint = f"; is {API_URL_ENV} right?" if status == 404 else ""
            return PermanentError(f"{self.exchange_id} rejected {what} ({http}, {detail}){hint}", where=where)
        if isinstance(exc, ccxt.NetworkError):  # an error code in a 2xx body that ccxt calls transient
            return TransientError(f"{self.exchange_id} {what} failed ({http}, {detail})", where=where)
        return PermanentError(f"{self.exchange_id} {what} failed ({http}, {detail})", where=where)

    # ----- symbols ---------------------------------------------------------------------------------
    def _market_symbol(self, ex: Any, symbol: str) -> str:
        """BTCUSDT -> the exchange's unified BTC/USDT (spot preferred), from its own market list."""
        candidates = (ex.markets_by_id or {}).get(symbol) or []
        if isinstance(candidates, dict):
            candidates = [candidates]
        spot = [m for m in candidates if m.get("spot")]
        chosen = (spot or candidates or [None])[0]
        if chosen is not None:
            return chosen["symbol"]
        if symbol in (ex.markets or {}):
            return symbol
        raise UnknownSymbolError(
            f"{self.exchange_id} has no market {symbol!r} ({len(ex.markets or {})} markets listed)",
            where=self._where(symbol),
        )

    # ----- fetching --------------------------------------------------------------------------------
    def fetch(self, symbols: Sequence[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        start_ms, end_ms = _ms(start), _ms(end)
        if end_ms <= start_ms or not symbols:
            return empty_candles()
        ex = self._client()
        self._load_markets(ex)
        if not ex.markets:
            raise DataValidationError(
                f"{self.exchange_id} listed no markets; body starts {_short(self._last_body, 80)!r}",
                where=self._where(None),
            )
        if ex.timeframes and self.timeframe not in ex.timeframes:
            raise PermanentError(
                f"{self.exchange_id} has no {self.timeframe} bars; it offers {', '.join(ex.timeframes)}",
                where=self._where(None),
            )
        market_symbols = {s: self._market_symbol(ex, s) for s in symbols}  # unknown symbols fail first
        frames = []
        spools = []
        for symbol, market_symbol in market_symbols.items():
            spool = self._spool_path(symbol, start_ms, end_ms)
            rows = self._fetch_symbol(ex, symbol, market_symbol, start_ms, end_ms, spool)
            spools.append(spool)
            frames.append(self._to_frame(symbol, rows))
        out = pd.concat(frames, ignore_index=True) if frames else empty_candles()
        out = out.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
        for spool in spools:  # the window is complete: nothing left to resume
            if spool is not None:
                spool.unlink(missing_ok=True)
        return out

    def _fetch_symbol(
        self, ex: Any, symbol: str, market_symbol: str, start_ms: int, end_ms: int, spool: Path | None
    ) -> list[list[float]]:
        rows, complete = self._read_spool(spool, symbol) if spool is not None else ([], False)
        since = rows[-1][0] + self.bar_ms if rows else start_ms
        while not complete and since < end_ms:
            # Ask for no more bars than are left in the window, so the last page ends at `end`.
            limit = min(self.page_limit, math.ceil((end_ms - since) / self.bar_ms))
            page = self._call(
                f"fetch_ohlcv({market_symbol}, {self.timeframe})",
                symbol,
                ex.fetch_ohlcv,
                market_symbol,
                self.timeframe,
                since=since,
                limit=limit,
            )
            page = self._checked_page(ex, page, symbol)
            last = rows[-1][0] if rows else start_ms - 1
            fresh: list[list[float]] = []
            for r in page:  # sorted by ccxt; drop overlap with earlier pages and bars outside [start, end)
                if r[0] > last and since <= r[0] < end_ms:
                    fresh.append(r)
                    last = r[0]
            if not fresh:
                break  # nothing at or after `since` before `end`: the exchange has no more bars
            rows.extend(fresh)
            self._append_spool(spool, symbol, start_ms, end_ms, fresh)
            since = fresh[-1][0] + self.bar_ms
        if not complete:
            self._append_spool(spool, symbol, start_ms, end_ms, None)
        return rows

    def _checked_page(self, ex: Any, page: Any, symbol: str) -> list[list[float]]:
        """The parsed page, or DataValidationError if the raw response was not a kline list."""
        where = self._where(symbol)
        raw = getattr(ex, "last_json_response", None)
        body = _short(self._last_body, 80)
        if not isinstance(raw, list):
            kind = "no JSON" if raw is None else f"a JSON {type(raw).__name__}"
            raise DataValidationError(
                f"{self.exchange_id} answered klines with {kind}, not a list of candles; body starts {body!r}",
                where=where,
            )
        need = _RAW_KLINE_FIELDS.get(self.exchange_id)
        widths = {len(r) if isinstance(r, (list, tuple)) else -1 for r in raw}
        if need is not None and raw and (len(widths) != 1 or min(widths) < need):
            raise DataValidationError(
                f"{self.exchange_id} kline rows have {sorted(widths)} fields, expected {need}; body starts {body!r}",
                where=where,
            )
        if not isinstance(page, list):
            raise DataValidationError(f"ccxt returned {type(page).__name__} for klines", where=where)
        out = []
        for i, row in enumerate(page):
            ok = (
                isinstance(row, (list, tuple))
                and len(row) >= _MIN_FIELDS
                and isinstance(row[0], int)
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in row[1:_MIN_FIELDS])
            )
            if not ok:
                raise DataValidationError(
                    f"{self.exchange_id} kline row {i} is not [time, open, high, low, close, volume]: {_short(row, 120)}",
                    where=where,
                )
            out.append([int(row[0]), *(float(v) for v in row[1:_MIN_FIELDS])])
        if need is not None and any(isinstance(r[0], bool) or not isinstance(r[0], int) for r in raw):
            # ccxt silently drops rows whose open time it cannot read; a hole is not "no more data".
            raise DataValidationError(
                f"{self.exchange_id} sent kline rows without an integer open time; body starts {body!r}",
                where=where,
            )
        return out

    def _to_frame(self, symbol: str, rows: list[list[float]]) -> pd.DataFrame:
        if not rows:
            return empty_candles()
        frame = pd.DataFrame(rows, columns=["timestamp", "open", "high", "low", "close", "volume"])
        return normalize_candles(frame, where=self._where(symbol), symbol=symbol)

    # ----- spool -----------------------------------------------------------------------------------
    def _spool_path(self, symbol: str, start_ms: int, end_ms: int) -> Path | None:
        if self.spool_dir is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{self.exchange_id}-{symbol}-{self.timeframe}-{start_ms}-{end_ms}")
        return self.spool_dir / f"{safe}.jsonl"

    def _read_spool(self, spool: Path, symbol: str) -> tuple[list[list[float]], bool]:
        """Rows stored by an earlier, interrupted fetch of the same window, and whether it finished."""
        if not spool.exists():
            return [], False
        rows: list[list[float]] = []
        complete = False
        with spool.open("r", encoding="utf-8") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    break  # a page torn by a crash mid-write: fetch it again
                if isinstance(entry, dict):
                    complete = complete or bool(entry.get("complete"))
                    continue
                for r in entry:
                    if not rows or r[0] > rows[-1][0]:
                        rows.append(r)
        if rows:
            log.info("resuming %s after %d stored candles (%s)", self._where(symbol), len(rows), spool.name)
        return rows, complete

    def _append_spool(
        self, spool: Path | None, symbol: str, start_ms: int, end_ms: int, rows: list[list[float]] | None
    ) -> None:
        if spool is None:
            return
        spool.parent.mkdir(parents=True, exist_ok=True)
        new = not spool.exists()
        with spool.open("a", encoding="utf-8") as fh:
            if new:
                header = {
                    "exchange": self.exchange_id,
                    "symbol": symbol,
                    "timeframe": self.timeframe,
                    "start_ms": start_ms,
                    "end_ms": end_ms,
                }
                fh.write(json.dumps(header) + "\n")
            fh.write(json.dumps({"complete": True} if rows is None else rows, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    # ----- health ----------------------------------------------------------------------------------
    def check_reachable(self) -> None:
        """One cheap public call: the server time where the exchange has it, else its status."""
        ex = self._client()
        if ex.has.get("fetchTime"):
            self._call("fetch_time", None, ex.fetch_time)
        elif ex.has.get("fetchStatus"):
            self._call("fetch_status", None, ex.fetch_status)
        else:
            self._call("load_markets", None, ex.load_markets, True)
