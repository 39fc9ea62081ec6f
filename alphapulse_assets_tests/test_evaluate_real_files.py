"""``alphapulse evaluate`` and the files source on files written the way users have them: CSVs written by pandas
with their index, years in file names, unreadable files next to good ones, equities closed at weekends, bar
sizes spelled every usual way, and the costs and annualisation behind the Sharpe figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphapulse_assets.market_data import quality
from alphapulse_assets.market_data.calendars import annualisation, bars_per_year, infer_calendar
from alphapulse_assets.market_data.sources.files import FileSource, clear_cache, export_sample
from alphapulse_assets.market_data.sources.sample import SampleSource
from alphapulse_assets.recovery.errors import DataValidationError
from alphapulse_assets.settings import canonical_timeframe, load_settings
from alphapulse_assets.training.challenger import CadenceSpec, train_challenger
from alphapulse_assets.training.evaluation import evaluate


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


# US exchange holidays that fall on weekdays (a few a year is what matters: about 9 of 261 weekdays).
HOLIDAYS = ("01-01", "01-16", "02-20", "05-29", "07-04", "09-04", "11-23", "12-25")


def equity_days(start: str, end: str) -> pd.DatetimeIndex:
    days = pd.bdate_range(start, end)
    return days[~days.strftime("%m-%d").isin(HOLIDAYS)]


def daily_frame(days: pd.DatetimeIndex, seed: int = 0) -> pd.DataFrame:
    """OHLCV bars indexed by a DatetimeIndex, as a user's pandas research code holds them."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(rng.normal(0.0002, 0.01, len(days)).cumsum())
    return pd.DataFrame(
        {"Open": close * 0.999, "High": close * 1.01, "Low": close * 0.99, "Close": close, "Volume": 1e6},
        index=pd.DatetimeIndex(days),
    )


# ------------------------------------------------------------------------- CSVs as pandas writes them


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda df, p: df.to_csv(p), id="to_csv-unnamed-index"),
        pytest.param(lambda df, p: df.to_csv(p, index_label="Date"), id="index_label-Date"),
        pytest.param(lambda df, p: df.to_csv(p, index_label="timestamp"), id="index_label-timestamp"),
        pytest.param(lambda df, p: df.rename_axis("datetime").to_csv(p), id="named-index"),
        pytest.param(lambda df, p: df.tz_localize("UTC").to_csv(p), id="tz-aware-index"),
        pytest.param(lambda df, p: df.reset_index(names="Date").to_csv(p), id="rangeindex-next-to-a-time-column"),
        pytest.param(lambda df, p: df.to_parquet(p.with_suffix(".parquet")), id="to_parquet-with-index"),
    ],
)
def test_files_written_by_pandas_with_their_index_are_read(tmp_path, write):
    days = equity_days("2023-01-02", "2023-03-31")
    frame = daily_frame(days)
    write(frame, tmp_path / "SPY.csv")
    got = FileSource(tmp_path, "1d").fetch(["SPY"], ts("2023-01-01"), ts("2023-04-01"))
    assert list(got["timestamp"]) == [ts(str(d.date())) for d in days]  # never row numbers read as 1970 times
    np.testing.assert_allclose(got["close"], frame["Close"])


def test_an_unnamed_column_of_row_numbers_is_never_taken_as_time(tmp_path):
    frame = daily_frame(equity_days("2023-01-02", "2023-02-28")).reset_index(drop=True)
    frame.to_csv(tmp_path / "SPY.csv")  # ",Open,High,...": 0, 1, 2, ... and no time column at all
    with pytest.raises(DataValidationError) as info:
        FileSource(tmp_path, "1d").fetch(["SPY"], ts("1970-01-01"), ts("2024-01-01"))
    message = str(info.value)
    assert str(tmp_path / "SPY.csv") in message and "row numbers" in message and "no time column" in message


# ------------------------------------------------------------------------------ years in file names


def test_years_in_a_name_never_drop_rows(tmp_path):
    days = equity_days("2012-01-02", "2019-12-31")
    daily_frame(days).to_csv(tmp_path / "spx_daily_2012_2019.csv")
    wider = pd.DatetimeIndex(pd.date_range("2020-01-01", "2022-12-31", freq="D"))
    daily_frame(wider, seed=1).to_csv(tmp_path / "btc_2021.csv", index_label="timestamp")  # holds 2020-2022
    source = FileSource(tmp_path, "1d")
    assert source.symbols() == ["BTC", "SPX"]  # the years and the bar size are not part of the symbol
    assert len(source.fetch(["SPX"], ts("1970-01-01"), ts("2030-01-01"))) == len(days)
    assert source.notes == {}  # the name and the rows agree: nothing to say
    # A window the name says nothing about is still read from the rows (it used to come back empty).
    assert len(source.fetch(["BTC"], ts("2020-06-01"), ts("2020-07-01"))) == 30
    assert len(source.fetch(["BTC"], ts("1970-01-01"), ts("2030-01-01"))) == len(wider)
    (note,) = source.notes.values()
    assert "btc_2021.csv" in note and "2021" in note and "2020-01-01" in note and "2022-12-31" in note


