"""The ``files`` source on files these tests write: every documented layout, the exports real users have
(Yahoo, Dukascopy, MetaTrader, Binance dumps, TradingView), and the mistakes a new user makes."""

from __future__ import annotations

import gzip
import zipfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alphapulse_assets.market_data import quality
from alphapulse_assets.market_data.schema import CANDLE_COLUMNS, schema_problems
from alphapulse_assets.market_data.sources.files import FileSource, cache_info, clear_cache, export_sample
from alphapulse_assets.market_data.sources.files import cache as files_cache
from alphapulse_assets.market_data.sources.sample import SampleSource
from alphapulse_assets.recovery.errors import (
    DataValidationError,
    ErrorClass,
    PermanentError,
    TransientError,
    UnknownSymbolError,
    classify,
)

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
UTC = "UTC"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def expected(symbols, start, end, timeframe="15m") -> pd.DataFrame:
    return SampleSource(timeframe).fetch(symbols, start, end)


def assert_same_candles(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert schema_problems(got) == []
    pd.testing.assert_frame_equal(
        got.astype({"symbol": str}).reset_index(drop=True),
        want.astype({"symbol": str}).reset_index(drop=True),
        rtol=1e-12,
    )


def raises_validation(match_all: list[str], fn, *args):
    """Call fn and return the DataValidationError it raises; every string must be in the message."""
    with pytest.raises(DataValidationError) as info:
        fn(*args)
    message = str(info.value)
    for part in match_all:
        assert part in message, f"{part!r} not in {message!r}"
    assert classify(info.value).error_class is ErrorClass.PERMANENT
    return info.value


# ------------------------------------------------------------------------------------ layouts


@pytest.mark.parametrize("layout", ["per-symbol", "per-symbol-monthly", "single-file"])
@pytest.mark.parametrize("file_format", ["csv", "parquet", "csv.gz"])
def test_round_trip_every_layout(tmp_path, layout, file_format):
    written = export_sample(tmp_path, SYMBOLS, date(2024, 1, 28), date(2024, 2, 3), layout, file_format=file_format)
    assert written and all(p.exists() for p in written)
    if layout == "per-symbol-monthly":
        assert tmp_path / "BTCUSDT" / f"BTCUSDT-15m-2024-01.{file_format}" in written
        assert tmp_path / "ETHUSDT" / f"ETHUSDT-15m-2024-02.{file_format}" in written
    source = FileSource(tmp_path)
    # A window across the month boundary, not aligned to days.
    start, end = ts("2024-01-30 05:15"), ts("2024-02-01 20:00")
    got = source.fetch(SYMBOLS, start, end)
    assert_same_candles(got, expected(SYMBOLS, start, end))
    assert got["timestamp"].min() == start and got["timestamp"].max() == end - pd.Timedelta("15min")
    assert source.synthetic and "SYNTHETIC" in source.describe()


def test_lower_case_names_and_one_symbol_of_a_shared_file(tmp_path):
    export_sample(tmp_path, ["ADAUSDT"], date(2024, 1, 1), date(2024, 1, 1), "per-symbol")
    (tmp_path / "ADAUSDT.csv").rename(tmp_path / "adausdt.csv")
    export_sample(tmp_path / "shared", SYMBOLS, date(2024, 1, 1), date(2024, 1, 1), "single-file")
    (tmp_path / "shared" / "candles.csv").rename(tmp_path / "all.csv")
    source = FileSource(tmp_path)
    day = (ts("2024-01-01"), ts("2024-01-02"))
    assert_same_candles(source.fetch(["adausdt"], *day), expected(["ADAUSDT"], *day))
    assert_same_candles(source.fetch(["ETHUSDT"], *day), expected(["ETHUSDT"], *day))
    assert source.symbols() == ["ADAUSDT", "BTCUSDT", "ETHUSDT"]


def test_window_outside_the_files_gives_no_rows(tmp_path):
    export_sample(tmp_path, SYMBOLS, date(2024, 1, 1), date(2024, 1, 2), "per-symbol-monthly")
    got = FileSource(tmp_path).fetch(SYMBOLS, ts("2024-06-01"), ts("2024-06-02"))
    assert got.empty and list(got.columns) == list(CANDLE_COLUMNS)


def test_only_month_files_that_can_hold_the_window_are_read(tmp_path):
    export_sample(tmp_path, ["BTCUSDT"], date(2024, 1, 1), date(2024, 3, 31), "per-symbol-monthly")
    broken = tmp_path / "BTCUSDT" / "BTCUSDT-15m-2024-03.csv"
    broken.write_text("timestamp,open,high,low,close,volume\n2024-03-01T00:00:00+00:00,1,2,0.5,oops,3\n")
    source = FileSource(tmp_path)
    day = (ts("2024-01-15"), ts("2024-01-16"))
    assert_same_candles(source.fetch(["BTCUSDT"], *day), expected(["BTCUSDT"], *day))
    assert cache_info()["entries"] == 1  # January only: February and the broken March were not opened
    raises_validation([str(broken), "'oops'", "line 2"], source.fetch, ["BTCUSDT"], ts("2024-03-10"), ts("2024-03-11"))


def test_daily_partitions_reuse_parsed_files_and_see_rewrites(tmp_path):
    export_sample(tmp_path, ["BTCUSDT"], date(2024, 1, 1), date(2024, 1, 31), "per-symbol")
    source = FileSource(tmp_path)
    for day in range(1, 11):
        start = ts(f"2024-01-{day:02d}")
        assert len(source.fetch(["BTCUSDT"], start, start + pd.Timedelta(days=1))) == 96
    info = cache_info()
    assert info["misses"] == 1 and info["hits"] == 9  # the file was parsed once for ten partitions

    path = tmp_path / "BTCUSDT.csv"
    frame = pd.read_csv(path)
    frame.loc[0, "close"] = 123.5
    frame.to_csv(path, index=False)
    got = FileSource(tmp_path).fetch(["BTCUSDT"], ts("2024-01-01"), ts("2024-01-02"))
    assert got["close"].iloc[0] == 123.5  # new size/mtime: parsed again, not served stale


def test_parquet_row_groups_outside_the_window_are_skipped(tmp_path):
    frame = expected(["BTCUSDT"], ts("2024-01-01"), ts("2024-01-11")).drop(columns="symbol")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "BTCUSDT.parquet", row_group_size=96)
    source = FileSource(tmp_path)
    day = (ts("2024-01-05"), ts("2024-01-06"))
    assert_same_candles(source.fetch(["BTCUSDT"], *day), expected(["BTCUSDT"], *day))
    assert cache_info()["entries"] == 1  # one row group of ten


