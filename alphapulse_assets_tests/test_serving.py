"""Serving the champions: Predictor, `alphapulse predict`, and the signals assets, on a real champion.

The champion comes from the real weekly cadence (candles ingested through the market-data assets, then
training set, challenger, gate and promotion through Dagster), and its training set is the one the cadence
stored. Tests that change the registry or the files work on a copy of that project.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from alphapulse_assets.features.indicators import FEATURE_NAMES
from alphapulse_assets.market_data.assets import quality_verdicts
from alphapulse_assets.market_data.resample import resample_candles
from alphapulse_assets.market_data.resources import CandleStoreResource, PartitionedParquetIOManager
from alphapulse_assets.market_data.schema import to_arrow
from alphapulse_assets.market_data.sources.sample import SampleSource
from alphapulse_assets.market_data.storage import ParquetPartitionStore
from alphapulse_assets.serving import (
    ChampionRefusedError,
    MissingDataError,
    NoChampionError,
    Predictor,
    RefusedDataError,
    StaleDataError,
    read_signals,
)
from alphapulse_assets.serving.assets import SignalStoreResource, signals_assets, signals_automation_sensor
from alphapulse_assets.settings import SettingsError, get_settings, load_settings
from alphapulse_assets.training.assets import ModelRegistryResource, cadence_assets
from alphapulse_assets.training.challenger import DEFAULT_SPECS, Dataset, train_challenger
from alphapulse_assets.training.registry import ModelRegistry
from alphapulse_assets_tests.candles import ingest, symbol_tags

REPO = Path(__file__).resolve().parents[1]
SYMBOL = "ETHUSDT"  # on the sample market its weekly challenger clears the gate in the week of 2024-05-26
PARTITION = "2024-05-26"
LAST_DAY = "2024-06-09"
NEWEST_BAR = pd.Timestamp(f"{LAST_DAY} 23:00", tz="UTC")  # the newest 1h bar stored
NOW = datetime(2024, 6, 10, 0, 30, tzinfo=timezone.utc)  # 30 minutes after that bar closed
WEEKLY_SIGNALS = next(a for a in signals_assets if a.key == dg.AssetKey(["signals", "weekly"]))


class Project:
    """A project folder laid out as the platform lays it out (what `alphapulse` finds from DAGSTER_HOME)."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / ".alphapulse"
        self.candles = str(self.home / "candles")
        self.models = str(self.home / "models")
        self.db_url = f"sqlite:///{self.home / 'platform.db'}"
        self.signals = str(self.home / "signals")
        self.training_sets = str(root / "training_sets")

    def write_instance_config(self) -> None:
        """The instance's SQLite storage under this folder (an absolute path: the test process and the command
        open the same instance, whatever their working folder)."""
        storage = self.home / "storage"
        (self.root / "dagster.yaml").write_text(
            f"storage:\n  sqlite:\n    base_dir: {storage}\ntelemetry:\n  enabled: false\n"
        )

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.root))

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.models, self.db_url)

    def predictor(self, clock=lambda: NOW, **kwargs) -> Predictor:
        return Predictor(registry=self.registry(), candle_store=self.candles, clock=clock, **kwargs)

    def resources(self) -> dict:
        return {
            "candle_store": CandleStoreResource(base_url=self.candles),
            "training_set_io_manager": PartitionedParquetIOManager(base_url=self.training_sets, layout="keys"),
            "model_registry": ModelRegistryResource(artifact_root=self.models, db_url=self.db_url),
            "signal_store": SignalStoreResource(base_url=self.signals),
        }

    def training_set(self) -> Dataset:
        # The run trained SYMBOL alone: its (week, symbol) key, as the IO manager stores it.
        frame = ParquetPartitionStore(self.training_sets).read_key("training_sets/weekly", f"{PARTITION}+{SYMBOL}")
        return Dataset.from_frame(frame).for_symbol(SYMBOL)

    def copy(self, to: Path) -> Project:
        shutil.copytree(self.root, to, dirs_exist_ok=True)
        copied = Project(to)
        copied.write_instance_config()
        return copied


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Project:
    """Two symbols' candles ingested through Dagster; the real weekly cadence makes ETHUSDT's champion (v1)."""
    project = Project(tmp_path_factory.mktemp("serving"))
    project.home.mkdir()
    project.write_instance_config()
    instance = project.instance()  # the candles' quality verdicts are where `alphapulse predict` reads them
    ingest(instance, project.candles, "2024-03-01", LAST_DAY, symbols=[SYMBOL, "BTCUSDT"])
    symbol_tags(instance, PARTITION, [SYMBOL, "BTCUSDT"])  # both active (served), ETHUSDT's week trained
    result = dg.materialize(
        cadence_assets["weekly"],
        tags=symbol_tags(instance, PARTITION, [SYMBOL]),
        instance=instance,
        resources=project.resources(),
    )
    assert result.success
    champion = project.registry().champion(SYMBOL, "weekly")
    assert champion is not None and champion.version == 1, "the sample market's ETHUSDT weekly model is promoted"
    instance.dispose()
    return project


