"""The ``postgres`` market-data source against a real PostgreSQL 15 server on 127.0.0.1."""

from __future__ import annotations

import pandas as pd
import psycopg
import pytest

from alphapulse_assets.market_data.schema import CANDLE_COLUMNS, normalize_candles, schema_problems
from alphapulse_assets.market_data.sources.fallback import FallbackChain
from alphapulse_assets.market_data.sources.postgres import PostgresSource, write_ohlcv
from alphapulse_assets.market_data.sources.sample import SampleSource
from alphapulse_assets.recovery.errors import (
    AuthenticationError,
    DataValidationError,
    ErrorClass,
    PermanentError,
    TransientError,
    UnknownSymbolError,
    classify,
)

pytestmark = pytest.mark.postgres

DAY1 = pd.Timestamp("2024-03-01", tz="UTC")
DAY3 = pd.Timestamp("2024-03-03", tz="UTC")
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def seeded(postgres_url):
    """A database holding two days of sample candles for two symbols; returns (url, canonical frame)."""
    frame = normalize_candles(SampleSource().fetch(SYMBOLS, DAY1, DAY3), where="sample")
    assert write_ohlcv(postgres_url, frame) == len(frame) == 2 * 2 * 96
    return postgres_url, frame


def _all_text(exc: BaseException) -> str:
    """Everything a user could see of an error: message, place, and the chained cause."""
    parts = [str(exc), repr(exc), str(getattr(exc, "where", ""))]
    if exc.__cause__ is not None:
        parts += [str(exc.__cause__), repr(exc.__cause__)]
    return "\n".join(parts)


def test_round_trip_equals_sample_data(seeded):
    url, frame = seeded
    got = PostgresSource(url).fetch(SYMBOLS, DAY1, DAY3)
    assert schema_problems(got) == []
    pd.testing.assert_frame_equal(got, frame)
    # Seeding again replaces rather than duplicates.
    write_ohlcv(url, frame)
    pd.testing.assert_frame_equal(PostgresSource(url).fetch(SYMBOLS, DAY1, DAY3), frame)


def test_window_is_start_inclusive_end_exclusive(seeded):
    url, frame = seeded
    start = DAY1 + pd.Timedelta(hours=6)
    end = DAY1 + pd.Timedelta(hours=7)  # a bar opens exactly at `end`: it must be left out
    got = PostgresSource(url).fetch(["BTCUSDT"], start, end)
    assert list(got["timestamp"]) == list(pd.date_range(start, periods=4, freq="15min", unit="ns"))
    expected = frame[(frame.symbol == "BTCUSDT") & (frame.timestamp >= start) & (frame.timestamp < end)]
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True))
    # A start between bars skips the bar that opened before it; naive bounds are read as UTC.
    got = PostgresSource(url).fetch(["BTCUSDT"], pd.Timestamp("2024-03-01 06:07"), pd.Timestamp("2024-03-01 06:31"))
    assert [t.strftime("%H:%M") for t in got["timestamp"]] == ["06:15", "06:30"]


def test_symbol_known_but_outside_window_gives_empty_frame(seeded):
    url, _ = seeded
    got = PostgresSource(url).fetch(["BTCUSDT"], DAY3, DAY3 + pd.Timedelta(days=1))
    assert got.empty and list(got.columns) == list(CANDLE_COLUMNS)


def test_unknown_symbol_is_permanent_unknown_symbol_error(seeded):
    url, _ = seeded
    with pytest.raises(UnknownSymbolError, match="SOLUSDT") as info:
        PostgresSource(url).fetch(["BTCUSDT", "SOLUSDT"], DAY1, DAY3)
    assert classify(info.value).error_class is ErrorClass.PERMANENT


def test_parameterized_sql_resists_injection(seeded):
    url, frame = seeded
    evil = "BTCUSDT'; DROP TABLE ohlcv; --"
    with pytest.raises(UnknownSymbolError):
        PostgresSource(url).fetch([evil], DAY1, DAY3)
    # The table and every row are still there.
    pd.testing.assert_frame_equal(PostgresSource(url).fetch(SYMBOLS, DAY1, DAY3), frame)
    # A hostile table name is refused before any SQL is sent.
    for bad in ("ohlcv; DROP TABLE ohlcv", 'ohlcv"', "a.b.c", "", "1table"):
        with pytest.raises(PermanentError, match="invalid table name"):
            PostgresSource(url, table=bad)