def test_binance_style_top_level_names_and_bar_size_folders(tmp_path):
    month = (ts("2024-01-01"), ts("2024-02-01"))
    for tf in ("15m", "1h"):
        frame = expected(["BTCUSDT"], *month, timeframe=tf).drop(columns="symbol")
        target = tmp_path / "BTCUSDT" / tf / f"BTCUSDT-{tf}-2024-01.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(target, index=False)
    top = expected(["ETHUSDT"], *month).drop(columns="symbol")
    top.to_csv(tmp_path / "ETHUSDT-15m-2024-01.csv", index=False)
    day = (ts("2024-01-10"), ts("2024-01-11"))
    assert_same_candles(FileSource(tmp_path, "1h").fetch(["BTCUSDT"], *day), expected(["BTCUSDT"], *day, "1h"))
    assert_same_candles(FileSource(tmp_path, "15m").fetch(["BTCUSDT", "ETHUSDT"], *day), expected(SYMBOLS, *day))
    raises_validation(
        ["hold 15m, 1h bars", "ALPHAPULSE_BASE_TIMEFRAME", "4h"], FileSource(tmp_path, "4h").fetch, ["BTCUSDT"], *day
    )


# ------------------------------------------------------------------------- real export formats


def test_yahoo_finance_daily_equities(tmp_path):
    days = pd.bdate_range("2024-01-02", "2024-03-28")
    rng = np.random.default_rng(1)
    close = 180 + rng.normal(0, 1, len(days)).cumsum()
    lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    for d, c in zip(days, close, strict=False):
        lines.append(f"{d:%Y-%m-%d},{c - 0.5:.6f},{c + 1:.6f},{c - 1:.6f},{c:.6f},{c * 0.99:.6f},{int(5e7)}")
    (tmp_path / "AAPL.csv").write_text("\n".join(lines) + "\n")
    got = FileSource(tmp_path, timeframe="1d").fetch(["AAPL"], ts("2024-02-01"), ts("2024-03-01"))
    want_days = days[(days >= "2024-02-01") & (days < "2024-03-01")]
    assert list(got["timestamp"]) == [ts(str(d.date())) for d in want_days]  # weekends are simply absent
    assert (got["symbol"] == "AAPL").all()
    np.testing.assert_allclose(got["close"], np.round(close[(days >= "2024-02-01") & (days < "2024-03-01")], 6))
    assert (got["volume"] == 5e7).all()  # Close, not Adj Close
    assert "AAPL" in FileSource(tmp_path, timeframe="1d").symbols()