def _other_model(project: Project):
    """A second real weekly model of the same symbol (another seed and depth): its answers differ from v1's."""
    spec = DEFAULT_SPECS["weekly"]
    spec = type(spec)(**{**spec.__dict__, "seed": 7, "estimator": "hgb"})
    return train_challenger(project.training_set(), spec, symbol=SYMBOL, n_boot=50).model


@pytest.mark.slow
def test_predictions_equal_the_champions_answers_on_its_stored_training_features(served):
    registry = served.registry()
    champion = registry.champion(SYMBOL, "weekly")
    model = registry.load(champion)
    training = served.training_set()
    days = ["2024-05-30", "2024-05-31", "2024-06-01"]  # the end of the training window
    signals, problems = served.predictor().predict_days("weekly", days, [SYMBOL])
    assert problems == {}
    in_days = training.timestamps.dt.strftime("%Y-%m-%d").isin(days).to_numpy()
    expected = pd.DataFrame(
        {
            "bar_time": training.timestamps[in_days].reset_index(drop=True),
            "trained": model.predict_proba(training.X[list(FEATURE_NAMES)].to_numpy()[in_days])[:, 1],
        }
    )
    joined = expected.merge(signals, on="bar_time", how="left")
    assert len(expected) == 71  # 3 days of 1h bars; the window's last bar has no label yet, so no training row
    assert joined["prob_up"].notna().all()
    np.testing.assert_allclose(joined["prob_up"], joined["trained"], rtol=0, atol=1e-12)
    assert set(joined["version"]) == {champion.version}

    # The newest bar: the same features and model, for the bar after the newest stored one.
    prediction = served.predictor().predict(SYMBOL, "weekly")
    newest, _ = served.predictor().predict_days("weekly", [LAST_DAY], [SYMBOL])
    assert prediction.bar_time == NEWEST_BAR == prediction.feature_time
    assert prediction.for_bar == NEWEST_BAR + pd.Timedelta(hours=1)
    assert prediction.version == champion.version and prediction.cadence == "weekly" and prediction.timeframe == "1h"
    assert prediction.prob_up == pytest.approx(newest["prob_up"].iloc[-1], abs=1e-15)
    assert prediction.data_age_seconds == 1800.0  # closed at 00:00, asked at 00:30
    assert 0.0 < prediction.prob_up < 1.0


@pytest.mark.slow
def test_a_promotion_and_a_rollback_are_served_without_a_restart(served, tmp_path):
    project = served.copy(tmp_path / "project")
    predictor = project.predictor()
    first = predictor.predict(SYMBOL, "weekly")
    assert first.version == 1

    registry = project.registry()
    other = _other_model(project)
    v2 = registry.register(SYMBOL, "weekly", other, info={"gate_passed": True})
    registry.promote(v2, reason="passed the weekly gate (test)")

    second = predictor.predict(SYMBOL, "weekly")  # the same object: no restart
    assert second.version == 2
    signals, _ = predictor.predict_days("weekly", [LAST_DAY], [SYMBOL])
    assert second.prob_up == pytest.approx(signals["prob_up"].iloc[-1], abs=1e-15)
    assert second.prob_up != pytest.approx(first.prob_up, abs=1e-9)  # a different model answers

    registry.rollback(SYMBOL, "weekly", reason="bad week")
    third = predictor.predict(SYMBOL, "weekly")
    assert (third.version, third.prob_up) == (1, first.prob_up)