def test_a_month_file_holding_other_months_is_refused_naming_it(tmp_path):
    quarter = SampleSource("1h").fetch(["BTCUSDT"], ts("2024-01-01"), ts("2024-04-01")).drop(columns="symbol")
    (tmp_path / "BTCUSDT").mkdir()
    path = tmp_path / "BTCUSDT" / "BTCUSDT-1h-2024-01.csv"
    quarter.to_csv(path, index=False)
    with pytest.raises(DataValidationError) as info:
        FileSource(tmp_path, "1h").fetch(["BTCUSDT"], ts("2024-01-10"), ts("2024-01-11"))
    message = str(info.value)
    assert str(path) in message and "2024-01" in message and "2024-03-31" in message and "Rename" in message


# ----------------------------------------------------------------------- bar sizes and calendars


@pytest.mark.parametrize(
    "spelling, canonical",
    [("15m", "15m"), ("15min", "15m"), ("15T", "15m"), ("1H", "1h"), ("60min", "1h"), ("60T", "1h")]
    + [("4h", "4h"), ("1D", "1d"), ("daily", "1d"), ("hourly", "1h"), ("24h", "1d"), ("1W", "1w"), ("90m", "90m")],
)
def test_bar_sizes_in_any_usual_spelling(spelling, canonical):
    assert canonical_timeframe(spelling) == canonical
    assert bars_per_year(spelling, "crypto") == bars_per_year(canonical, "crypto")


def test_bars_per_year_follow_the_bar_size_and_the_market_calendar():
    # 24/7: 365 days of bars of any size.
    assert [bars_per_year(tf, "crypto") for tf in ("15m", "1h", "4h", "1d", "5m", "2h")] == [
        35040,
        8760,
        2190,
        365,
        105120,
        4380,
    ]
    # 24/5: 52 weeks of 5 days of 24 hours.
    assert [bars_per_year(tf, "fx") for tf in ("15m", "1h", "4h", "1d", "1w")] == [24960, 6240, 1560, 260, 52]
    # Exchange: 252 sessions of 6.5 h; a shorter last bar counts (7 hourly bars, 2 four-hour bars a session).
    assert [bars_per_year(tf, "exchange") for tf in ("15m", "30m", "1h", "4h", "1d", "2d", "1w")] == [
        252 * 26,
        252 * 13,
        252 * 7,
        252 * 2,
        252,
        126,
        52,
    ]
    assert bars_per_year("1h", "exchange", session_hours=8) == 252 * 8


def _bars(days: pd.DatetimeIndex, hours: range, minutes: int = 60) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(
        [d + pd.Timedelta(hours=h, minutes=m) for d in days for h in hours for m in range(0, 60, minutes)]
    )


def test_the_calendar_is_inferred_from_the_bars():
    every_day = pd.date_range("2024-01-01", "2024-03-31", freq="D")
    weekdays = pd.bdate_range("2024-01-01", "2024-03-31")
    assert infer_calendar(_bars(every_day, range(24)), "1h")[0] == "crypto"
    assert infer_calendar(_bars(weekdays, range(24)), "1h")[0] == "fx"
    assert infer_calendar(_bars(weekdays, range(14, 21), 15), "15m")[0] == "exchange"  # a 7 h session in UTC
    assert infer_calendar(every_day, "1d")[0] == "crypto"
    assert infer_calendar(weekdays, "1d")[0] == "fx"  # every weekday: no holidays
    assert infer_calendar(equity_days("2023-01-01", "2023-12-31"), "1d")[0] == "exchange"
    calendar, rule = infer_calendar(every_day[:5], "1d")
    assert calendar == "crypto" and "too few" in rule
    chosen = annualisation("1d", "exchange")
    assert (chosen.calendar, chosen.bars_per_year) == ("exchange", 252) and "set by" in chosen.rule


