"""Each quality rule fails on data that violates it, says how much, and names the first offenders."""

import numpy as np
import pandas as pd
import pytest

from alphapulse_assets.market_data import quality
from alphapulse_assets.market_data.sources.sample import SampleSource

DAY = pd.Timestamp("2024-03-01", tz="UTC")
NEXT = DAY + pd.Timedelta(days=1)


@pytest.fixture()
def candles() -> pd.DataFrame:
    return SampleSource().fetch(["BTCUSDT", "ETHUSDT"], DAY, NEXT)


def run(frame, **kw):
    args = dict(
        symbols=["BTCUSDT", "ETHUSDT"],
        start=DAY,
        end=NEXT,
        timeframe="15m",
        max_missing_fraction=0.05,
        outlier_zscore=12.0,
        max_outlier_fraction=0.001,
        max_bar_move_factor=10.0,
    )
    args.update(kw)
    return {r.rule: r for r in quality.run_all(frame, **args)}


def test_clean_sample_passes_every_rule(candles):
    results = run(candles)
    assert set(results) == set(quality.RULE_DESCRIPTIONS)
    assert all(r.passed for r in results.values()), {k: r.description for k, r in results.items() if not r.passed}


def test_schema_problem_is_named_and_content_rules_are_not_evaluated(candles):
    bad = candles.drop(columns=["volume"]).assign(close=candles["close"].astype("float32"))
    results = run(bad)
    assert not results["schema_and_dtypes"].passed
    assert "missing column(s): volume" in results["schema_and_dtypes"].description
    assert "close must be float64" in results["schema_and_dtypes"].description
    assert not results["no_nan"].passed and "not evaluated" in results["no_nan"].description


def test_nan_is_counted_per_column_with_first_offender(candles):
    candles.loc[5, "close"] = np.nan
    candles.loc[7, "volume"] = np.nan
    r = run(candles)["no_nan"]
    assert not r.passed and r.violations == 2
    assert r.details["nan_close"] == 1 and r.details["nan_volume"] == 1
    assert r.examples[0].startswith("BTCUSDT 2024-03-01T01:15:00+00:00")


def test_ohlc_inconsistency(candles):
    candles.loc[3, "high"] = candles.loc[3, ["open", "close"]].max() * 0.99
    candles.loc[10, "low"] = candles.loc[10, ["open", "close"]].min() * 1.01
    r = run(candles)["ohlc_consistency"]
    assert not r.passed and r.violations == 2
    assert "high" in r.examples[0] and "00:45:00" in r.examples[0]


def test_non_positive_prices_and_negative_volume(candles):
    candles.loc[4, ["open", "low"]] = [0.0, 0.0]
    candles.loc[6, "volume"] = -1.0
    results = run(candles)
    assert not results["positive_prices"].passed and results["positive_prices"].violations == 1
    assert not results["non_negative_volume"].passed and "volume -1" in results["non_negative_volume"].examples[0]


def test_duplicated_and_out_of_order_timestamps(candles):
    dup = pd.concat([candles.iloc[:20], candles.iloc[[10]], candles.iloc[20:]], ignore_index=True)
    r = run(dup)["unique_increasing_timestamps"]
    assert not r.passed and r.details["duplicated"] == 1
    assert "02:30:00" in r.examples[0]


def test_off_grid_timestamps_reveal_a_wrong_time_zone(candles):
    shifted = candles.assign(timestamp=candles["timestamp"] + pd.Timedelta(minutes=30 + 5))
    r = run(shifted)["unique_increasing_timestamps"]
    assert not r.passed and r.details["off_grid"] == len(candles)
    assert "wrong time zone" in r.examples[0]


def test_coverage_fails_above_threshold_and_names_missing_bars(candles):
    btc = candles["symbol"] == "BTCUSDT"
    drop = candles[btc].index[40:50]  # 10 of 96 bars: 10.4% > 5%
    r = run(candles.drop(index=drop))["bar_coverage"]
    assert not r.passed
    assert r.details["missing_BTCUSDT"] == 10 and r.details["missing_ETHUSDT"] == 0
    assert "BTCUSDT: 10/96 bars missing" in r.examples[0] and "10:00:00" in r.examples[0]


def test_coverage_tolerates_a_few_missing_bars(candles):
    btc = candles[candles["symbol"] == "BTCUSDT"].index
    assert run(candles.drop(index=btc[:3]))["bar_coverage"].passed


def test_missing_symbol_is_a_coverage_failure(candles):
    r = run(candles[candles["symbol"] == "BTCUSDT"])["bar_coverage"]
    assert not r.passed and "ETHUSDT: 96/96" in r.examples[0]


def test_outlier_return_warns_but_does_not_block(candles):
    candles.loc[30, ["close", "high"]] = candles.loc[30, "close"] * 3
    r = run(candles, max_outlier_fraction=0.0)["outlier_returns"]
    assert not r.passed and not r.blocking
    assert r.violations >= 1 and r.details["max_abs_robust_z"] > 12


def test_an_ordinary_outlier_still_only_warns_but_a_1000x_spike_blocks(candles):
    ordinary = run(candles.copy(), max_outlier_fraction=0.0)
    assert ordinary["implausible_moves"].passed
    candles.loc[30, ["close", "high"]] = candles.loc[30, "close"] * 1000  # one bar no market makes
    results = run(candles)
    spike = results["implausible_moves"]
    assert not spike.passed and spike.blocking and spike.violations == 2  # the spike bar and the bar after it
    assert spike.examples[0].startswith("BTCUSDT 2024-03-01T07:30:00+00:00")
    assert spike.details["largest_move_factor"] > 900
    # A wick: low collapsing within one bar is the same broken feed.
    wick = candles.copy()
    wick.loc[50, "low"] = wick.loc[50, "low"] / 50
    assert not run(wick)["implausible_moves"].passed


def test_days_are_refused_when_a_blocking_check_failed_or_never_ran():
    passed = {rule: "passed" for rule in quality.BLOCKING_RULES}
    statuses = {
        "2024-03-01": passed,
        "2024-03-02": {**passed, "non_negative_volume": "failed"},
        "2024-03-03": {**passed, "outlier_returns": "failed"},
    }  # a warning only: not a reason to refuse
    refused = quality.refused_days(["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"], statuses)
    assert [v.day for v in refused] == ["2024-03-02", "2024-03-04"]
    assert str(refused[0]) == "2024-03-02 (failed non_negative_volume)"
    assert str(refused[1]) == "2024-03-04 (never checked)"
    assert "outlier_returns" not in quality.BLOCKING_RULES and "implausible_moves" in quality.BLOCKING_RULES


def test_weekday_calendar_expects_no_bars_on_weekends():
    saturday = pd.Timestamp("2024-03-02", tz="UTC")
    r = quality.check_coverage(
        pd.DataFrame({"symbol": [], "timestamp": []}),
        ["SPY"],
        saturday,
        saturday + pd.Timedelta(days=1),
        "1h",
        0.05,
        weekdays_only=True,
    )
    assert r.passed and "market closed" in r.description