@pytest.mark.slow
def test_new_candles_are_served_by_the_same_predictor(served, tmp_path):
    project = served.copy(tmp_path / "project")
    predictor = project.predictor(clock=lambda: NOW + timedelta(days=1))
    before = predictor.predict(SYMBOL, "weekly")
    assert before.bar_time == NEWEST_BAR

    day = pd.Timestamp("2024-06-10", tz="UTC")
    bars = resample_candles(SampleSource().fetch([SYMBOL], day, day + pd.Timedelta(days=1)), "15m", "1h")
    ParquetPartitionStore(project.candles).write_days("candles_1h", to_arrow(bars), ["2024-06-10"])

    after = predictor.predict(SYMBOL, "weekly")
    assert after.bar_time == NEWEST_BAR + pd.Timedelta(days=1) and after.data_age_seconds == 1800.0
    signals, _ = predictor.predict_days("weekly", ["2024-06-10"], [SYMBOL])
    assert after.prob_up == pytest.approx(signals["prob_up"].iloc[-1], abs=1e-15)

    # Those candles were written past the quality checks: judged as the cadences judge days, they are refused.
    instance = project.instance()
    try:
        checked = project.predictor(
            clock=lambda: NOW + timedelta(days=1), refused_days=lambda days: quality_verdicts(instance, days)
        )
        with pytest.raises(RefusedDataError, match=r"did not pass the blocking quality checks.*2024-06-10 \(never"):
            checked.predict(SYMBOL, "weekly")
    finally:
        instance.dispose()


@pytest.mark.slow
def test_a_tampered_champion_file_is_never_served(served, tmp_path):
    project = served.copy(tmp_path / "project")
    registry = project.registry()
    v1 = registry.champion(SYMBOL, "weekly")
    Path(v1.uri).write_bytes(Path(v1.uri).read_bytes()[:-7])  # truncated: its SHA-256 no longer matches

    with pytest.raises(ChampionRefusedError) as refused:
        project.predictor().predict(SYMBOL, "weekly")
    message = str(refused.value)
    assert SYMBOL in message and "v1" in message and "SHA-256" in message and "nothing is served" in message
    assert [d.action for d in registry.history(SYMBOL, "weekly")][-1] == "fell_back"


@pytest.mark.slow
def test_a_tampered_newer_champion_falls_back_to_the_verified_one(served, tmp_path):
    project = served.copy(tmp_path / "project")
    registry = project.registry()
    expected = project.predictor().predict(SYMBOL, "weekly")
    v2 = registry.register(SYMBOL, "weekly", _other_model(project), info={"gate_passed": True})
    registry.promote(v2, reason="second champion")
    Path(v2.uri).write_bytes(b"not a model")

    prediction = project.predictor().predict(SYMBOL, "weekly")
    assert (prediction.version, prediction.prob_up) == (1, expected.prob_up)  # v2 refused, never deserialised
    fell = [d for d in registry.history(SYMBOL, "weekly") if d.action == "fell_back"]
    assert [(d.version, d.previous_champion) for d in fell] == [(1, 2)]


