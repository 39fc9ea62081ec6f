"""The retraining cadences through Dagster, and the promotion gate's statistical honesty."""

import dataclasses
import json
import math
from datetime import datetime, timezone

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from alphapulse_assets.market_data.resample import resample_candles
from alphapulse_assets.market_data.resources import CandleStoreResource, PartitionedParquetIOManager
from alphapulse_assets.market_data.sources.sample import SampleSource
from alphapulse_assets.market_data.symbols import SYMBOLS_NAME, range_tags
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training import drift_assets
from alphapulse_assets.training.assets import ModelRegistryResource, cadence_assets, model_key
from alphapulse_assets.training.challenger import (
    DEFAULT_SPECS,
    NothingNewerThanChampion,
    make_dataset,
    train_challenger,
)
from alphapulse_assets.training.promotion import GateConfig, evaluate_gate
from alphapulse_assets.training.schedules import SCHEDULES, latest_partition_key
from alphapulse_assets_tests.candles import ingest

SYMBOLS = list(get_settings().symbols)
WEEKLY = DEFAULT_SPECS["weekly"]


DEFAULT_GATE = GateConfig()


def gate_for(ch, cfg=DEFAULT_GATE):
    return evaluate_gate(
        n_validation=ch.n_validation,
        model_log_loss=float(ch.report.model["log_loss"]),
        baseline_log_loss={k: float(v["log_loss"]) for k, v in ch.report.baselines.items()},
        significance=ch.significance,
        champion=None,
        drift=None,
        cfg=cfg,
    )


@pytest.fixture(scope="module")
def hourly():
    end = pd.Timestamp("2024-06-30", tz="UTC")
    base = SampleSource().fetch(["ADAUSDT", "ETHUSDT", "LINKUSDT"], end - pd.Timedelta(days=80), end)
    return resample_candles(base, "15m", "1h")


@pytest.mark.slow
def test_models_trained_on_shuffled_labels_are_never_promoted(hourly):
    """Repeat over seeds and symbols: the gate must reject every model trained on labels with no signal."""
    promoted, trials = 0, 0
    for symbol in ["ADAUSDT", "ETHUSDT", "LINKUSDT"]:
        ds = make_dataset(hourly[hourly.symbol == symbol], WEEKLY)
        for seed in range(4):
            shuffled = dataclasses.replace(ds, y=np.random.default_rng(seed).permutation(ds.y))
            ch = train_challenger(shuffled, dataclasses.replace(WEEKLY, seed=seed), symbol=symbol, n_boot=300)
            promoted += gate_for(ch).passed
            trials += 1
    print(f"false promotion rate on shuffled labels: {promoted}/{trials}")
    assert promoted == 0


@pytest.mark.slow
def test_a_planted_informative_feature_leads_to_promotion(hourly):
    ds = make_dataset(hourly[hourly.symbol == "ETHUSDT"], WEEKLY)
    signal = ds.X["ret_z_4"].to_numpy()  # plant: the label follows a feature, with noise
    planted = (signal + np.random.default_rng(1).normal(0, 1.0, len(signal)) > 0).astype(float)
    ch = train_challenger(dataclasses.replace(ds, y=planted), WEEKLY, symbol="ETHUSDT", n_boot=300)
    gate = gate_for(ch)
    assert gate.passed, gate.reason
    assert ch.report.model["auc"] > 0.65


