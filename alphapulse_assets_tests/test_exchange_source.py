"""The exchange source against a loopback server that speaks Binance's kline wire format.

ccxt's real ``binance`` class does the HTTP and the parsing; only the base URL points at 127.0.0.1.
Retries are the caller's job (the Dagster retry policy), so a "retry" here is calling fetch again.
"""

from __future__ import annotations

import sys
from datetime import date

import pandas as pd
import pytest

from alphapulse_assets.market_data.schema import CANDLE_COLUMNS, schema_problems
from alphapulse_assets.market_data.sources.exchange import ExchangeSource, override_api_urls
from alphapulse_assets.market_data.sources.sample import generate_day
from alphapulse_assets.recovery.errors import (
    AuthenticationError,
    DataValidationError,
    ErrorClass,
    PermanentError,
    TransientError,
    UnknownSymbolError,
    classify,
)
from alphapulse_assets.settings import AlphaPulseSettings
from alphapulse_assets_tests.fake_exchange import (
    EXCHANGE_INFO,
    HTML_BODY,
    INVALID_SYMBOL_BODY,
    KLINES,
    PING,
    TIME,
    FakeBinance,
)

DAY = date(2024, 3, 5)
START = pd.Timestamp("2024-03-05", tz="UTC")
END = START + pd.Timedelta(days=1)
BAR = pd.Timedelta(minutes=15)
BAR_MS = 15 * 60 * 1000


