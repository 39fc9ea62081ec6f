"""A loopback HTTP server that speaks Binance's public spot REST API, for testing the exchange source.

It serves the four endpoints ccxt's ``binance`` class calls for public klines when it is configured
with ``fetchMarkets: ['spot']`` and ``fetchCurrencies: False``:

- ``GET /api/v3/exchangeInfo``: market list (minimal, in Binance's real shape), read by ``load_markets``;
- ``GET /api/v3/klines``: Binance's real 12-field rows with decimal strings, read by ``fetch_ohlcv``;
- ``GET /api/v3/time`` and ``GET /api/v3/ping``.

Candles come from the sample market (``generate_day``), so a test can compare what the source returns
with what the sample day holds. Prices and volumes go on the wire as Binance writes them: strings with
8 decimals (``price_decimals``), so the values a client reads are the sample's rounded to 8 decimals.

Fault injection, per path and per request number (1-based, counted per path): ``fail`` (status + body),
``hang`` (stall before answering, to trigger a client timeout), ``garbage`` (HTML, truncated JSON or
rows of the wrong arity with status 200), ``duplicate`` (every row sent twice). ``counts`` and ``log``
show what the server received; with an injected ``clock`` each logged request carries that clock's
time, so rate limiting can be checked without wall-clock assertions. ``latency_seconds`` makes every
answer take that long (a distant exchange), and ``max_in_flight`` says how many requests it was serving at
once at most (concurrent clients).

It binds 127.0.0.1 on a free port only. Use it as a context manager; leaving it stops the server, wakes
any stalled handler and joins the serving thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd

from alphapulse_assets.market_data.schema import timeframe_to_timedelta
from alphapulse_assets.market_data.sources.sample import generate_day

KLINES = "/api/v3/klines"
EXCHANGE_INFO = "/api/v3/exchangeInfo"
TIME = "/api/v3/time"
PING = "/api/v3/ping"

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT")
# Binance's spot intervals (the ones generate_day can make are served; the others answer "Invalid interval").
BINANCE_INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M")
INVALID_SYMBOL_BODY = '{"code":-1121,"msg":"Invalid symbol."}'
INVALID_INTERVAL_BODY = '{"code":-1120,"msg":"Invalid interval."}'
HTML_BODY = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
)

_QUOTES = ("USDT", "USDC", "BTC", "ETH", "EUR", "USD")


@dataclass
class Fault:
    """What to do instead of (or before) answering one request."""

    status: int | None = None  # answer with this status and body instead of the real payload
    body: str = ""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0  # stall this long first (woken early when the server stops)
    garbage: str | None = None  # "html", "truncated" or "arity": a 200 answer that is not valid klines
    duplicate_rows: bool = False  # send every kline row twice (valid JSON, overlapping data)


def _split_pair(symbol: str) -> tuple[str, str]:
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(f"cannot split {symbol!r} into base and quote")


def _market_entry(symbol: str) -> dict:
    base, quote = _split_pair(symbol)
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.00000001",
                "maxPrice": "1000000.00000000",
                "tickSize": "0.00000001",
            },
            {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


class FakeBinance:
    """A Binance-shaped public REST API on 127.0.0.1 (see module docstring)."""

    def __init__(
        self,
        symbols: Iterable[str] = DEFAULT_SYMBOLS,
        *,
        now: pd.Timestamp | str = "2024-07-01T00:00:00Z",
        price_decimals: int = 8,
        clock: Callable[[], float] | None = None,
        latency_seconds: float = 0.0,
    ):
        self.symbols = tuple(symbols)
        self.latency_seconds = latency_seconds
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrivals: list[float] = []  # time.monotonic() as each request arrived, whatever its path
        # The fake market's "now": no bar opens at or after it, and klines without startTime end here.
        self.now = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz="UTC")
        self.price_decimals = price_decimals
        self.clock = clock
        self.counts: Counter[str] = Counter()
        # (path, query parameters, injected clock time or None) per request, in arrival order.
        self.log: list[tuple[str, dict[str, str], float | None]] = []
        self._faults: dict[tuple[str, int], Fault] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----- fault injection -------------------------------------------------------------------------
    def fail(
        self,
        nth: int,
        status: int,
        body: str = "",
        *,
        path: str = KLINES,
        content_type: str = "application/json;charset=UTF-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the ``nth`` request to ``path`` (1-based) with ``status`` and ``body``."""
        self._faults[(path, nth)] = Fault(status=status, body=body, content_type=content_type, headers=headers or {})

    def hang(self, nth: int, seconds: float, *, path: str = KLINES) -> None:
        """Stall the ``nth`` request to ``path`` for ``seconds`` before answering it normally."""
        self._faults[(path, nth)] = Fault(delay_seconds=seconds)

    def garbage(self, nth: int, kind: str = "html", *, path: str = KLINES) -> None:
        """Answer the ``nth`` request with status 200 and ``kind``: html, truncated (JSON) or arity (rows)."""
        if kind not in ("html", "truncated", "arity"):
            raise ValueError(f"unknown garbage kind {kind!r}: use html, truncated or arity")
        self._faults[(path, nth)] = Fault(garbage=kind)

    def duplicate(self, nth: int, *, path: str = KLINES) -> None:
        """Answer the ``nth`` request normally but with every row repeated (an overlap to de-duplicate)."""
        self._faults[(path, nth)] = Fault(duplicate_rows=True)

    def requests_to(self, path: str) -> list[dict[str, str]]:
        """Query parameters of every request received on ``path``, in order."""
        with self._lock:
            return [q for p, q, _ in self.log if p == path]

    # ----- lifecycle -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake exchange is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL (scheme, host and port) to give the exchange source as ``api_base_url``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeBinance:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes stalled handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----- the API ---------------------------------------------------------------------------------
    def _record(self, path: str, query: dict[str, str]) -> int:
        with self._lock:
            self.counts[path] += 1
            self.log.append((path, query, self.clock() if self.clock else None))
            return self.counts[path]

    def _fault_for(self, path: str, nth: int) -> Fault | None:
        return self._faults.get((path, nth))

    def server_time_ms(self) -> int:
        return int(self.now.value // 1_000_000)

    def exchange_info(self) -> dict:
        return {
            "timezone": "UTC",
            "serverTime": self.server_time_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [_market_entry(s) for s in self.symbols],
        }

    def klines(self, query: dict[str, str]) -> tuple[int, object]:
        """(status, JSON payload) for /api/v3/klines, with Binance's rules for startTime/endTime/limit."""
        symbol = query.get("symbol", "")
        if symbol not in self.symbols:
            return 400, json.loads(INVALID_SYMBOL_BODY)
        interval = query.get("interval", "")
        if interval not in BINANCE_INTERVALS:
            return 400, json.loads(INVALID_INTERVAL_BODY)
        try:
            bar = timeframe_to_timedelta(interval)
        except ValueError:
            return 400, json.loads(INVALID_INTERVAL_BODY)
        limit = min(max(int(query.get("limit", 500)), 1), 1000)
        now = self.now
        end = pd.Timestamp(int(query["endTime"]), unit="ms", tz="UTC") if "endTime" in query else now
        end = min(end, now - pd.Timedelta(1))  # inclusive bound on the bar open time
        if "startTime" in query:
            start = pd.Timestamp(int(query["startTime"]), unit="ms", tz="UTC")
            rows = self._bars(symbol, interval, start, end, limit, from_end=False)
        else:
            rows = self._bars(symbol, interval, end - bar * (limit + 1), end, limit, from_end=True)
        return 200, [self._wire_row(r, bar) for r in rows]

    def _bars(
        self, symbol: str, interval: str, start: pd.Timestamp, end: pd.Timestamp, limit: int, *, from_end: bool
    ) -> list:
        if end < start:
            return []
        rows: list = []
        day = start.date()
        last_day = end.date()
        while day <= last_day and (from_end or len(rows) < limit):
            frame = generate_day(symbol, day, interval)
            keep = frame[(frame["timestamp"] >= start) & (frame["timestamp"] <= end)]
            rows.extend(keep.itertuples(index=False))
            day += timedelta(days=1)
        return rows[-limit:] if from_end else rows[:limit]

    def _fmt(self, value: float) -> str:
        return f"{value:.{self.price_decimals}f}"

    def _wire_row(self, row: object, bar: pd.Timedelta) -> list:
        open_ms = int(row.timestamp.value // 1_000_000)
        close_ms = open_ms + int(bar / pd.Timedelta(milliseconds=1)) - 1
        mid = (row.high + row.low) / 2
        # [open time, open, high, low, close, volume, close time, quote volume, trades, taker buy base,
        #  taker buy quote, ignore]: Binance's 12 fields, numbers as strings except times and trades.
        return [
            open_ms,
            self._fmt(row.open),
            self._fmt(row.high),
            self._fmt(row.low),
            self._fmt(row.close),
            self._fmt(row.volume),
            close_ms,
            self._fmt(row.volume * mid),
            max(1, int(row.volume / 3)),
            self._fmt(row.volume * 0.5),
            self._fmt(row.volume * 0.5 * mid),
            "0",
        ]


def _make_handler(fake: FakeBinance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakeBinance/1.0"

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: str, content_type: str, headers: dict[str, str] | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. its timeout)
                pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            with fake._lock:
                fake.arrivals.append(time.monotonic())
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
            try:
                if fake.latency_seconds and fake._stopping.wait(fake.latency_seconds):
                    return
                self._answer()
            finally:
                with fake._lock:
                    fake.in_flight -= 1

        def _answer(self) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            nth = fake._record(path, query)
            fault = fake._fault_for(path, nth)
            if fault is not None and fault.delay_seconds:
                if fake._stopping.wait(fault.delay_seconds):
                    return
            if fault is not None and fault.status is not None:
                self._send(fault.status, fault.body, fault.content_type, fault.headers)
                return
            json_type = "application/json;charset=UTF-8"
            if path == KLINES:
                status, payload = fake.klines(query)
            elif path == EXCHANGE_INFO:
                status, payload = 200, fake.exchange_info()
            elif path == TIME:
                status, payload = 200, {"serverTime": fake.server_time_ms()}
            elif path == PING:
                status, payload = 200, {}
            else:
                self._send(404, "<html><body><h1>404 Not Found</h1></body></html>", "text/html")
                return
            if fault is not None and fault.duplicate_rows and isinstance(payload, list):
                payload = [row for row in payload for _ in (0, 1)]
            if fault is not None and fault.garbage and status == 200:
                if fault.garbage == "html":
                    self._send(200, HTML_BODY, "text/html")
                    return
                text = json.dumps(payload, separators=(",", ":"))
                if fault.garbage == "truncated":
                    self._send(200, text[: max(1, len(text) // 2)], json_type)
                    return
                if fault.garbage == "arity" and isinstance(payload, list):
                    payload = [row[:5] for row in payload]  # volume and the rest missing
            self._send(status, json.dumps(payload, separators=(",", ":")), json_type)

    return Handler