def test_schedules_have_the_documented_crons_and_ask_for_the_newest_complete_partition():
    crons = {s.name: s.cron_schedule for s in SCHEDULES}
    assert crons == {"nightly_schedule": "0 2 * * *", "weekly_schedule": "0 3 * * 0", "monthly_schedule": "0 3 1 * *"}
    sunday = datetime(2026, 11, 1, 3, 0, tzinfo=timezone.utc)
    assert latest_partition_key("nightly", sunday) == "2026-10-31"
    assert latest_partition_key("weekly", sunday) == "2026-10-25"
    assert latest_partition_key("monthly", sunday) == "2026-10-01"
    with dg.instance_for_test() as instance:
        by_name = {s.name: s for s in SCHEDULES}
        # Closed before the instance: a context built from a persistent instance opens its own from the
        # instance's ref, and left open it would stay Dagster's current one for later tests.
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=sunday) as context:
            request = by_name["weekly_schedule"](context)
        # One run for the week x every active symbol (the seed, on a new instance): a contiguous range.
        assert request.run_key == "weekly:2026-10-25"
        assert request.tags["dagster/asset_partition_range_start"] == f"2026-10-25|{SYMBOLS[0]}"
        assert request.tags["dagster/asset_partition_range_end"] == f"2026-10-25|{SYMBOLS[-1]}"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Candles for every symbol ingested through Dagster (checked day by day), resources in temp folders."""
    root = tmp_path_factory.mktemp("project")
    resources = {
        "candle_store": CandleStoreResource(base_url=str(root / "candles")),
        "training_set_io_manager": PartitionedParquetIOManager(base_url=str(root / "ts"), layout="keys"),
        "model_registry": ModelRegistryResource(artifact_root=str(root / "models"), db_url=f"sqlite:///{root}/p.db"),
    }
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SYMBOLS_NAME, SYMBOLS)
    ingest(instance, str(root / "candles"), "2024-03-01", "2024-06-09", symbols=SYMBOLS)
    return {"root": root, "resources": resources, "instance": instance}


def symbol_of(event) -> str:
    """The symbol of a materialization or check evaluation on a (time, symbol) partition."""
    return str(event.partition).split("|")[1]


IDENTIFIERS = ("version", "previous_version", "champion_before", "warm_started_from", "sha256", "seed")


def assert_reads_well(metadata):
    """What the UI shows of a model: no -1 for "none", numbers rounded to 4 significant digits, identifiers as
    text (the UI plots every number as a metric over time), parameters as a table."""
    for key, entry in metadata.items():
        value = entry.value
        assert value != -1 and "-1" != str(value), key
        if key in IDENTIFIERS:
            assert isinstance(value, str), (key, value)
        if isinstance(value, float) and value not in (0.0,) and math.isfinite(value):
            assert float(f"{value:.4g}") == value, (key, value)
        assert not isinstance(value, dict), (key, value)  # a table or text, not a JSON blob


def run_weekly(project, key):
    """One run over the week x every symbol, as the schedule asks for it."""
    return dg.materialize(
        cadence_assets["weekly"],
        instance=project["instance"],
        resources=project["resources"],
        tags=range_tags(key, key, SYMBOLS[0], SYMBOLS[-1]),
        raise_on_error=False,
    )


@pytest.mark.slow
def test_weekly_cadence_promotes_per_symbol_and_a_rejected_challenger_leaves_the_champion(project):
    registry = project["resources"]["model_registry"].get()
    first = run_weekly(project, "2024-05-26")
    assert first.success  # rejections are the gate doing its job: no step failed, the run is SUCCESS
    assert not [e for e in first.all_events if e.is_step_failure]
    champions = {symbol_of(m) for m in first.get_asset_materialization_events() if m.asset_key.path[0] == "champions"}
    assert champions == {"ETHUSDT", "DOTUSDT"}  # the sample market at this week: two symbols clear the gate
    evaluations = {symbol_of(e): e for e in first.get_asset_check_evaluations()}
    assert {e.check_name for e in evaluations.values()} == {"promotion_gate"}  # one gate per challenger
    failed = {symbol for symbol, e in evaluations.items() if not e.passed}
    assert "BTCUSDT" in failed and not failed & champions and set(evaluations) == failed | champions
    btc = evaluations["BTCUSDT"]  # the reason and every rule's verdict are on the check, as the UI shows them
    assert btc.description.startswith("rejected: ") and "beats_baselines: " in btc.description
    assert btc.metadata["beats_baselines"].value.startswith("FAILED: ")
    assert btc.metadata["enough_validation_samples"].value == "passed"
    assert any(key.startswith("beats_baselines.") for key in btc.metadata)
    assert evaluations["ETHUSDT"].description == "passed all 5 rules"
    assert registry.champion("ETHUSDT", "weekly").version == 1
    assert registry.champion("BTCUSDT", "weekly") is None  # nothing promoted, nothing serving

    meta = next(
        m
        for m in first.get_asset_materialization_events()
        if m.asset_key.path == ["models", "weekly"] and symbol_of(m) == "ETHUSDT"
    ).materialization.metadata
    for key in (
        "model_log_loss",
        "base_rate_log_loss",
        "model_auc",
        "version",
        "sha256",
        "data_window",
        "features",
        "code_version",
    ):
        assert key in meta, key
    assert_reads_well(meta)
    # The Sharpe figure says what it is net of and how it was annualised (1h bars of a 24/7 market).
    assert meta["sharpe_costs"].value == "net of 10 bps fee + 0 bps slippage per position change"
    assert meta["sharpe_annualisation"].value.startswith("crypto (24/7): 8760 1h bars a year (inferred: ")
    assert registry.champion("ETHUSDT", "weekly").info["costs"] == {"fee_bps": 10.0, "slippage_bps": 0.0}
    assert meta["version"].value == "v1" and meta["champion_before"].value == "none"
    assert "warm_started_from" not in meta  # the weekly model is trained from scratch: nothing to say
    assert meta["params"].value.startswith("| parameter | value |")
    champion_meta = next(
        m
        for m in first.get_asset_materialization_events()
        if m.asset_key.path == ["champions", "weekly"] and symbol_of(m) == "ETHUSDT"
    ).materialization.metadata
    assert_reads_well(champion_meta)
    assert champion_meta["version"].value == "v1" and champion_meta["previous_version"].value == "none (first champion)"

    second = run_weekly(project, "2024-06-02")  # ETH's next challenger fails the gate
    assert second.success
    assert not any(m.asset_key.path[0] == "champions" for m in second.get_asset_materialization_events())
    # The champion asset's newest materialization is still the promotion of v1: current, not failed.
    instance = project["instance"]
    eth_champion = instance.fetch_materializations(
        dg.AssetRecordsFilter(dg.AssetKey(["champions", "weekly"]), asset_partitions=["2024-05-26|ETHUSDT"]), limit=5
    ).records
    assert [r.run_id for r in eth_champion] == [first.run_id]
    assert eth_champion[0].asset_materialization.metadata["version"].value == "v1"
    assert "2024-06-02|ETHUSDT" not in instance.get_materialized_partitions(dg.AssetKey(["champions", "weekly"]))
    failed_mats = instance.get_event_records(
        dg.EventRecordsFilter(
            event_type=dg.DagsterEventType.ASSET_FAILED_TO_MATERIALIZE,
            asset_key=dg.AssetKey(["champions", "weekly"]),
        )
    )
    assert not failed_mats
    eth_gate = next(e for e in second.get_asset_check_evaluations() if symbol_of(e) == "ETHUSDT")
    assert not eth_gate.passed and eth_gate.description.startswith("rejected: ")
    # The gate's history holds its verdicts only: passed, then failed; no "execution failed" row.
    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey(["models", "weekly"]), "promotion_gate"), limit=100
    )
    eth_history = [r for r in history if r.partition.endswith("|ETHUSDT")]
    assert [(r.partition, r.status.value) for r in eth_history] == [
        ("2024-06-02|ETHUSDT", "FAILED"),
        ("2024-05-26|ETHUSDT", "SUCCEEDED"),
    ], eth_history
    assert all(r.status.value in ("FAILED", "SUCCEEDED") for r in history)  # no planned row left behind
    assert registry.champion("ETHUSDT", "weekly").version == 1  # the champion keeps serving
    history = registry.history("ETHUSDT", "weekly")
    assert [d.action for d in history] == ["promoted", "rejected"]
    assert history[-1].version == 2 and "beats_baselines" in history[-1].reason and history[-1].previous_champion == 1
    second_meta = next(
        m
        for m in second.get_asset_materialization_events()
        if m.asset_key.path == ["models", "weekly"] and symbol_of(m) == "ETHUSDT"
    ).materialization.metadata
    assert second_meta["champion_before"].value == "v1" and second_meta["gate"].value.startswith("rejected")
    assert_reads_well(second_meta)


@pytest.mark.slow
def test_a_failed_cadence_keeps_every_champion_and_records_it(project, tmp_path):
    resources = dict(project["resources"], candle_store=CandleStoreResource(base_url=str(tmp_path / "empty")))
    result = dg.materialize(
        cadence_assets["weekly"],
        tags=range_tags("2024-06-09", "2024-06-09", SYMBOLS[0], SYMBOLS[-1]),
        instance=project["instance"],
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert (
        "missing" in failure.step_failure_data.error.message
        and "alphapulse ingest" in failure.step_failure_data.error.message
    )
    registry = project["resources"]["model_registry"].get()
    kept = [d for d in registry.history("ETHUSDT", "weekly") if d.action == "kept"]
    assert kept and kept[-1].version == 1 and "training set failed" in kept[-1].reason
    assert registry.champion("ETHUSDT", "weekly").version == 1


@pytest.mark.slow
def test_drifted_input_requests_exactly_one_retrain_within_the_cooldown(project, monkeypatch, tmp_path):
    monkeypatch.setenv("ALPHAPULSE_PLATFORM_DB_URL", f"sqlite:///{tmp_path}/platform.db")  # breakers live here
    instance = dg.DagsterInstance.ephemeral()

    instance.add_dynamic_partitions(SYMBOLS_NAME, SYMBOLS)

    days = iter(pd.date_range("2024-06-01", periods=30, freq="D").strftime("%Y-%m-%d"))

    def fail_drift_check(symbol):  # a failed verdict on a new day each time, as the daily runs report them
        day = next(days)
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(["drift"]),
                check_name="feature_drift",
                passed=False,
                metadata={"max_psi": 0.9, "symbol": symbol},
                partition=f"{day}|{symbol}",
            )
        )

    t0 = 1_800_000_000.0
    clock = [t0]
    monkeypatch.setattr(drift_assets, "clock", lambda: clock[0])
    fail_drift_check("ETHUSDT")
    ctx = dg.build_sensor_context(instance=instance, cursor=None)
    requests = drift_assets.drift_retrain_sensor(ctx)
    assert len(requests) == 1 and requests[0].tags["alphapulse/symbol"] == "ETHUSDT"
    # The weekly cadence's job for that symbol alone: its latest week x ETHUSDT.
    assert requests[0].tags["dagster/asset_partition_range_start"].endswith("|ETHUSDT")
    assert (
        requests[0].tags["dagster/asset_partition_range_end"] == requests[0].tags["dagster/asset_partition_range_start"]
    )

    for hours in (1, 6, 23):  # drift persists: the check keeps failing, but the cooldown holds
        clock[0] = t0 + 3600 * hours
        fail_drift_check("ETHUSDT")
        ctx = dg.build_sensor_context(instance=instance, cursor=ctx.cursor)
        assert isinstance(drift_assets.drift_retrain_sensor(ctx), dg.SkipReason)
    assert json.loads(ctx.cursor)["last_request"]["ETHUSDT"] == t0

    clock[0] = t0 + 24 * 3600 + 1
    fail_drift_check("ETHUSDT")
    ctx = dg.build_sensor_context(instance=instance, cursor=ctx.cursor)
    assert len(drift_assets.drift_retrain_sensor(ctx)) == 1  # a day later, one more

    # While the training breaker is forced open, the retrain waits and is not counted against the cooldown.
    from alphapulse_assets.recovery.breaker_store import BreakerStore

    BreakerStore(f"sqlite:///{tmp_path}/platform.db").force_open(
        "training", by="test", reason="maintenance", now=clock[0]
    )
    clock[0] += 2 * 24 * 3600
    fail_drift_check("ETHUSDT")
    ctx = dg.build_sensor_context(instance=instance, cursor=ctx.cursor)
    skipped = drift_assets.drift_retrain_sensor(ctx)
    assert isinstance(skipped, dg.SkipReason) and "training" in skipped.skip_message
    assert json.loads(ctx.cursor)["last_request"]["ETHUSDT"] == t0 + 24 * 3600 + 1


@pytest.mark.slow
def test_a_nightly_backfill_runs_many_days_in_one_run_in_order(project):
    """Six nightly partitions in one run: one version per symbol per day, warm-started along the chain."""
    result = dg.materialize(
        cadence_assets["nightly"],
        instance=project["instance"],
        resources=project["resources"],
        tags=range_tags("2024-06-01", "2024-06-06", SYMBOLS[0], SYMBOLS[-1]),
        raise_on_error=False,
    )
    assert result.success  # a backfill's gate results are reported (WARN), not blocking
    registry = project["resources"]["model_registry"].get()
    for symbol in SYMBOLS:
        versions = [v for v in registry.versions(symbol, "nightly") if v.info.get("run_id") == result.run_id]
        assert [v.info["partition"] for v in versions] == [f"2024-06-0{d}" for d in range(1, 7)]
        promoted = [d.version for d in registry.history(symbol, "nightly") if d.action == "promoted"]
        for later in versions[1:]:  # once a champion exists, every later day is warm-started from it
            champion_then = [v for v in promoted if v < later.version]
            assert later.info["warm_started_from"] == (champion_then[-1] if champion_then else None)
    checks = result.get_asset_check_evaluations()  # one verdict per day and symbol, each on its own partition
    assert checks and all(c.severity == dg.AssetCheckSeverity.WARN for c in checks)
    assert {c.check_name for c in checks} == {"promotion_gate"}
    assert all(c.description.startswith("backfill: ") for c in checks)
    every = {f"2024-06-0{d}|{s}" for d in range(1, 7) for s in SYMBOLS}
    assert {c.partition for c in checks} == every and len(checks) == len(every)
    mats = [m for m in result.get_asset_materialization_events() if m.asset_key.path[0] == "models"]
    assert {m.partition for m in mats} == every and len(mats) == len(every)  # one each: no second, automatic one


@pytest.mark.slow
def test_live_scores_right_after_a_real_cadence_run_say_no_bar_is_labelled_yet(project):
    """Champions promoted by a real weekly run have served no bar yet: live scores say so and show no number."""
    from alphapulse_assets.training.live_assets import live_scores

    assert run_weekly(project, "2024-05-26").success
    registry = project["resources"]["model_registry"].get()
    champions = {symbol: registry.champion(symbol, "weekly") for symbol in SYMBOLS}
    assert any(champions.values())
    resources = {k: project["resources"][k] for k in ("candle_store", "model_registry")}
    result = dg.materialize(
        [live_scores],
        instance=project["instance"],
        resources=resources,
        tags={"dagster/asset_partition_range_start": SYMBOLS[0], "dagster/asset_partition_range_end": SYMBOLS[-1]},
    )
    shown = {(m.asset_key, m.partition): m.materialization.metadata for m in result.get_asset_materialization_events()}
    for symbol, champion in champions.items():
        metadata = shown[(dg.AssetKey(["live_scores", "weekly"]), symbol)]
        assert metadata["n_labelled"].value == 0
        assert not [k for k in metadata if k.startswith(("live_", "window_", "p_value"))]
        if champion is None:
            assert metadata["status"].value == "no champion"
        else:
            assert metadata["status"].value.startswith(f"no labelled bars since v{champion.version} became champion")
            assert metadata["champion"].value == f"v{champion.version}"
    assert not [d for d in registry.history(None, "weekly") if d.action == "rolled_back"]


@pytest.mark.slow
def test_drift_reads_the_candles_once_per_run_whatever_the_number_of_symbols(project, monkeypatch):
    """Every symbol's drift from one listing and one read of the week's candles (one read per symbol made the
    daily drift run quadratic in symbols), with each symbol's verdict on its own asset and check."""
    from alphapulse_assets.market_data.storage import ParquetPartitionStore

    registry = project["resources"]["model_registry"].get()
    if registry.champion("ETHUSDT", "weekly") is None:  # a real champion, with its real training reference
        assert run_weekly(project, "2024-05-26").success
    calls = {"read_days": 0, "listings": 0}
    read_days, segments = ParquetPartitionStore.read_days, ParquetPartitionStore._segments

    def counting_read(self, *args, **kwargs):
        calls["read_days"] += 1
        return read_days(self, *args, **kwargs)

    def counting_listing(self, *args, **kwargs):
        calls["listings"] += 1
        return segments(self, *args, **kwargs)

    monkeypatch.setattr(ParquetPartitionStore, "read_days", counting_read)
    monkeypatch.setattr(ParquetPartitionStore, "_segments", counting_listing)
    result = dg.materialize(
        drift_assets.drift_assets,
        tags=range_tags("2024-06-08", "2024-06-08", SYMBOLS[0], SYMBOLS[-1]),
        instance=project["instance"],
        resources=project["resources"],
    )
    assert result.success
    assert calls == {"read_days": 1, "listings": 2}  # the week's days: listed once, read once, for 5 symbols
    checks = {symbol_of(e): e for e in result.get_asset_check_evaluations()}
    assert set(checks) == set(SYMBOLS) and {e.check_name for e in checks.values()} == {"feature_drift"}
    crowned = {s for s in SYMBOLS if registry.champion(s, "weekly") is not None}
    assert crowned and crowned != set(SYMBOLS)
    meta = {symbol_of(m): m.materialization.metadata for m in result.get_asset_materialization_events()}
    for symbol in crowned:  # compared with its champion's reference, on a week of hourly rows
        assert meta[symbol]["reference_version"].value == registry.champion(symbol, "weekly").version
        assert meta[symbol]["recent_rows"].value >= 100 and meta[symbol]["max_psi"].value >= 0
        assert checks[symbol].description.startswith("max PSI ")
    for symbol in set(SYMBOLS) - crowned:
        assert checks[symbol].passed and "no weekly champion" in checks[symbol].description


