"""The candle assets end to end through Dagster: partitions, checks, fallbacks, blocking."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from alphapulse_assets.market_data.assets import candle_assets
from alphapulse_assets.market_data.resources import MarketDataResource, PartitionedParquetIOManager
from alphapulse_assets.market_data.sources import register_source
from alphapulse_assets.market_data.sources.base import CandleSource
from alphapulse_assets.market_data.sources.sample import SampleSource
from alphapulse_assets.market_data.storage import ParquetPartitionStore
from alphapulse_assets.recovery.errors import TransientError

ROOT = Path(__file__).resolve().parent.parent


class DownSource(CandleSource):
    name = "down"

    def fetch(self, symbols, start, end):
        raise TransientError("exchange unreachable", where="down source")


class CorruptingSource(CandleSource):
    """Serves sample data with a broken bar and a duplicate, as a bad feed would."""

    name = "corrupting"

    def fetch(self, symbols, start, end):
        frame = SampleSource().fetch(symbols, start, end)
        frame.loc[7, "high"] = frame.loc[7, "low"] / 2
        return (
            pd.concat([frame, frame.iloc[[3]]])
            .sort_values(["symbol", "timestamp"], kind="stable")
            .reset_index(drop=True)
        )


register_source("down", lambda s: DownSource())
register_source("corrupting", lambda s: CorruptingSource())


def materialize(tmp_path, sources, partition="2024-03-01", symbols=("BTCUSDT", "ETHUSDT")):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        candle_assets,
        partition_key=partition,
        instance=instance,
        resources={
            "market_data": MarketDataResource(sources=sources, symbols=list(symbols)),
            "candle_io_manager": PartitionedParquetIOManager(base_url=str(tmp_path)),
        },
        raise_on_error=False,
    )
    return result, instance


def test_one_partition_materializes_all_symbols_and_resampled_bars(tmp_path):
    result, _ = materialize(tmp_path, ["sample"])
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert len(checks) == 9 and all(checks.values())
    store = ParquetPartitionStore(str(tmp_path))
    assert len(store.read_days("market_candles", ["2024-03-01"])) == 2 * 96
    assert len(store.read_days("candles_1h", ["2024-03-01"])) == 2 * 24
    assert len(store.read_days("candles_4h", ["2024-03-01"])) == 2 * 6
    meta = result.asset_materializations_for_node("market_candles")[0].metadata
    assert meta["synthetic_data"].value is True and "SYNTHETIC" in meta["note"].value
    assert meta["source_by_symbol"].value == {"BTCUSDT": "sample", "ETHUSDT": "sample"}


def test_fallback_chain_records_the_source_used_and_the_failure(tmp_path):
    result, _ = materialize(tmp_path, ["down", "sample"])
    assert result.success
    meta = result.asset_materializations_for_node("market_candles")[0].metadata
    assert meta["sources_used"].value == "sample"
    assert meta["fallbacks_used"].value == 2
    assert "exchange unreachable" in meta["fallback_details"].value[0]


def test_bad_data_fails_blocking_checks_and_stops_downstream(tmp_path):
    result, _ = materialize(tmp_path, ["corrupting"])
    failed = {e.check_name: e for e in result.get_asset_check_evaluations() if not e.passed}
    assert set(failed) == {"ohlc_consistency", "unique_increasing_timestamps"}
    ohlc = failed["ohlc_consistency"]
    assert ohlc.metadata["violations"].value == 2  # the chain fetches symbol by symbol: one bad bar each
    assert "BTCUSDT 2024-03-01T01:45:00+00:00" in ohlc.metadata["first_offenders"].value
    assert failed["unique_increasing_timestamps"].metadata["duplicated"].value == 2
    # Blocking checks keep the bad partition from flowing on.
    assert result.asset_materializations_for_node("candles_1h") == []
    assert not ParquetPartitionStore(str(tmp_path)).exists("candles_1h", "2024-03-01")


@pytest.mark.slow
def test_definitions_validate_with_dagster_cli(tmp_path):
    # The project's workspace and instance config, in a project folder outside the checkout: the instance's
    # SQLite paths are relative to the working directory.
    shutil.copyfile(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


def test_definitions_show_candles_partitions_and_checks():
    from alphapulse_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"market_candles", "candles_1h", "candles_4h"} <= keys
    checks = {k.name for k in graph.asset_check_keys if k.asset_key.to_user_string() == "market_candles"}
    assert {"ohlc_consistency", "bar_coverage", "outlier_returns"} <= checks
    market = defs.resolve_assets_def("market_candles")
    assert market.partitions_def.get_first_partition_key() == "2024-01-01"
    assert market.backfill_policy.max_partitions_per_run == 92


def test_a_run_over_many_days_materializes_each_day_once_with_that_days_figures(tmp_path):
    result = dg.materialize(
        candle_assets,
        instance=dg.DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": "2024-03-01", "dagster/asset_partition_range_end": "2024-03-03"},
        resources={
            "market_data": MarketDataResource(sources=["sample"], symbols=["BTCUSDT", "ETHUSDT"]),
            "candle_io_manager": PartitionedParquetIOManager(base_url=str(tmp_path)),
        },
    )
    assert result.success
    mats = result.asset_materializations_for_node("market_candles")
    assert [m.partition for m in mats] == ["2024-03-01", "2024-03-02", "2024-03-03"]  # once per day, no double
    for mat in mats:
        assert mat.metadata["rows"].value == 2 * 96  # that day's bars, not the run's 576
        assert mat.metadata["days_in_run"].value == 3
        assert f"{mat.partition} 23:45:00" in mat.metadata["summary"].value  # that day's last bar
        assert mat.metadata["source_by_symbol"].value == {"BTCUSDT": "sample", "ETHUSDT": "sample"}
    hourly = result.asset_materializations_for_node("candles_1h")
    assert [(m.partition, m.metadata["rows"].value) for m in hourly] == [
        ("2024-03-01", 48),
        ("2024-03-02", 48),
        ("2024-03-03", 48),
    ]


def test_coverage_of_an_exchange_session_follows_the_symbols_calendar(tmp_path):
    """An equity's 15m bars fill a 6.5 h session (26 bars), not a 24 h day: refused as 24/7, passed as an exchange."""
    session = pd.date_range("2024-03-01 14:30", periods=26, freq="15min", tz="UTC")  # a Friday, NYSE hours
    folder = tmp_path / "files"
    folder.mkdir()
    pd.DataFrame(
        {"timestamp": session, "open": 500.0, "high": 501.0, "low": 499.0, "close": 500.5, "volume": 1e5}
    ).to_csv(folder / "SPY.csv", index=False)

    def coverage(calendars):
        result = dg.materialize(
            candle_assets,
            partition_key="2024-03-01",
            instance=dg.DagsterInstance.ephemeral(),
            resources={
                "market_data": MarketDataResource(
                    sources=["files"], symbols=["SPY"], files_dir=str(folder), base_timeframe="15m", calendars=calendars
                ),
                "candle_io_manager": PartitionedParquetIOManager(base_url=str(tmp_path / "store")),
            },
            selection=[candle_assets[0]],
            raise_on_error=False,
        )
        return next(e for e in result.get_asset_check_evaluations() if e.check_name == "bar_coverage")

    as_crypto = coverage({})
    assert not as_crypto.passed and "70/96 bars missing" in as_crypto.metadata["first_offenders"].value
    assert coverage({"SPY": "exchange"}).passed