def _dukascopy_lines(header: str, stamp) -> list[str]:
    hours = pd.date_range("2024-01-01 22:00", "2024-01-15 21:00", freq="1h", tz=UTC)
    hours = hours[hours.dayofweek < 5]  # FX is closed at weekends
    rows = [header]
    for i, h in enumerate(hours):
        price = 1.10 + i * 1e-4
        rows.append(f"{stamp(h)},{price:.5f},{price + 3e-4:.5f},{price - 3e-4:.5f},{price + 1e-4:.5f},{1000 + i}.5")
    return rows


def test_dukascopy_hourly_fx_day_first_gmt(tmp_path):
    rows = _dukascopy_lines("Gmt time,Open,High,Low,Close,Volume", lambda h: h.strftime("%d.%m.%Y %H:%M:%S.000"))
    (tmp_path / "EURUSD.csv").write_text("\n".join(rows) + "\n")
    got = FileSource(tmp_path, timeframe="1h").fetch(["EURUSD"], ts("2024-01-01"), ts("2024-02-01"))
    assert got["timestamp"].iloc[0] == ts("2024-01-01 22:00")
    # 02.01.2024 is 2 January, not 1 February; 13.01 and 03.01 are in the same order as in the file.
    assert got["timestamp"].is_monotonic_increasing
    assert got["timestamp"].max() == ts("2024-01-15 21:00")
    assert len(got) == len(rows) - 1
    assert got["volume"].iloc[0] == 1000.5


def test_dukascopy_local_time_with_gmt_offset(tmp_path):
    rows = _dukascopy_lines(
        "Local time,Open,High,Low,Close,Volume",
        lambda h: (h + pd.Timedelta(hours=2)).strftime("%d.%m.%Y %H:%M:%S.000") + " GMT+0200",
    )
    (tmp_path / "EURUSD.csv").write_text("\n".join(rows) + "\n")
    got = FileSource(tmp_path, timeframe="1h").fetch(["EURUSD"], ts("2024-01-01"), ts("2024-02-01"))
    assert got["timestamp"].iloc[0] == ts("2024-01-01 22:00")  # GMT+0200 is two hours EAST of UTC


def test_metatrader_tab_separated_date_and_time_columns(tmp_path):
    hours = pd.date_range("2024-03-04", periods=48, freq="1h", tz=UTC)
    lines = ["<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"]
    lines += [f"{h:%Y.%m.%d}\t{h:%H:%M:%S}\t1.1\t1.2\t1.0\t1.15\t{100 + i}\t0\t2" for i, h in enumerate(hours)]
    (tmp_path / "GBPUSD.csv").write_text("\n".join(lines) + "\n")
    got = FileSource(tmp_path, timeframe="1h").fetch(["GBPUSD"], ts("2024-03-01"), ts("2024-04-01"))
    assert list(got["timestamp"]) == list(hours)
    assert (got["close"] == 1.15).all()