@pytest.mark.slow
def test_a_nightly_rerun_of_a_window_its_champion_already_saw_is_rejected_not_a_failed_training(hourly, tmp_path):
    """The same nightly partition trained again after its challenger was promoted (a schedule tick after an
    operator's launch of that day): no bar is newer than the champion's data, so there is nothing to update it
    with. The challenger is trained afresh and gated like any other (against the champion on rows neither
    trained on): a verdict, not a failed training that alerts (it was a DataValidationError)."""
    from alphapulse_assets.training.cadence import fit_symbol
    from alphapulse_assets.training.registry import ModelRegistry

    nightly = dataclasses.replace(DEFAULT_SPECS["nightly"], timeframe="1h")  # warm-startable (sgd)
    ds = make_dataset(hourly[hourly.symbol == "ETHUSDT"], nightly)
    first = fit_symbol(ds, nightly, DEFAULT_GATE, symbol="ETHUSDT", champion=None, champion_model=None)
    registry = ModelRegistry(str(tmp_path / "models"), f"sqlite:///{tmp_path / 'platform.db'}")
    champion = registry.register(
        "ETHUSDT",
        "nightly",
        first.challenger.model,
        info={"data_end": str(first.challenger.data_end), "features": first.features},
    )
    # Updating it from this window is impossible: it has seen every training bar (the step failed here before).
    with pytest.raises(NothingNewerThanChampion):
        train_challenger(
            ds,
            nightly,
            symbol="ETHUSDT",
            warm_model=registry.load(champion),
            warm_version=champion.version,
            warm_data_end=pd.Timestamp(champion.info["data_end"]),
        )

    again = fit_symbol(
        ds, nightly, DEFAULT_GATE, symbol="ETHUSDT", champion=champion, champion_model=registry.load(champion)
    )
    assert again.challenger.warm_started_from is None  # trained afresh, not from the champion
    # ... and judged like any challenger, against the champion too, on rows neither has trained on.
    [rule] = [r for r in again.gate.rules if r.rule == "not_worse_than_champion"]
    assert rule.metadata["champion_version"] == champion.version, rule


