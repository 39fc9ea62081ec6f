import numpy as np
import pandas as pd
import pytest

from alphapulse_assets.market_data.resample import resample_candles
from alphapulse_assets.market_data.sources.sample import SampleSource

DAY = pd.Timestamp("2024-02-10", tz="UTC")


@pytest.fixture()
def base():
    return SampleSource().fetch(["BTCUSDT", "ADAUSDT"], DAY, DAY + pd.Timedelta(days=1))


def test_hourly_bars_aggregate_ohlcv(base):
    hourly = resample_candles(base, "15m", "1h")
    assert len(hourly) == 2 * 24
    first = base[base.symbol == "ADAUSDT"].iloc[:4]
    bar = hourly[hourly.symbol == "ADAUSDT"].iloc[0]
    assert bar.timestamp == DAY
    assert bar.open == first.open.iloc[0] and bar.close == first.close.iloc[-1]
    assert bar.high == first.high.max() and bar.low == first.low.min()
    assert np.isclose(bar.volume, first.volume.sum())
    assert str(hourly.timestamp.dtype) == "datetime64[ns, UTC]"


def test_incomplete_bars_are_dropped_so_a_gap_never_hides(base):
    gappy = base.drop(index=base.index[5])  # BTC 01:15 missing
    four = resample_candles(gappy, "15m", "4h")
    btc = four[four.symbol == "BTCUSDT"]
    assert len(btc) == 5 and DAY not in set(btc.timestamp)
    assert len(resample_candles(gappy, "15m", "4h", complete_only=False)) == 12


def test_coarser_base_passes_through_and_bad_ratio_is_refused(base):
    daily = resample_candles(base, "15m", "1d")
    assert len(resample_candles(daily, "1d", "4h")) == len(daily)
    with pytest.raises(ValueError, match="cannot be built"):
        resample_candles(base, "15m", "25m")


def test_a_filtered_frame_with_a_shifted_index_resamples(base):
    eth_only = base[base.symbol == "BTCUSDT"].iloc[8:]  # index no longer starts at 0
    hourly = resample_candles(eth_only, "15m", "1h")
    assert len(hourly) == 22 and hourly.timestamp.iloc[0] == DAY + pd.Timedelta(hours=2)