@pytest.mark.slow
def test_stale_and_missing_inputs_raise_errors_naming_the_symbol_and_what_is_missing(served, tmp_path):
    late = lambda: datetime(2024, 6, 11, 4, 1, tzinfo=timezone.utc)  # noqa: E731 - 28 h 1 min after the close
    with pytest.raises(StaleDataError) as stale:
        served.predictor(clock=late).predict(SYMBOL, "weekly")
    assert SYMBOL in str(stale.value) and "ALPHAPULSE_SERVING__MAX_DATA_AGE__WEEKLY" in str(stale.value)
    assert "closed 1d 4h 1m ago, more than the 28 bars (1d 4h)" in str(stale.value)
    # A looser bound, set as an operator would, serves the same data.
    looser = load_settings({"ALPHAPULSE_SERVING__MAX_DATA_AGE__WEEKLY": "48"})
    assert served.predictor(clock=late, settings=looser).predict(SYMBOL, "weekly").version == 1

    with pytest.raises(NoChampionError, match="no weekly champion for BTCUSDT yet"):
        served.predictor().predict("BTCUSDT", "weekly")

    project = served.copy(tmp_path / "project")
    registry = project.registry()
    ada = registry.register("ADAUSDT", "weekly", registry.load(registry.champion(SYMBOL, "weekly")))
    registry.promote(ada, reason="a champion without candles")
    with pytest.raises(MissingDataError, match="no 1h candles for ADAUSDT"):
        project.predictor().predict("ADAUSDT", "weekly")

    # Too few bars for the look-back: only the newest 36 hours of ETHUSDT stored.
    store = ParquetPartitionStore(project.candles)
    days = [str(d.date()) for d in pd.date_range("2024-06-04", LAST_DAY, freq="D")]
    kept = store.read_days("candles_1h", days)
    kept = kept[(kept["symbol"] == SYMBOL) & (kept["timestamp"] >= pd.Timestamp("2024-06-08 12:00", tz="UTC"))]
    short = tmp_path / "short"
    ParquetPartitionStore(str(short)).write_days("candles_1h", pa.Table.from_pandas(kept, preserve_index=False), days)
    with pytest.raises(MissingDataError) as few:
        Predictor(registry=registry, candle_store=str(short), clock=lambda: NOW).predict(SYMBOL, "weekly")
    assert "ETHUSDT: only 36 1h bar(s) stored" in str(few.value) and "need 104" in str(few.value)

    # A day missing inside the look-back.
    gap = tmp_path / "gap"
    ParquetPartitionStore(str(gap)).write_days(
        "candles_1h",
        pa.Table.from_pandas(kept[kept["timestamp"] >= pd.Timestamp(LAST_DAY, tz="UTC")], preserve_index=False),
        [LAST_DAY],
    )
    with pytest.raises(
        MissingDataError, match=r"5 day\(s\) of candles_1h missing .* look-back of ETHUSDT, .*\(first 2024-06-04\)"
    ):
        Predictor(registry=registry, candle_store=str(gap), clock=lambda: NOW).predict(SYMBOL, "weekly")


def test_a_bad_max_data_age_is_refused_naming_the_variable():
    with pytest.raises(SettingsError, match="ALPHAPULSE_SERVING__MAX_DATA_AGE__NIGHTLY='0'"):
        load_settings({"ALPHAPULSE_SERVING__MAX_DATA_AGE__NIGHTLY": "0"})
    assert get_settings().serving.max_data_age.weekly == 28