@pytest.mark.slow
def test_a_run_over_some_symbols_reads_their_rows_of_the_training_set_a_run_over_all_of_them_wrote(project):
    """An operator re-runs a few symbols' models (a partition selection in the UI, the training set not selected)
    after the cadence run over every symbol built the training set: the models step reads those symbols' rows of
    that run's file (it failed with "partition ... has not been written"), and trains only them."""
    key, some = "2024-05-26", SYMBOLS[1:3]
    assert run_weekly(project, key).success
    again = dg.materialize(
        cadence_assets["weekly"],
        selection=[model_key("weekly")],
        instance=project["instance"],
        resources=project["resources"],
        tags=range_tags(key, key, some[0], some[-1]),
        raise_on_error=False,
    )
    assert again.success, [e.step_failure_data.error.message for e in again.all_events if e.is_step_failure]
    trained = [m for m in again.get_asset_materialization_events() if m.asset_key == model_key("weekly")]
    assert sorted(symbol_of(m) for m in trained) == sorted(some)
    assert all(m.partition.startswith(f"{key}|") for m in trained)
    # Another window's file is never read for this one: a week nobody built still fails, naming what is missing.
    missing = dg.materialize(
        cadence_assets["weekly"],
        selection=[model_key("weekly")],
        instance=project["instance"],
        resources=project["resources"],
        tags=range_tags("2024-05-19", "2024-05-19", some[0], some[-1]),
        raise_on_error=False,
    )
    assert not missing.success
    failure = next(e for e in missing.all_events if e.is_step_failure).step_failure_data.error
    assert "training_sets/weekly 2024-05-19+" in failure.message and "has not been written" in failure.message