def test_metatrader4_history_export_without_header(tmp_path):
    hours = pd.date_range("2024-03-04", periods=24, freq="1h", tz=UTC)
    lines = [f"{h:%Y.%m.%d},{h:%H:%M},1.1,1.2,1.0,1.15,{100 + i}" for i, h in enumerate(hours)]
    (tmp_path / "EURUSD").mkdir()
    (tmp_path / "EURUSD" / "EURUSD60.csv").write_text("\n".join(lines) + "\n")
    got = FileSource(tmp_path, timeframe="1h").fetch(["EURUSD"], ts("2024-03-01"), ts("2024-04-01"))
    assert list(got["timestamp"]) == list(hours)
    assert list(got["volume"]) == [100.0 + i for i in range(24)]


@pytest.mark.parametrize("unit", ["ms", "us"])
@pytest.mark.parametrize("packing", ["csv", "zip"])
def test_binance_headerless_kline_dump(tmp_path, unit, packing):
    month = (ts("2024-01-01"), ts("2024-02-01"))
    want = expected(["BTCUSDT"], *month)
    scale = 1_000 if unit == "ms" else 1_000_000
    open_time = want["timestamp"].astype("int64") // 10**9 * scale
    lines = [
        f"{o},{r.open!r},{r.high!r},{r.low!r},{r.close!r},{r.volume!r},{o + 15 * 60 * scale - 1},"
        f"{r.volume * r.close!r},1234,{r.volume / 2!r},{r.volume * r.close / 2!r},0"
        for o, r in zip(open_time, want.itertuples(), strict=False)
    ]
    folder = tmp_path / "BTCUSDT"
    folder.mkdir()
    text = "\n".join(lines) + "\n"
    if packing == "zip":
        with zipfile.ZipFile(folder / "BTCUSDT-15m-2024-01.zip", "w") as archive:
            archive.writestr("BTCUSDT-15m-2024-01.csv", text)
    else:
        (folder / "BTCUSDT-15m-2024-01.csv").write_text(text)
    day = (ts("2024-01-31"), ts("2024-02-01"))
    assert_same_candles(FileSource(tmp_path).fetch(["BTCUSDT"], *day), expected(["BTCUSDT"], *day))


def test_tradingview_unix_seconds(tmp_path):
    want = expected(["SOLUSDT"], ts("2024-05-01"), ts("2024-05-03"), "1h")
    out = want.drop(columns="symbol").rename(columns={"timestamp": "time", "volume": "Volume"})
    out["time"] = want["timestamp"].astype("int64") // 10**9
    out.to_csv(tmp_path / "SOLUSDT.csv", index=False)
    assert_same_candles(FileSource(tmp_path, "1h").fetch(["SOLUSDT"], ts("2024-05-01"), ts("2024-05-03")), want)


def test_iso_strings_with_changing_offsets(tmp_path):
    # Berlin local time with its offset, across the switch to summer time: UTC hours stay contiguous.
    utc_hours = pd.date_range("2024-03-30 20:00", "2024-03-31 06:00", freq="1h", tz=UTC)
    local = [h.tz_convert("Europe/Berlin").isoformat() for h in utc_hours]
    assert any("+01:00" in t for t in local) and any("+02:00" in t for t in local)
    frame = pd.DataFrame({"datetime": local, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0})
    frame.to_csv(tmp_path / "DAX.csv", index=False)
    got = FileSource(tmp_path, "1h").fetch(["DAX"], utc_hours[0], utc_hours[-1] + pd.Timedelta(hours=1))
    assert list(got["timestamp"]) == list(utc_hours)


