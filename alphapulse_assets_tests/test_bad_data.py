"""A bad day never reaches a model: ingested through Dagster from a files source that serves it, refused by
every cadence's training set with the day and the failed check named, and no model registered or promoted."""

from datetime import date

import dagster as dg
import pandas as pd
import pytest

from alphapulse_assets.market_data.assets import BASE_ASSET
from alphapulse_assets.market_data.resources import CandleStoreResource, MarketDataResource, PartitionedParquetIOManager
from alphapulse_assets.market_data.sources.files import export_sample
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training.assets import ModelRegistryResource, cadence_assets
from alphapulse_assets_tests.candles import ingest as ingest_days
from alphapulse_assets_tests.candles import symbol_tags

SYMBOLS = list(get_settings().symbols)
FIRST, LAST = date(2024, 3, 20), date(2024, 6, 9)  # what the weekly partition 2024-06-02 reads, and a little more
NEGATIVE_VOLUME_DAY, SPIKE_DAY = "2024-06-05", "2024-06-06"


def ingest(project, first: str, last: str, instance=None):
    """The market-data assets over [first, last] in one run from the files source, as `alphapulse ingest` runs them."""
    return ingest_days(
        instance or project["instance"],
        str(project["root"] / "candles"),
        first,
        last,
        market_data=project["resources"]["market_data"],
        raise_on_error=False,
    )


def cadence(project, name: str, key: str, instance=None):
    instance = instance or project["instance"]
    return dg.materialize(
        cadence_assets[name],
        tags=symbol_tags(instance, key, SYMBOLS),
        instance=instance,
        resources=project["resources"],
        raise_on_error=False,
    )


def failure_message(result) -> str:
    return next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message


