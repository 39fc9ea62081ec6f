"""The bundled synthetic market: deterministic, continuous, and with the stylised facts it promises."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from alphapulse_assets.market_data.quality import run_all
from alphapulse_assets.market_data.schema import schema_problems
from alphapulse_assets.market_data.sources.sample import SampleSource, _daily_path, generate_day
from alphapulse_assets.recovery.errors import ErrorClass, NoDataError, UnknownSymbolError, classify

SYMBOLS = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT"]


@pytest.fixture(scope="module")
def year() -> pd.DataFrame:
    return SampleSource().fetch(SYMBOLS, pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2025-01-01", tz="UTC"))


def test_same_symbol_and_day_give_the_same_frame_whatever_else_is_asked():
    alone = generate_day("ETHUSDT", date(2024, 6, 3))
    within = SampleSource().fetch(
        ["BTCUSDT", "ETHUSDT"], pd.Timestamp("2024-06-01", tz="UTC"), pd.Timestamp("2024-06-05", tz="UTC")
    )
    pd.testing.assert_frame_equal(
        within[(within.symbol == "ETHUSDT") & (within.timestamp.dt.day == 3)].reset_index(drop=True), alone
    )
    assert not generate_day("ETHUSDT", date(2024, 6, 4))["close"].equals(alone["close"])


def test_days_are_continuous_and_canonical(year):
    assert schema_problems(year) == []
    btc = year[year.symbol == "BTCUSDT"]
    assert len(btc) == 366 * 96
    np.testing.assert_allclose(btc["open"].to_numpy()[1:], btc["close"].to_numpy()[:-1], rtol=1e-12)


def test_every_quality_rule_passes_on_a_year_of_sample_data(year):
    results = run_all(
        year,
        symbols=SYMBOLS,
        start=pd.Timestamp("2024-01-01", tz="UTC"),
        end=pd.Timestamp("2025-01-01", tz="UTC"),
        timeframe="15m",
        max_missing_fraction=0.05,
        outlier_zscore=12,
        max_outlier_fraction=0.001,
        max_bar_move_factor=10.0,
    )
    assert [r.rule for r in results if not r.passed] == []


def test_stylised_facts(year):
    btc = year[year.symbol == "BTCUSDT"]
    r = np.diff(np.log(btc["close"].to_numpy()))
    excess_kurtosis = pd.Series(r).kurt()
    assert excess_kurtosis > 3, "fat tails"
    daily_abs = pd.Series(np.abs(r)).groupby(np.arange(len(r)) // 96).mean()
    assert daily_abs.autocorr(1) > 0.3, "volatility clustering"
    volume_vs_move = np.corrcoef(np.abs(r), btc["volume"].to_numpy()[1:])[0, 1]
    assert volume_vs_move > 0.1, "volume rises with the size of the move"


def test_momentum_shows_on_hourly_bars_too(year):
    from alphapulse_assets.market_data.resample import resample_candles

    regimes, *_ = _daily_path("ETHUSDT")
    hourly = resample_candles(year[year.symbol == "ETHUSDT"], "15m", "1h")
    r = pd.Series(np.diff(np.log(hourly["close"].to_numpy()), prepend=np.nan))
    day_index = ((hourly["timestamp"] - pd.Timestamp("2020-01-01", tz="UTC")).dt.days).to_numpy()
    trend = np.isin(regimes[day_index], (1, 2))
    assert pd.concat([r, r.shift()], axis=1)[trend].corr().iloc[0, 1] > 0.05


def test_momentum_exists_only_inside_trending_regimes(year):
    regimes, *_ = _daily_path("BTCUSDT")
    btc = year[year.symbol == "BTCUSDT"]
    day_index = ((btc["timestamp"] - pd.Timestamp("2020-01-01", tz="UTC")).dt.days).to_numpy()
    r = np.diff(np.log(btc["close"].to_numpy()), prepend=np.nan)
    frame = pd.DataFrame({"r": r, "trend": np.isin(regimes[day_index], (1, 2))})
    frame["prev"] = frame["r"].shift()
    trending = frame[frame.trend].dropna()
    quiet = frame[~frame.trend].dropna()
    assert trending[["r", "prev"]].corr().iloc[0, 1] > 0.05
    assert abs(quiet[["r", "prev"]].corr().iloc[0, 1]) < 0.05


def test_unknown_symbol_and_out_of_range_day_are_permanent_errors():
    with pytest.raises(UnknownSymbolError, match="unknown symbol 'not-a-coin'") as err:
        SampleSource().fetch(["not-a-coin"], pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-02", tz="UTC"))
    assert classify(err.value).error_class is ErrorClass.PERMANENT
    with pytest.raises(NoDataError, match="covers 2020-01-01"):
        generate_day("BTCUSDT", date(2019, 12, 31))


def test_other_bar_sizes_and_derived_symbols():
    hourly = generate_day("SOLUSDT", date(2024, 2, 2), "1h")
    assert len(hourly) == 24 and (hourly["high"] >= hourly[["open", "close"]].max(axis=1)).all()