def test_naive_local_times_in_a_source_timezone(tmp_path):
    local = pd.date_range("2024-01-02 09:00", periods=8, freq="1h")
    frame = pd.DataFrame(
        {"time": local.strftime("%Y-%m-%d %H:%M"), "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0}
    )
    frame.to_csv(tmp_path / "SPY.csv", index=False)
    got = FileSource(tmp_path, "1h", source_timezone="America/New_York").fetch(
        ["SPY"], ts("2024-01-02"), ts("2024-01-03")
    )
    assert got["timestamp"].iloc[0] == ts("2024-01-02 14:00")


# --------------------------------------------------------------------- mistakes of a new user


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_missing_columns(tmp_path):
    path = write(tmp_path, "BTCUSDT.csv", "timestamp,open,high,close\n2024-01-01 00:00,1,2,1.5\n")
    raises_validation(
        [str(path), "missing required column(s) low, volume", "found columns"],
        FileSource(tmp_path).fetch,
        ["BTCUSDT"],
        ts("2024-01-01"),
        ts("2024-01-02"),
    )


def test_text_in_a_price_column(tmp_path):
    path = write(
        tmp_path,
        "BTCUSDT.csv",
        "timestamp,open,high,low,close,volume\n"
        "2024-01-01 00:00,1,2,0.5,1.5,10\n"
        "2024-01-01 00:15,1,2,0.5,n/a price,10\n",
    )
    raises_validation(
        [str(path), "non-numeric value 'n/a price'", "column 'close'", "row 1", "line 3"],
        FileSource(tmp_path).fetch,
        ["BTCUSDT"],
        ts("2024-01-01"),
        ts("2024-01-02"),
    )


def test_unparseable_timestamp(tmp_path):
    path = write(
        tmp_path,
        "BTCUSDT.csv",
        "timestamp,open,high,low,close,volume\n2024-01-01 00:00,1,2,0.5,1.5,10\nyesterday,1,2,0.5,1.5,10\n",
    )
    raises_validation(
        [str(path), "unparseable timestamp 'yesterday'", "line 3"],
        FileSource(tmp_path).fetch,
        ["BTCUSDT"],
        ts("2024-01-01"),
        ts("2024-01-02"),
    )


def test_duplicated_timestamps_pass_through_for_the_quality_check(tmp_path):
    frame = expected(["BTCUSDT"], ts("2024-01-01"), ts("2024-01-02")).drop(columns="symbol")
    doubled = pd.concat([frame, frame.iloc[[10, 11]]]).sort_values("timestamp", kind="stable")
    doubled.to_csv(tmp_path / "BTCUSDT.csv", index=False)
    got = FileSource(tmp_path).fetch(["BTCUSDT"], ts("2024-01-01"), ts("2024-01-02"))
    assert len(got) == 98
    assert got.duplicated(["symbol", "timestamp"]).sum() == 2
    check = quality.check_timestamps(got, "15m")
    assert not check.passed and check.details["duplicated"] == 2


def test_unknown_timezone_name(tmp_path):
    export_sample(tmp_path, ["BTCUSDT"], date(2024, 1, 1), date(2024, 1, 1), "per-symbol")
    raises_validation(["unknown time zone 'Europe/Atlantis'", "IANA"], FileSource, tmp_path, "15m", "Europe/Atlantis")


def test_local_times_that_do_not_exist_in_the_given_timezone(tmp_path):
    # Written in UTC (no offset) but declared Berlin time: 02:30 on 31 March does not exist there.
    stamps = pd.date_range("2024-03-31 00:00", periods=16, freq="15min").strftime("%Y-%m-%d %H:%M")
    frame = pd.DataFrame({"timestamp": stamps, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 1.0})
    path = tmp_path / "BTCUSDT.csv"
    frame.to_csv(path, index=False)
    raises_validation(
        [str(path), "'2024-03-31 02:00'", "line 10", "does not exist", "Europe/Berlin"],
        FileSource(tmp_path, source_timezone="Europe/Berlin").fetch,
        ["BTCUSDT"],
        ts("2024-03-31"),
        ts("2024-04-01"),
    )


def test_timestamps_mixing_offsets_and_naive(tmp_path):
    path = write(
        tmp_path,
        "BTCUSDT.csv",
        "timestamp,open,high,low,close,volume\n2024-01-01T00:00:00+00:00,1,2,0.5,1.5,10\n"
        "2024-01-01 00:15,1,2,0.5,1.5,10\n",
    )
    raises_validation(
        [str(path), "mix values with a UTC offset", "line 3"],
        FileSource(tmp_path).fetch,
        ["BTCUSDT"],
        ts("2024-01-01"),
        ts("2024-01-02"),
    )


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("BTCUSDT.csv", b"", "the file is empty"),
        ("BTCUSDT.csv", b"\n\n", "the file is empty"),
        ("BTCUSDT.csv", b"timestamp,open,high,low,close,volume\n", "no data rows"),
        ("BTCUSDT.csv.gz", gzip.compress(b"", mtime=0), "the file is empty"),
        ("BTCUSDT.parquet", b"", "not a readable Parquet file"),
    ],
)
def test_empty_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    raises_validation([str(path), message], FileSource(tmp_path).fetch, ["BTCUSDT"], ts("2024-01-01"), ts("2024-01-02"))