def test_schema_qualified_table_and_numeric_columns(postgres_url):
    with psycopg.connect(_libpq(postgres_url), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA market")
        conn.execute(
            "CREATE TABLE market.bars (time timestamptz, symbol text, open numeric, high numeric, "
            "low numeric, close numeric, volume numeric)"
        )
        conn.execute(
            "INSERT INTO market.bars VALUES ('2024-03-01 00:00+00', 'BTCUSDT', 1.5, 2.25, 1, 2, 10.125), "
            "('2024-03-01 01:00+02', 'BTCUSDT', 2, 3, 1.5, 2.5, 7)"
        )
    got = PostgresSource(postgres_url, table="market.bars").fetch(["BTCUSDT"], DAY1 - pd.Timedelta(days=1), DAY3)
    assert schema_problems(got) == []
    # The +02 offset row is 23:00 UTC of the day before, so it sorts first.
    assert list(got["timestamp"]) == [pd.Timestamp("2024-02-29 23:00", tz="UTC"), DAY1]
    assert got["volume"].tolist() == [7.0, 10.125]


def test_text_in_numeric_column_is_data_validation_error(postgres_url):
    with psycopg.connect(_libpq(postgres_url), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE ohlcv (time timestamptz, symbol text, open text, high text, low text, "
            "close text, volume text)"
        )
        conn.execute("INSERT INTO ohlcv VALUES ('2024-03-01 00:00+00', 'BTCUSDT', '1', '2', '0.5', 'n/a', '3')")
    with pytest.raises(DataValidationError, match="close") as info:
        PostgresSource(postgres_url).fetch(["BTCUSDT"], DAY1, DAY3)
    assert "'n/a'" in str(info.value)


def test_server_down_is_transient_then_same_source_reads_again(seeded, postgres_server):
    url, frame = seeded
    source = PostgresSource(url, timeout_seconds=5)
    source.check_reachable()
    postgres_server.stop_server_only()
    try:
        with pytest.raises(TransientError, match="cannot reach") as info:
            source.fetch(SYMBOLS, DAY1, DAY3)
        assert classify(info.value).error_class is ErrorClass.TRANSIENT
        # recovery/errors.py classifies psycopg's own exception as transient too.
        assert isinstance(info.value.__cause__, psycopg.OperationalError)
        assert classify(info.value.__cause__).error_class is ErrorClass.TRANSIENT
        with pytest.raises(TransientError):
            source.check_reachable()
    finally:
        postgres_server.start()
    source.check_reachable()
    pd.testing.assert_frame_equal(source.fetch(SYMBOLS, DAY1, DAY3), frame)


def test_statement_timeout_is_transient(seeded):
    url, _ = seeded
    # Hold an exclusive lock so the read blocks; the statement timeout must end it, not hang the test.
    with psycopg.connect(_libpq(url)) as locker:
        locker.execute("LOCK TABLE ohlcv IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(TransientError, match="statement timeout") as info:
            PostgresSource(url, timeout_seconds=0.3).fetch(SYMBOLS, DAY1, DAY3)
        locker.rollback()
    assert classify(info.value).retryable


def test_wrong_password_is_permanent_and_never_shown(seeded, postgres_server):
    url, _ = seeded
    dbname = url.rsplit("/", 1)[1]
    wrong = "wrong-" + postgres_server.password[::-1]
    bad_url = postgres_server.url(dbname, user="alphapulse", password=wrong)
    source = PostgresSource(bad_url)
    for call in (lambda: source.fetch(SYMBOLS, DAY1, DAY3), source.check_reachable):
        with pytest.raises(AuthenticationError, match="refused the credentials") as info:
            call()
        assert not classify(info.value).retryable
        text = _all_text(info.value)
        assert wrong not in text and postgres_server.password not in text
    assert wrong not in source.describe()


def test_unknown_role_and_database_are_permanent(postgres_server, postgres_url):
    with pytest.raises(AuthenticationError):
        PostgresSource(postgres_server.url("postgres", user="nobody_here", password="x")).check_reachable()
    with pytest.raises(PermanentError, match="does not exist") as info:
        PostgresSource(postgres_server.password_url("no_such_db")).check_reachable()
    assert classify(info.value).error_class is ErrorClass.PERMANENT


def test_missing_table_and_column_are_permanent_and_named(postgres_url):
    with pytest.raises(PermanentError, match="table ohlcv does not exist") as info:
        PostgresSource(postgres_url).fetch(SYMBOLS, DAY1, DAY3)
    assert classify(info.value).error_class is ErrorClass.PERMANENT
    with psycopg.connect(_libpq(postgres_url), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE prices (time timestamptz, symbol text, open float8, high float8, low float8, close float8)"
        )
    with pytest.raises(PermanentError, match=r"table prices lacks a required column .*volume") as info:
        PostgresSource(postgres_url, table="prices").fetch(SYMBOLS, DAY1, DAY3)
    assert classify(info.value).error_class is ErrorClass.PERMANENT


def test_password_never_in_describe_or_errors(seeded, postgres_server):
    url, _ = seeded
    password = postgres_server.password
    assert password in url  # the fixture really uses a password URL
    source = PostgresSource(url, table="missing_table")
    assert password not in source.describe() and "***" in source.describe()
    assert "127.0.0.1" in source.describe()
    with pytest.raises(PermanentError) as info:
        source.fetch(SYMBOLS, DAY1, DAY3)
    assert password not in _all_text(info.value)
    with pytest.raises(UnknownSymbolError) as info:
        PostgresSource(url).fetch(["NOPEUSDT"], DAY1, DAY3)
    assert password not in _all_text(info.value)


def test_from_env(monkeypatch, seeded):
    url, frame = seeded
    monkeypatch.delenv("AP_TEST_MARKET_DB", raising=False)
    with pytest.raises(PermanentError, match="AP_TEST_MARKET_DB"):
        PostgresSource.from_env("AP_TEST_MARKET_DB", timeout_seconds=5)
    monkeypatch.setenv("AP_TEST_MARKET_DB", url)
    source = PostgresSource.from_env("AP_TEST_MARKET_DB", timeout_seconds=5)
    assert source.name == "postgres" and source.timeout_seconds == 5
    pd.testing.assert_frame_equal(source.fetch(SYMBOLS, DAY1, DAY3), frame)


class CountingPostgres(PostgresSource):
    """The real source, counting the calls (each is a connection and a query) and the symbols asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[list[str]] = []

    def fetch(self, symbols, start, end):
        self.calls.append(list(symbols))
        return super().fetch(symbols, start, end)


def _one_by_one(url: str) -> FallbackChain:
    source = PostgresSource(url)
    source.serves_many_at_once = False  # the chain as it was: one call per symbol
    return FallbackChain([source, SampleSource()])


def test_a_chain_led_by_postgres_asks_it_once_for_every_symbol_and_gets_what_one_by_one_got(seeded):
    url, frame = seeded
    source = CountingPostgres(url)
    result = FallbackChain([source, SampleSource()]).fetch(SYMBOLS, DAY1, DAY3)
    assert source.calls == [SYMBOLS]
    assert result.source_by_symbol == {s: "postgres" for s in SYMBOLS} and result.fallbacks == []
    pd.testing.assert_frame_equal(result.candles, frame)
    pd.testing.assert_frame_equal(result.candles, _one_by_one(url).fetch(SYMBOLS, DAY1, DAY3).candles)


def test_symbols_the_database_lacks_fall_back_one_by_one_and_each_failure_names_its_symbol(seeded):
    url, frame = seeded
    asked = ["ETHUSDT", "ADAUSDT", "BTCUSDT"]  # ADAUSDT is not in the table: the one query fails for all
    source = CountingPostgres(url)
    result = FallbackChain([source, SampleSource()]).fetch(asked, DAY1, DAY3)
    assert source.calls == [asked, ["ETHUSDT"], ["ADAUSDT"], ["BTCUSDT"]]
    assert result.source_by_symbol == {"ETHUSDT": "postgres", "ADAUSDT": "sample", "BTCUSDT": "postgres"}
    assert [(src, sym) for src, sym, _ in result.fallbacks] == [("postgres", "ADAUSDT")]
    assert "unknown symbol" in result.fallbacks[0][2]
    assert list(result.candles["symbol"].unique()) == asked  # in the order asked, as one by one
    pd.testing.assert_frame_equal(result.candles, _one_by_one(url).fetch(asked, DAY1, DAY3).candles)
    day4 = DAY3 + pd.Timedelta(days=1)  # known symbols, no rows in the window: each is served by the next source
    empty = FallbackChain([CountingPostgres(url), SampleSource()]).fetch(SYMBOLS, DAY3, day4)
    assert empty.source_by_symbol == {s: "sample" for s in SYMBOLS}
    assert [(src, sym, msg) for src, sym, msg in empty.fallbacks] == [
        ("postgres", s, "permanent: no rows for the window") for s in SYMBOLS
    ]


def test_with_the_database_down_each_symbol_records_the_outage_and_it_is_asked_once(seeded, postgres_server):
    url, _ = seeded
    source = CountingPostgres(url, timeout_seconds=5)
    postgres_server.stop_server_only()
    try:
        result = FallbackChain([source, SampleSource()]).fetch(SYMBOLS, DAY1, DAY3)
        with pytest.raises(TransientError, match="no source could serve BTCUSDT"):  # a chain of one: retry later
            FallbackChain([source]).fetch(SYMBOLS, DAY1, DAY3)
    finally:
        postgres_server.start()
    assert source.calls == [SYMBOLS, SYMBOLS]  # once per chain, not once more per symbol
    assert result.source_by_symbol == {s: "sample" for s in SYMBOLS}
    assert [(src, sym) for src, sym, _ in result.fallbacks] == [("postgres", s) for s in SYMBOLS]
    assert all(msg.startswith("transient: ") and "cannot reach" in msg for _, _, msg in result.fallbacks)