def corrupt(files, symbol: str, at: str, **changes) -> None:
    """Rewrite one bar of a symbol's file, as a broken feed would deliver it."""
    path = files / f"{symbol}.csv"
    frame = pd.read_csv(path)
    row = pd.to_datetime(frame["timestamp"], utc=True) == pd.Timestamp(at, tz="UTC")
    assert row.sum() == 1
    for column, factor in changes.items():
        frame.loc[row, column] = frame.loc[row, column] * factor
    frame.to_csv(path, index=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Good sample days ingested through Dagster, then two bad days served by the same files source."""
    root = tmp_path_factory.mktemp("baddata")
    files = root / "files"
    export_sample(files, SYMBOLS, FIRST, LAST, layout="per-symbol")
    resources = {
        "market_data": MarketDataResource(sources=["files"], symbols=SYMBOLS, files_dir=str(files)),
        "candle_store": CandleStoreResource(base_url=str(root / "candles")),
        "training_set_io_manager": PartitionedParquetIOManager(base_url=str(root / "ts"), layout="keys"),
        "model_registry": ModelRegistryResource(artifact_root=str(root / "models"), db_url=f"sqlite:///{root}/p.db"),
    }
    project = {"root": root, "files": files, "resources": resources, "instance": dg.DagsterInstance.ephemeral()}
    good = ingest(project, str(FIRST), str(LAST))
    assert good.success
    corrupt(files, "BTCUSDT", f"{NEGATIVE_VOLUME_DAY}T05:00", volume=-1)
    corrupt(files, "ETHUSDT", f"{SPIKE_DAY}T10:15", close=1000, high=1000)  # a 1000x spike in one bar
    project["bad"] = ingest(project, NEGATIVE_VOLUME_DAY, SPIKE_DAY)
    return project


def test_the_bad_days_fail_blocking_checks_each_on_its_own_partition(project):
    bad = project["bad"]
    assert not bad.success  # blocking checks failed: the resampled bars of these days were not rebuilt
    instance = project["instance"]
    infos = instance.event_log_storage.get_asset_check_partition_info(
        [dg.AssetCheckKey(dg.AssetKey(BASE_ASSET), rule) for rule in ("non_negative_volume", "implausible_moves")],
        partition_keys=[NEGATIVE_VOLUME_DAY, SPIKE_DAY],
    )
    status = {(i.check_key.name, i.partition_key): i.latest_execution_status.value for i in infos}
    assert status == {
        ("non_negative_volume", NEGATIVE_VOLUME_DAY): "FAILED",
        ("non_negative_volume", SPIKE_DAY): "SUCCEEDED",
        ("implausible_moves", NEGATIVE_VOLUME_DAY): "SUCCEEDED",
        ("implausible_moves", SPIKE_DAY): "FAILED",
    }
    spike = next(
        e for e in bad.get_asset_check_evaluations() if e.check_name == "implausible_moves" and e.partition == SPIKE_DAY
    )
    assert "ETHUSDT 2024-06-06T10:15:00+00:00" in spike.metadata["first_offenders"].value
    assert spike.blocking and spike.severity == dg.AssetCheckSeverity.ERROR


@pytest.mark.parametrize("name, key", [("weekly", "2024-06-02"), ("nightly", "2024-06-06")])
def test_each_cadence_refuses_the_bad_days_and_trains_nothing(project, name, key):
    result = cadence(project, name, key)
    assert not result.success
    message = failure_message(result)
    assert "did not pass the blocking quality checks of market_candles" in message
    assert f"{NEGATIVE_VOLUME_DAY} (failed non_negative_volume (BTCUSDT))" in message
    assert f"{SPIKE_DAY} (failed implausible_moves (ETHUSDT))" in message
    assert f"alphapulse ingest --start {NEGATIVE_VOLUME_DAY} --end {SPIKE_DAY}" in message
    failures = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == [f"training_sets__{name}"]  # refused once, not retried
    assert not result.get_asset_materialization_events()
    registry = project["resources"]["model_registry"].get()
    for symbol in SYMBOLS:
        assert registry.versions(symbol, name) == []  # nothing trained on the bad days
        assert registry.champion(symbol, name) is None


def test_a_day_whose_checks_never_ran_is_refused(project):
    # The same stored candles seen from an instance that never checked them (copied in by hand, or a restored
    # store): the training set has no verdict for any day, so it reads none.
    result = cadence(project, "nightly", "2024-05-20", instance=dg.DagsterInstance.ephemeral())
    assert not result.success
    message = failure_message(result)
    assert (
        "18 day(s)" in message
        and "2024-05-03 (never checked)" in message
        and "did not pass the blocking quality checks" in message
    )


def test_a_re_ingested_good_day_is_read_again(project, tmp_path):
    # The checks that count are the latest: fixing the source and re-ingesting the days clears the refusal.
    instance = dg.DagsterInstance.ephemeral()
    export_sample(project["files"], SYMBOLS, FIRST, LAST, layout="per-symbol")
    assert ingest(project, "2024-05-03", "2024-05-20", instance=instance).success
    result = cadence(project, "nightly", "2024-05-20", instance=instance)
    messages = [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
    assert not any("quality checks" in m for m in messages), messages
    assert result.asset_materializations_for_node("training_sets__nightly") or any(
        m.asset_key.path == ["training_sets", "nightly"] for m in result.get_asset_materialization_events()
    )


@pytest.mark.slow
def test_evaluate_refuses_a_symbol_whose_history_fails_a_blocking_rule(tmp_path, capsys):
    from alphapulse_assets.cli import main

    export_sample(
        tmp_path, ["SPYUSD", "EURUSD"], date(2024, 5, 1), date(2024, 6, 15), layout="per-symbol", timeframe="1h"
    )
    corrupt(tmp_path, "EURUSD", "2024-06-03T10:00", close=1000, high=1000)  # the same 1000x spike
    code = main(
        [
            "evaluate",
            "--files",
            str(tmp_path),
            "--timeframe",
            "1h",
            "--start",
            "2024-05-01",
            "--end",
            "2024-06-15",
            "--splits",
            "3",
            "--min-train-bars",
            "200",
            "--min-validation",
            "300",
        ]
    )
    out, err = capsys.readouterr()
    # The refused symbol is reported in its row and on stderr; the other one is evaluated, so the run exits 0.
    assert code == 0 and "1 symbol(s) or file(s) not evaluated" in err, err
    eurusd = next(line for line in out.splitlines() if line.startswith("EURUSD"))
    assert "refused: bad data: implausible_moves" in eurusd and "EURUSD 2024-06-03T10:00:00+00:00" in eurusd
    assert "would be" in next(line for line in out.splitlines() if line.startswith("SPYUSD"))


def test_evaluate_judges_with_the_gate_settings_of_the_cadences(tmp_path, capsys, monkeypatch):
    from alphapulse_assets.cli import main

    monkeypatch.setenv("ALPHAPULSE_GATE__ALPHA", "0.000001")  # nothing is that significant on a few weeks
    get_settings.cache_clear()
    try:
        export_sample(tmp_path, ["SPYUSD"], date(2024, 5, 1), date(2024, 6, 15), layout="per-symbol", timeframe="1h")
        code = main(
            [
                "evaluate",
                "--files",
                str(tmp_path),
                "--timeframe",
                "1h",
                "--start",
                "2024-05-01",
                "--end",
                "2024-06-15",
                "--splits",
                "3",
                "--min-train-bars",
                "200",
                "--min-validation",
                "300",
            ]
        )
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    out = capsys.readouterr().out
    spy = next(line for line in out.splitlines() if line.startswith("SPYUSD"))
    assert code == 0 and "would be rejected" in spy and "(alpha 1e-06)" in spy, spy