def test_a_broken_file_only_fails_its_own_symbol(tmp_path):
    export_sample(tmp_path, ["BTCUSDT"], date(2024, 1, 1), date(2024, 1, 1), "per-symbol")
    (tmp_path / "ETHUSDT.csv").write_bytes(b"")
    day = (ts("2024-01-01"), ts("2024-01-02"))
    assert len(FileSource(tmp_path).fetch(["BTCUSDT"], *day)) == 96
    raises_validation(
        [str(tmp_path / "ETHUSDT.csv"), "the file is empty"], FileSource(tmp_path).fetch, ["ETHUSDT"], *day
    )


def test_top_level_names_with_dates(tmp_path):
    month = expected(["BTCUSDT"], ts("2024-01-01"), ts("2024-02-01")).drop(columns="symbol")
    month.to_csv(tmp_path / "BTCUSDT-2024-01.csv", index=False)
    month.to_csv(tmp_path / "BRK-B.csv", index=False)
    source = FileSource(tmp_path)
    assert source.symbols() == ["BRK-B", "BTCUSDT"]
    assert len(source.fetch(["BTCUSDT"], ts("2024-01-05"), ts("2024-01-06"))) == 96
    assert source.fetch(["BTCUSDT"], ts("2024-03-05"), ts("2024-03-06")).empty


def test_parquet_without_rows(tmp_path):
    empty = expected(["BTCUSDT"], ts("2024-01-01"), ts("2024-01-02")).drop(columns="symbol").iloc[:0]
    empty.to_parquet(tmp_path / "BTCUSDT.parquet")
    raises_validation(
        [str(tmp_path / "BTCUSDT.parquet"), "no rows"],
        FileSource(tmp_path).fetch,
        ["BTCUSDT"],
        ts("2024-01-01"),
        ts("2024-01-02"),
    )


def test_unknown_symbol_lists_what_exists(tmp_path):
    export_sample(tmp_path, SYMBOLS, date(2024, 1, 1), date(2024, 1, 1), "per-symbol-monthly")
    with pytest.raises(UnknownSymbolError) as info:
        FileSource(tmp_path).fetch(["BTCUSDT", "XRPUSDT"], ts("2024-01-01"), ts("2024-01-02"))
    message = str(info.value)
    assert "'XRPUSDT'" in message and str(tmp_path) in message and "BTCUSDT, ETHUSDT" in message
    assert classify(info.value).error_class is ErrorClass.PERMANENT


def test_unknown_symbol_with_a_shared_file(tmp_path):
    export_sample(tmp_path, SYMBOLS, date(2024, 1, 1), date(2024, 1, 1), "single-file")
    with pytest.raises(UnknownSymbolError, match=r"'DOGEUSDT'.*symbols found there: BTCUSDT, ETHUSDT"):
        FileSource(tmp_path).fetch(["DOGEUSDT"], ts("2024-01-01"), ts("2024-01-02"))
    # A known symbol outside the window is no error, just no rows.
    assert FileSource(tmp_path).fetch(["ETHUSDT"], ts("2025-01-01"), ts("2025-01-02")).empty


def test_bar_size_mismatch(tmp_path):
    frame = expected(["BTCUSDT"], ts("2024-01-01"), ts("2024-01-03"), "1h").drop(columns="symbol")
    frame.to_csv(tmp_path / "BTCUSDT.csv", index=False)
    raises_validation(
        [str(tmp_path / "BTCUSDT.csv"), "holds 1h bars", "configured bar size is 15m", "ALPHAPULSE_BASE_TIMEFRAME=1h"],
        FileSource(tmp_path, "15m").fetch,
        ["BTCUSDT"],
        ts("2024-01-01"),
        ts("2024-01-02"),
    )
    assert len(FileSource(tmp_path, "1h").fetch(["BTCUSDT"], ts("2024-01-01"), ts("2024-01-02"))) == 24