class FakeTime:
    """An injected clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def on_the_wire(frame: pd.DataFrame) -> pd.DataFrame:
    """The sample candles as a client reads them from Binance: decimal strings with 8 places."""
    out = frame.copy()
    for col in ("open", "high", "low", "close", "volume"):
        out[col] = [float(f"{v:.8f}") for v in out[col]]
    return out


def expected(symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    days = pd.date_range(start.normalize(), (end - pd.Timedelta(1)).normalize(), freq="D")
    frame = pd.concat([generate_day(symbol, d.date()) for d in days], ignore_index=True)
    frame = frame[(frame["timestamp"] >= start) & (frame["timestamp"] < end)].reset_index(drop=True)
    return on_the_wire(frame)


def assert_same(actual: pd.DataFrame, want: pd.DataFrame) -> None:
    assert schema_problems(actual) == []
    pd.testing.assert_frame_equal(
        actual[list(CANDLE_COLUMNS)].reset_index(drop=True),
        want[list(CANDLE_COLUMNS)].reset_index(drop=True),
        check_exact=True,
        check_dtype=False,  # symbol column object vs str; values compared exactly
    )


@pytest.fixture
def fake():
    with FakeBinance() as server:
        yield server


@pytest.fixture
def ftime() -> FakeTime:
    return FakeTime()


def make_source(fake: FakeBinance, ftime: FakeTime, **kwargs) -> ExchangeSource:
    kwargs.setdefault("page_limit", 40)
    kwargs.setdefault("timeout_seconds", 5)
    return ExchangeSource(api_base_url=fake.url, sleep=ftime.sleep, clock=ftime.clock, **kwargs)


def kline_starts(fake: FakeBinance) -> list[tuple[int, int]]:
    return [(int(q["startTime"]), int(q["limit"])) for q in fake.requests_to(KLINES)]


# ----- pagination and the window ----------------------------------------------------------------------
def test_paginates_a_full_day_into_exactly_the_sample_day(fake, ftime):
    source = make_source(fake, ftime)
    out = source.fetch(["BTCUSDT"], START, END)

    assert len(out) == 96
    assert_same(out, on_the_wire(generate_day("BTCUSDT", DAY)))
    start_ms = int(START.value // 1_000_000)
    # 40 + 40 + 16: each page starts one bar after the last one, and the last asks only for what is left.
    assert kline_starts(fake) == [(start_ms, 40), (start_ms + 40 * BAR_MS, 40), (start_ms + 80 * BAR_MS, 16)]
    assert {q["symbol"] for q in fake.requests_to(KLINES)} == {"BTCUSDT"}
    assert {q["interval"] for q in fake.requests_to(KLINES)} == {"15m"}
    # Only the public spot endpoints were hit: no futures, margin, currencies or private calls.
    assert set(fake.counts) == {EXCHANGE_INFO, KLINES}
    assert fake.counts[EXCHANGE_INFO] == 1


def test_window_is_half_open_across_days_and_symbols(fake, ftime):
    start = START + pd.Timedelta(hours=3)
    end = START + pd.Timedelta(days=1, hours=2)  # crosses midnight
    out = make_source(fake, ftime).fetch(["ETHUSDT", "BTCUSDT"], start, end)

    for symbol in ("BTCUSDT", "ETHUSDT"):
        part = out[out["symbol"] == symbol]
        assert part["timestamp"].min() == start
        assert part["timestamp"].max() == end - BAR  # the bar opening at `end` is not included
        assert_same(part, expected(symbol, start, end))
    assert list(out["symbol"].unique()) == ["BTCUSDT", "ETHUSDT"]  # sorted by (symbol, timestamp)
    assert len(out) == 2 * 23 * 4


def test_a_window_not_on_bar_boundaries_keeps_only_bars_opening_inside_it(fake, ftime):
    start = START + pd.Timedelta(minutes=7)
    end = START + pd.Timedelta(hours=1, minutes=7)
    out = make_source(fake, ftime).fetch(["BTCUSDT"], start, end)
    assert list(out["timestamp"]) == [START + BAR * i for i in (1, 2, 3, 4)]


def test_rows_repeated_by_the_exchange_are_deduplicated(fake, ftime):
    fake.duplicate(2)  # the second page sends every row twice
    out = make_source(fake, ftime).fetch(["BTCUSDT"], START, END)
    assert not out.duplicated(["symbol", "timestamp"]).any()
    assert_same(out, on_the_wire(generate_day("BTCUSDT", DAY)))


def test_an_empty_window_makes_no_request(fake, ftime):
    out = make_source(fake, ftime).fetch(["BTCUSDT"], START, START)
    assert out.empty and schema_problems(out) == []
    assert fake.counts[KLINES] == 0


def test_bars_stop_where_the_exchange_has_none(ftime):
    # The market's "now" is 06:00: the window asks for a full day, the exchange has 24 bars of it.
    with FakeBinance(now="2024-03-05T06:00:00Z") as fake:
        out = make_source(fake, ftime).fetch(["BTCUSDT"], START, END)
    assert len(out) == 24
    assert_same(out, expected("BTCUSDT", START, START + pd.Timedelta(hours=6)))


# ----- error classification ---------------------------------------------------------------------------
def test_rate_limited_then_retried_recovers(fake, ftime, tmp_path):
    fake.fail(2, 429, '{"code":-1003,"msg":"Too many requests."}', headers={"Retry-After": "1"})
    source = make_source(fake, ftime, spool_dir=tmp_path)
    with pytest.raises(TransientError) as info:
        source.fetch(["BTCUSDT"], START, END)
    assert classify(info.value).error_class is ErrorClass.TRANSIENT
    assert type(info.value.__cause__).__name__ == "DDoSProtection"  # what ccxt's binance raises for 429
    assert "429" in str(info.value) and "BTCUSDT" in str(info.value)

    out = source.fetch(["BTCUSDT"], START, END)  # what the retry policy does next
    assert_same(out, on_the_wire(generate_day("BTCUSDT", DAY)))


# (status, body, what ccxt raises for it, what the source raises, class)
ERROR_CASES = [
    (
        418,
        '{"code":-1003,"msg":"Way too many requests; IP banned."}',
        "DDoSProtection",
        TransientError,
        ErrorClass.TRANSIENT,
    ),
    # ccxt calls these two permanent-looking (OperationFailed, ExchangeError): a 5xx is the server's trouble.
    (
        500,
        '{"code":-1000,"msg":"An unknown error occurred while processing the request."}',
        "OperationFailed",
        TransientError,
        ErrorClass.TRANSIENT,
    ),
    (
        503,
        '{"code":-1008,"msg":"Server is currently overloaded with other requests."}',
        "ExchangeError",
        TransientError,
        ErrorClass.TRANSIENT,
    ),
    (503, HTML_BODY, "ExchangeNotAvailable", TransientError, ErrorClass.TRANSIENT),
    (400, INVALID_SYMBOL_BODY, "BadSymbol", UnknownSymbolError, ErrorClass.PERMANENT),
    (
        400,
        '{"code":-1100,"msg":"Illegal characters found in parameter \'symbol\'."}',
        "BadRequest",
        PermanentError,
        ErrorClass.PERMANENT,
    ),
    # ccxt calls a bare 400 ExchangeNotAvailable, a NetworkError: retrying the same bad request cannot help.
    (400, "", "ExchangeNotAvailable", PermanentError, ErrorClass.PERMANENT),
    (
        401,
        '{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}',
        "AuthenticationError",
        AuthenticationError,
        ErrorClass.PERMANENT,
    ),
    (404, "<html><body>Not Found</body></html>", "ExchangeNotAvailable", PermanentError, ErrorClass.PERMANENT),
]


@pytest.mark.parametrize(("status", "body", "ccxt_name", "raised", "error_class"), ERROR_CASES)
def test_http_errors_are_classified(fake, ftime, status, body, ccxt_name, raised, error_class):
    fake.fail(1, status, body, content_type="text/html" if body.startswith("<") else "application/json")
    with pytest.raises(raised) as info:
        make_source(fake, ftime).fetch(["BTCUSDT"], START, END)
    assert type(info.value.__cause__).__name__ == ccxt_name
    assert classify(info.value).error_class is error_class
    assert f"HTTP {status}" in str(info.value)
    assert "binance" in str(info.value) and "BTCUSDT" in str(info.value)


def test_invalid_symbol_from_the_server_is_unknown_symbol(fake, ftime):
    fake.fail(1, 400, INVALID_SYMBOL_BODY)
    with pytest.raises(UnknownSymbolError, match="BTCUSDT") as info:
        make_source(fake, ftime).fetch(["BTCUSDT"], START, END)
    assert classify(info.value).error_class is ErrorClass.PERMANENT
    assert not classify(info.value).retryable


def test_symbol_not_listed_fails_before_any_kline_request(fake, ftime):
    with pytest.raises(UnknownSymbolError, match="FOOUSDT") as info:
        make_source(fake, ftime).fetch(["BTCUSDT", "FOOUSDT"], START, END)
    assert classify(info.value).error_class is ErrorClass.PERMANENT
    assert fake.counts[KLINES] == 0


def test_a_hanging_server_times_out_as_transient(fake, ftime):
    # If the timeout did not fire, the server would answer normally after 60 s and fetch would succeed.
    fake.hang(2, 60)
    source = make_source(fake, ftime, timeout_seconds=0.5)
    with pytest.raises(TransientError) as info:
        source.fetch(["BTCUSDT"], START, END)
    assert type(info.value.__cause__).__name__ == "RequestTimeout"
    assert classify(info.value).error_class is ErrorClass.TRANSIENT
    assert "no response" in str(info.value)


def test_an_unreachable_server_is_transient(ftime):
    with FakeBinance() as gone:
        url = gone.url
    source = ExchangeSource(api_base_url=url, timeout_seconds=2, sleep=ftime.sleep, clock=ftime.clock)
    with pytest.raises(TransientError):
        source.check_reachable()
    with pytest.raises(TransientError):
        source.fetch(["BTCUSDT"], START, END)


@pytest.mark.parametrize("kind", ["html", "truncated", "arity"])
def test_garbage_is_a_data_validation_error(fake, ftime, kind):
    fake.garbage(2, kind)
    with pytest.raises(DataValidationError) as info:
        make_source(fake, ftime).fetch(["BTCUSDT"], START, END)
    message = str(info.value)
    assert "binance" in message and "BTCUSDT" in message
    assert classify(info.value).error_class is ErrorClass.PERMANENT


def test_garbage_market_list_is_a_data_validation_error(fake, ftime):
    fake.garbage(1, "html", path=EXCHANGE_INFO)
    with pytest.raises(DataValidationError, match="no markets"):
        make_source(fake, ftime).fetch(["BTCUSDT"], START, END)


# ----- resume -----------------------------------------------------------------------------------------
def test_resume_after_a_mid_fetch_failure_requests_only_the_remaining_pages(fake, ftime, tmp_path):
    fake.fail(3, 503, "")  # pages 1 and 2 arrive, page 3 fails
    source = make_source(fake, ftime, spool_dir=tmp_path)
    with pytest.raises(TransientError):
        source.fetch(["BTCUSDT"], START, END)
    assert len(list(tmp_path.iterdir())) == 1  # the two pages are on disk

    # A fresh source, as a retried run in a new process would have.
    out = make_source(fake, ftime, spool_dir=tmp_path).fetch(["BTCUSDT"], START, END)
    assert_same(out, on_the_wire(generate_day("BTCUSDT", DAY)))
    start_ms = int(START.value // 1_000_000)
    assert kline_starts(fake) == [
        (start_ms, 40),
        (start_ms + 40 * BAR_MS, 40),
        (start_ms + 80 * BAR_MS, 16),  # failed
        (start_ms + 80 * BAR_MS, 16),  # the retry: only what was missing
    ]
    assert list(tmp_path.iterdir()) == []  # the window is complete: the spool is gone


def test_resume_skips_symbols_already_complete(fake, ftime, tmp_path):
    fake.fail(4, 503, "")  # BTCUSDT takes requests 1-3, ETHUSDT's first page fails
    with pytest.raises(TransientError, match="ETHUSDT"):
        make_source(fake, ftime, spool_dir=tmp_path).fetch(["BTCUSDT", "ETHUSDT"], START, END)
    out = make_source(fake, ftime, spool_dir=tmp_path).fetch(["BTCUSDT", "ETHUSDT"], START, END)
    assert [q["symbol"] for q in fake.requests_to(KLINES)] == ["BTCUSDT"] * 3 + ["ETHUSDT"] * 4
    assert_same(out[out["symbol"] == "ETHUSDT"], on_the_wire(generate_day("ETHUSDT", DAY)))
    assert len(out) == 192
    assert list(tmp_path.iterdir()) == []


def test_without_a_spool_a_retry_starts_over(fake, ftime):
    fake.fail(3, 503, "")
    source = make_source(fake, ftime)
    with pytest.raises(TransientError):
        source.fetch(["BTCUSDT"], START, END)
    source.fetch(["BTCUSDT"], START, END)
    assert fake.counts[KLINES] == 6  # 2 good + 1 failed, then all 3 again


def test_a_torn_spool_line_is_fetched_again(fake, ftime, tmp_path):
    fake.fail(3, 503, "")
    with pytest.raises(TransientError):
        make_source(fake, ftime, spool_dir=tmp_path).fetch(["BTCUSDT"], START, END)
    (spool,) = tmp_path.iterdir()
    lines = spool.read_text().splitlines(keepends=True)
    spool.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # crash mid-write of page 2
    out = make_source(fake, ftime, spool_dir=tmp_path).fetch(["BTCUSDT"], START, END)
    assert_same(out, on_the_wire(generate_day("BTCUSDT", DAY)))
    start_ms = int(START.value // 1_000_000)
    assert kline_starts(fake)[3:] == [(start_ms + 40 * BAR_MS, 40), (start_ms + 80 * BAR_MS, 16)]


# ----- rate limiting ----------------------------------------------------------------------------------
def test_requests_are_spaced_by_the_rate_limit_on_the_injected_clock(ftime):
    with FakeBinance(clock=ftime.clock) as fake:
        make_source(fake, ftime, rate_limit_ms=1000).fetch(["BTCUSDT"], START, END)
        times = [t for _, _, t in fake.log]
    assert len(times) == 4  # exchangeInfo + 3 kline pages
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(g >= 1.0 for g in gaps), gaps
    assert len(ftime.sleeps) == 3 and all(s > 0 for s in ftime.sleeps)


def test_ccxt_endpoint_weights_also_run_on_the_injected_clock(ftime):
    # ccxt's binance: rateLimit 50 ms, exchangeInfo weighs 4 (200 ms), klines 0.4 (20 ms); our floor is 10 ms.
    with FakeBinance(clock=ftime.clock) as fake:
        source = make_source(fake, ftime, rate_limit_ms=10)
        source.check_reachable()
        source.fetch(["BTCUSDT"], START, END)
        log = [(p, t) for p, _, t in fake.log]
    assert [p for p, _ in log] == [TIME, EXCHANGE_INFO, KLINES, KLINES, KLINES]
    gaps = [b[1] - a[1] for a, b in zip(log, log[1:], strict=False)]
    assert gaps[0] == pytest.approx(0.2)
    assert all(g == pytest.approx(0.02) for g in gaps[1:])


# ----- health, settings, packaging -------------------------------------------------------------------
def test_check_reachable_makes_one_cheap_public_call(fake, ftime):
    make_source(fake, ftime).check_reachable()
    assert dict(fake.counts) == {TIME: 1}
    assert PING not in fake.counts


def test_from_settings_reads_url_and_spool_and_never_shows_keys(fake, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ALPHAPULSE_EXCHANGE_API_URL", fake.url)
    monkeypatch.setenv("ALPHAPULSE_EXCHANGE_API_KEY", "key-that-must-not-leak")
    monkeypatch.setenv("ALPHAPULSE_EXCHANGE_API_SECRET", "secret-that-must-not-leak")
    settings = AlphaPulseSettings(home=tmp_path, base_timeframe="1h", source_timeout_seconds=7)
    from alphapulse_assets.market_data.sources import build_source

    source = build_source("exchange", settings)
    assert isinstance(source, ExchangeSource)
    assert (source.exchange_id, source.timeframe, source.timeout_seconds) == ("binance", "1h", 7)
    assert source.spool_dir == tmp_path / "exchange-spool"
    caplog.set_level("DEBUG")
    out = source.fetch(["ADAUSDT"], START, START + pd.Timedelta(hours=5))
    assert len(out) == 5 and (out["timestamp"].diff().dropna() == pd.Timedelta(hours=1)).all()
    assert source._exchange.apiKey == "key-that-must-not-leak"  # handed to ccxt...
    own = {k: v for k, v in vars(source).items() if k != "_exchange"}
    for text in (source.describe(), repr(own), caplog.text):  # ...and shown nowhere
        assert "must-not-leak" not in text


def test_missing_ccxt_is_a_permanent_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ccxt", None)  # makes `import ccxt` raise ImportError
    with pytest.raises(PermanentError, match=r"alphapulse-assets\[exchange\]"):
        ExchangeSource(api_base_url="http://127.0.0.1:9").fetch(["BTCUSDT"], START, END)


def test_override_keeps_each_endpoint_path():
    urls = {"public": "https://api.binance.com/api/v3", "fapiPublic": "https://fapi.binance.com/fapi/v1"}
    assert override_api_urls(urls, "http://127.0.0.1:8080") == {
        "public": "http://127.0.0.1:8080/api/v3",
        "fapiPublic": "http://127.0.0.1:8080/fapi/v1",
    }
    with pytest.raises(PermanentError):
        override_api_urls(urls, "not a url")


# ----- concurrency within the rate limit ----------------------------------------------------------------
def test_symbols_are_fetched_concurrently_and_requests_never_start_closer_than_the_rate_limit():
    """A distant exchange (every answer takes 0.4 s) and a limit of one request per 0.15 s: the chain fetches
    four symbols at once, overlapping in flight, while the exchange sees its requests at least 0.15 s apart;
    one after another the same requests would span at least 6 x 0.4 s (2.4 s), here they span about 1.2 s."""
    from alphapulse_assets.market_data.sources.fallback import FallbackChain

    symbols = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT", "SOLUSDT"]
    interval, latency = 0.15, 0.4
    with FakeBinance(symbols, latency_seconds=latency) as fake:
        source = ExchangeSource(api_base_url=fake.url, page_limit=96, rate_limit_ms=interval * 1000, concurrency=4)
        result = FallbackChain([source]).fetch(symbols, START, END)
        source.close()
        arrivals, most_at_once = list(fake.arrivals), fake.max_in_flight
    assert result.source_by_symbol == dict.fromkeys(symbols, "exchange") and not result.fallbacks
    for symbol in symbols:  # every symbol whole, as a sequential fetch returns it
        assert_same(result.candles[result.candles.symbol == symbol], on_the_wire(generate_day(symbol, DAY)))
    assert fake.counts[EXCHANGE_INFO] == 1 and fake.counts[KLINES] == len(symbols)  # the market list once
    assert most_at_once >= 2  # concurrency happened
    # k requests after any request arrive at least k intervals later: the limiter never lets requests bunch up
    # (only one request's scheduling jitter on a busy machine, which does not add up over an exchange's window).
    jitter = 0.05
    for i, first in enumerate(arrivals):
        for k, later in enumerate(arrivals[i + 1 :], start=1):
            assert later - first >= k * interval - jitter, (i, k, arrivals)
    # The exchange served all seven requests in less time than six answers take one after another.
    assert arrivals[-1] - arrivals[0] < len(symbols) * latency, arrivals