def _cli(project: Project, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHAPULSE_", "DAGSTER_PG"))}
    clean.update(DAGSTER_HOME=str(project.root), **env)
    return subprocess.run(
        [sys.executable, "-m", "alphapulse_assets.cli", "predict", *args],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.slow
def test_alphapulse_predict_json_prints_one_parseable_object_and_errors_go_to_stderr(served):
    # The sample market's newest bar is from 2024: a bound that accepts it, set as an operator would.
    old_data_ok = {"ALPHAPULSE_SERVING__MAX_DATA_AGE__WEEKLY": "1000000"}
    done = _cli(served, "ethusdt", "--cadence", "weekly", "--json", **old_data_ok)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # the whole of stdout is one JSON object
    expected = served.predictor().predict(SYMBOL, "weekly")
    assert document["symbol"] == SYMBOL and document["cadence"] == "weekly" and document["version"] == 1
    assert document["prob_up"] == pytest.approx(expected.prob_up, abs=1e-15)
    assert document["bar_time"] == NEWEST_BAR.isoformat()
    assert document["for_bar"] == (NEWEST_BAR + pd.Timedelta(hours=1)).isoformat()
    assert document["data_age_seconds"] > 0

    table = _cli(served, SYMBOL, "--cadence", "weekly", **old_data_ok)
    assert table.returncode == 0 and f"{expected.prob_up:.4f}" in table.stdout and "v1" in table.stdout

    stale = _cli(served, SYMBOL, "--cadence", "weekly", "--json")
    assert stale.returncode == 1 and stale.stdout == ""
    assert "ETHUSDT" in stale.stderr and "ALPHAPULSE_SERVING__MAX_DATA_AGE__WEEKLY" in stale.stderr

    none = _cli(served, "BTCUSDT", "--cadence", "weekly", "--json", **old_data_ok)
    assert none.returncode == 1 and none.stdout == "" and "no weekly champion for BTCUSDT yet" in none.stderr


@pytest.mark.slow
def test_the_signals_asset_records_the_champions_answers(served, tmp_path):
    project = served.copy(tmp_path / "project")
    instance = project.instance()  # where the candles' quality verdicts are
    results = [
        dg.materialize([WEEKLY_SIGNALS], partition_key=day, instance=instance, resources=project.resources())
        for day in ("2024-06-01", LAST_DAY)
    ]
    assert all(r.success for r in results)

    signals = read_signals("weekly", store_url=project.signals)
    assert list(signals.columns) == ["symbol", "cadence", "bar_time", "for_bar", "version", "prob_up", "role"]
    assert set(signals["symbol"]) == {SYMBOL} and set(signals["role"]) == {"champion"}
    assert len(signals) == 48 and signals["bar_time"].is_monotonic_increasing  # two days of 1h bars

    # The newest record is what the Predictor answers now.
    prediction = project.predictor().predict(SYMBOL, "weekly")
    newest = signals.iloc[-1]
    assert (newest["bar_time"], newest["for_bar"], newest["version"]) == (
        prediction.bar_time,
        prediction.for_bar,
        prediction.version,
    )
    assert newest["prob_up"] == pytest.approx(prediction.prob_up, abs=1e-15)
    # The records of a day inside the training window are the champion's answers on its training features.
    registry = project.registry()
    model = registry.load(registry.champion(SYMBOL, "weekly"))
    training = project.training_set()
    day = read_signals("weekly", "2024-06-01", "2024-06-01", store_url=project.signals)
    rows = training.timestamps.dt.strftime("%Y-%m-%d").eq("2024-06-01").to_numpy()
    trained = model.predict_proba(training.X.to_numpy()[rows])[:, 1]
    np.testing.assert_allclose(day["prob_up"].to_numpy()[: len(trained)], trained, rtol=0, atol=1e-12)

    metadata = results[-1].asset_materializations_for_node(WEEKLY_SIGNALS.op.name)[0].metadata
    assert metadata["signals"].value == 24
    assert metadata["mean_prob_up.ETHUSDT"].value == pytest.approx(
        signals[signals["bar_time"] >= pd.Timestamp(LAST_DAY, tz="UTC")]["prob_up"].mean(), rel=1e-3
    )
    assert "BTCUSDT: no weekly champion for BTCUSDT yet" in metadata["not_served"].value
    assert "ETHUSDT" in metadata["newest_bars"].value
    instance.dispose()


@pytest.mark.slow
def test_signals_are_requested_once_the_days_candles_land(tmp_path):
    """Declarative automation, as the daemon's signals_automation_sensor evaluates it: nothing before the day's
    candles exist, every cadence's signals for that day once they land, and not again for the same candles."""
    from alphapulse_assets.definitions import defs  # the assembled definitions, resources included (slow import)

    when = datetime(2024, 6, 10, 2, 0, tzinfo=timezone.utc)
    selection = dg.AssetSelection.assets(*signals_assets)
    with dg.instance_for_test() as instance:
        before = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, evaluation_time=when)
        assert before.total_requested == 0
        ingest(instance, str(tmp_path / "candles"), LAST_DAY, LAST_DAY, symbols=[SYMBOL])
        after = dg.evaluate_automation_conditions(
            defs, instance, asset_selection=selection, evaluation_time=when, cursor=before.cursor
        )
        assert {a.key.to_user_string(): sorted(after.get_requested_partitions(a.key)) for a in signals_assets} == {
            "signals/nightly": [LAST_DAY],
            "signals/weekly": [LAST_DAY],
            "signals/monthly": [LAST_DAY],
        }
        again = dg.evaluate_automation_conditions(
            defs, instance, asset_selection=selection, evaluation_time=when, cursor=after.cursor
        )
        assert again.total_requested == 0
    assert signals_automation_sensor in defs.sensors  # turned on under Automation, like every schedule here
    assert signals_automation_sensor.default_status == dg.DefaultSensorStatus.STOPPED