def test_coverage_is_judged_against_the_market_calendar():
    days = equity_days("2023-01-02", "2023-12-29")
    frame = pd.DataFrame({"timestamp": days.tz_localize("UTC"), "symbol": "SPY"})
    window = (ts("2023-01-02"), ts("2023-12-30"))
    crypto = quality.check_coverage(frame, ["SPY"], *window, "1d", 0.05)
    exchange = quality.check_coverage(frame, ["SPY"], *window, "1d", 0.05, calendars={"SPY": "exchange"})
    assert not crypto.passed and exchange.passed  # weekends are closed, the 8 holidays are within 5 %
    # Intraday exchange bars are counted per session: a day with half its bars missing shows.
    hourly = pd.DataFrame({"timestamp": _bars(days, range(14, 21)).tz_localize("UTC"), "symbol": "SPY"})
    ok = quality.check_coverage(hourly, ["SPY"], *window, "1h", 0.05, calendars={"SPY": "exchange"})
    assert ok.passed
    thin = hourly[hourly["timestamp"].dt.hour < 17]
    short = quality.check_coverage(thin, ["SPY"], *window, "1h", 0.05, calendars={"SPY": "exchange"})
    assert not short.passed and "exchange calendar" in short.examples[0]


# --------------------------------------------------------------------------- costs in the Sharpe figure


@pytest.mark.slow
def test_fees_and_slippage_are_settings_used_by_the_strategy_behind_the_sharpe_figure():
    with pytest.raises(DataValidationError, match="ALPHAPULSE_COSTS__SLIPPAGE_BPS"):
        load_settings({"ALPHAPULSE_COSTS__SLIPPAGE_BPS": "-3"})
    with pytest.raises(DataValidationError, match="ALPHAPULSE_CALENDAR__BY_SYMBOL"):
        load_settings({"ALPHAPULSE_CALENDAR__BY_SYMBOL": "SPY=nyse"})
    costs = load_settings({"ALPHAPULSE_COSTS__FEE_BPS": "4", "ALPHAPULSE_COSTS__SLIPPAGE_BPS": "6"}).costs
    assert (costs.fee_bps, costs.slippage_bps, costs.total_bps) == (4, 6, 10)

    candles = SampleSource("1h").fetch(["ETHUSDT"], ts("2024-03-01"), ts("2024-04-10"))
    spec = CadenceSpec("weekly", "1h", window_days=40, estimator="hgb", n_splits=2, fee_bps=4.0, slippage_bps=6.0)
    ch = train_challenger(candles, spec, symbol="ETHUSDT", n_boot=20)
    assert ch.costs == {"fee_bps": 4.0, "slippage_bps": 6.0}
    assert ch.annualisation.calendar == "crypto" and ch.annualisation.bars_per_year == 8760  # 24/7 bars, inferred
    oos, baselines = ch.oos, {"base_rate": ch.oos["baseline_base_rate"]}

    def sharpe(fee: float, slippage: float = 0.0) -> float:
        report = evaluate(oos["y"], oos["proba"], oos["forward"], baselines, 8760, fee_bps=fee, slippage_bps=slippage)
        return report.model["sharpe"]

    assert ch.report.model["sharpe"] == pytest.approx(sharpe(10.0)) == pytest.approx(sharpe(4.0, 6.0))
    assert sharpe(0.0) > ch.report.model["sharpe"]  # the costs are charged


# ------------------------------------------------------------------- evaluate, as a user runs it


def _write_folder(root: Path) -> dict[str, Path]:
    """Good daily equity files as pandas writes them, and the broken files a real folder holds."""
    root.mkdir()
    daily_frame(equity_days("2012-01-02", "2019-12-31")).to_csv(root / "spx_daily_2012_2019.csv")
    # Named for its last year, holding six: read whole, and said.
    daily_frame(equity_days("2014-01-02", "2019-12-31"), seed=3).to_csv(root / "qqq_2019.csv", index_label="Date")
    broken = {
        "LATIN": root / "LATIN.csv",  # not UTF-8
        "GARBAGE": root / "GARBAGE.csv",
        "NOTIME": root / "NOTIME.csv",
        "EMPTY": root / "EMPTY.csv",
    }
    broken["LATIN"].write_bytes(
        "Date,Open,High,Low,Close,Volume,Börse\n".encode("latin-1") + b"2020-01-02,1,2,0.5,1,1,x\n"
    )
    broken["GARBAGE"].write_bytes(bytes(range(256)) * 8)
    broken["NOTIME"].write_text("Open,High,Low,Close,Volume\n1,2,0.5,1,10\n1,2,0.5,1,10\n")
    broken["EMPTY"].write_text("")
    return broken