def test_header_less_file_that_is_not_a_binance_dump(tmp_path):
    path = write(tmp_path, "BTCUSDT.csv", "1704067200000,1,2,0.5,1.5,10,99,98\n")
    raises_validation(
        [str(path), "8 numbers and no column names", "add a header row"],
        FileSource(tmp_path).fetch,
        ["BTCUSDT"],
        ts("2024-01-01"),
        ts("2024-01-02"),
    )
    path = write(tmp_path, "BTCUSDT.csv", "2024-01-01 00:00,1,2,0.5,1.5,10,5\n")
    raises_validation(
        [str(path), "looks like data, not column names"],
        FileSource(tmp_path).fetch,
        ["BTCUSDT"],
        ts("2024-01-01"),
        ts("2024-01-02"),
    )


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "BTCUSDT.csv",
            b"timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10,7,8\n",
            "more fields than the header has column names",
        ),
        (
            "BTCUSDT.csv",
            b"timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\n2024-01-02,1,2,0.5,1.5,10,7,8\n",
            "cannot read the CSV (Error tokenizing data. C error: Expected 6 fields in line 3, saw 8)",
        ),
        ("BTCUSDT.csv.gz", b"\x1f\x8b\x08 this is not gzip", "corrupt or truncated"),
        ("BTCUSDT.zip", b"PK not a zip", "corrupt or truncated"),
        ("BTCUSDT.parquet", b"PAR1 garbage", "not a readable Parquet file"),
        (
            "BTCUSDT.csv",
            "timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\n".encode("utf-16"),
            "not a UTF-8 text file",
        ),
    ],
)
def test_garbage_files_never_raise_a_bare_library_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    raises_validation([str(path), message], FileSource(tmp_path).fetch, ["BTCUSDT"], ts("2024-01-01"), ts("2024-01-02"))


def test_check_reachable(tmp_path):
    FileSource(tmp_path).check_reachable()
    # A folder that is not there (removed, unmounted) is an outage: transient, counted by the breaker.
    with pytest.raises(TransientError, match="does not exist"):
        FileSource(tmp_path / "nope").check_reachable()
    with pytest.raises(TransientError, match="does not exist"):
        FileSource(tmp_path / "nope").fetch(["BTCUSDT"], ts("2024-01-01"), ts("2024-01-02"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(PermanentError, match="not a folder"):
        FileSource(tmp_path / "file.txt").check_reachable()


def test_bad_timeframe_and_export_arguments(tmp_path):
    raises_validation(["unknown bar size '15 fortnights'"], FileSource, tmp_path, "15 fortnights")
    assert FileSource(tmp_path, "15 minutes").timeframe == FileSource(tmp_path, "15min").timeframe == "15m"
    with pytest.raises(ValueError, match="unknown layout"):
        export_sample(tmp_path, SYMBOLS, date(2024, 1, 1), date(2024, 1, 1), "by-day")


def test_cache_is_bounded(tmp_path, monkeypatch):
    export_sample(tmp_path, ["BTCUSDT"], date(2024, 1, 1), date(2024, 3, 31), "per-symbol-monthly")
    source = FileSource(tmp_path)
    source.fetch(["BTCUSDT"], ts("2024-01-01"), ts("2024-01-02"))
    one_month = cache_info()["bytes"]
    small = files_cache.BoundedCache(max_bytes=int(one_month * 1.5))  # room for one month, not two
    monkeypatch.setattr(files_cache, "PARSED", small)
    got = source.fetch(["BTCUSDT"], ts("2024-01-01"), ts("2024-04-01"))
    assert len(got) == 91 * 96  # everything is served ...
    assert small.info()["entries"] == 1 and small.info()["bytes"] <= small.max_bytes  # ... but not all kept