def _evaluate(root: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAPULSE_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "alphapulse_assets.cli", "evaluate", "--files", str(root), "--timeframe", "daily"]
        + ["--min-validation", "300", "--splits", "3", *extra],
        capture_output=True,
        text=True,
        env=environment,
        cwd=root,
        timeout=300,
    )


@pytest.mark.slow
def test_evaluate_json_reports_every_symbol_and_every_unreadable_file_and_goes_on(tmp_path):
    broken = _write_folder(tmp_path / "history")
    done = _evaluate(
        tmp_path / "history",
        "--json",
        env={"ALPHAPULSE_COSTS__FEE_BPS": "5", "ALPHAPULSE_COSTS__SLIPPAGE_BPS": "2.5"},
    )
    assert done.returncode == 0, done.stderr  # some symbols were evaluated: the others are in their rows
    doc = json.loads(done.stdout)  # one JSON document, nothing else on stdout
    rows = {row["symbol"]: row for row in doc["symbols"]}
    assert set(rows) == {"SPX", "QQQ", *broken}
    assert doc["costs"]["fee_bps"] == 5 and doc["costs"]["slippage_bps"] == 2.5
    spx = rows["SPX"]
    assert spx["status"] == "evaluated" and spx["bars"] == len(equity_days("2012-01-02", "2019-12-31"))
    assert spx["first_bar"].startswith("2012-01-02") and spx["last_bar"].startswith("2019-12-31")
    assert spx["annualisation"]["calendar"] == "exchange" and spx["annualisation"]["bars_per_year"] == 252
    assert spx["costs"] == {"fee_bps": 5.0, "slippage_bps": 2.5}
    assert spx["notes"] == [] and rows["QQQ"]["bars"] == len(equity_days("2014-01-02", "2019-12-31"))
    (note,) = rows["QQQ"]["notes"]
    assert "qqq_2019.csv" in note and "2014-01-02" in note and "all of them were read" in note
    for row in (spx, rows["QQQ"]):
        assert set(row["metrics"]) >= {"log_loss", "auc", "sharpe"} and row["n_validation"] >= 300
        assert set(row["baselines"]) >= {"base_rate", "persistence_calibrated"}
        assert 0 <= row["p_values"]["base_rate"] <= 1
        assert row["verdict"].startswith("would be")
    errors = {e["symbol"]: e for e in doc["errors"]}
    assert set(errors) == set(broken)
    for symbol, path in broken.items():
        assert rows[symbol]["status"] == "unreadable" and str(path) in errors[symbol]["error"], errors[symbol]
    assert "UTF-8" in errors["LATIN"]["error"] and "timestamp" in errors["NOTIME"]["error"]
    assert "empty" in errors["EMPTY"]["error"]
    assert doc["summary"] == {"evaluated": 2, "refused": 0, "unreadable": 4, "not_trained": 0}

    table = _evaluate(tmp_path / "history", "--symbols", "SPX,EMPTY")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert "net of 10 bps fee + 0 bps slippage" in lines[0]
    spx_line = next(line for line in lines if line.startswith("SPX"))
    assert "exchange 252" in spx_line and "would be" in spx_line
    empty_line = next(line for line in lines if line.startswith("EMPTY"))
    assert empty_line.rstrip().endswith(f"{broken['EMPTY']})")  # the whole message, never cut


@pytest.mark.slow
def test_evaluate_exits_1_only_when_nothing_could_be_evaluated(tmp_path):
    broken = _write_folder(tmp_path / "history")
    for good in ("spx_daily_2012_2019.csv", "qqq_2019.csv"):
        (tmp_path / "history" / good).unlink()
    done = _evaluate(tmp_path / "history", "--json")
    assert done.returncode == 1 and "nothing could be evaluated" in done.stderr
    assert {e["symbol"] for e in json.loads(done.stdout)["errors"]} == set(broken)


def test_evaluate_accepts_a_bar_size_spelled_as_pandas_does(tmp_path, capsys):
    from alphapulse_assets.cli import main

    export_sample(tmp_path, ["EURUSD"], date(2024, 1, 1), date(2024, 1, 20), layout="per-symbol", timeframe="1h")
    code = main(["evaluate", "--files", str(tmp_path), "--timeframe", "60T", "--json", "--min-train-bars", "100"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["timeframe"] == "1h" and doc["symbols"][0]["bars"] == 20 * 24
    assert code in (0, 1)  # 20 days is too short to train on: said in the row, not a crash
    assert doc["symbols"][0]["status"] in ("evaluated", "not_trained")
