"""Live scores of champions: equal to an independent computation, shadows, the rollback rule, no invented numbers.

Champions come from the weekly cadence's own per-symbol turn (``cadence.train_symbol`` and ``promote``, what
the models step runs) on the bundled sample market, with the registry's clock set to the times the schedule
would have run them, so that bars arrive after each promotion.
"""

import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from alphapulse_assets.alerting.alert_store import RAISED, RESOLVED
from alphapulse_assets.alerting.alerts import build_router_from_env
from alphapulse_assets.market_data.resample import resample_candles
from alphapulse_assets.market_data.resources import CandleStoreResource
from alphapulse_assets.market_data.sources.sample import SampleSource
from alphapulse_assets.market_data.storage import ParquetPartitionStore
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training import live_assets, live_scoring
from alphapulse_assets.training.assets import ModelRegistryResource
from alphapulse_assets.training.cadence import promote, train_symbol
from alphapulse_assets.training.challenger import DEFAULT_SPECS, make_dataset
from alphapulse_assets.training.promotion import GateConfig
from alphapulse_assets.training.registry import ModelRegistry
from alphapulse_assets_tests.table_reader import read_table

WEEKLY = DEFAULT_SPECS["weekly"]
SYMBOL = "DOTUSDT"  # its weekly challenger for 2024-06-16 passes the gate on the sample market
FIRST_TURN = pd.Timestamp("2024-06-16", tz="UTC")  # partition end; the schedule runs at 03:00
SECOND_TURN = pd.Timestamp("2024-06-23", tz="UTC")
END = pd.Timestamp("2024-08-20", tz="UTC")
CFG = live_scoring.LiveConfig()  # the defaults: 500-bar window, judged on >= 200 bars, alpha 0.01


@pytest.fixture(scope="module")
def hourly():
    base = SampleSource().fetch([SYMBOL], pd.Timestamp("2024-04-01", tz="UTC"), END)
    return resample_candles(base, "15m", "1h")


class Clock:
    def __init__(self, at):
        self.at = pd.Timestamp(at)

    def __call__(self):
        return self.at.to_pydatetime()


def weekly_turn(registry, ds, partition_end, gate=None):
    """One weekly turn for SYMBOL, as the models step runs it: train, gate, register, promote if it passed."""
    rows = ds.between(partition_end - pd.Timedelta(days=WEEKLY.window_days), partition_end)
    out = train_symbol(
        registry,
        rows,
        WEEKLY,
        gate or GateConfig(),
        symbol=SYMBOL,
        partition=str(partition_end.date()),
        code_version="test",
    )
    if out.gate.passed:
        promote(registry, SYMBOL, "weekly", out.version.version, str(partition_end.date()))
    return out


@pytest.fixture(scope="module")
def trained(hourly, tmp_path_factory):
    """v1 promoted by the 2024-06-16 turn (run 2024-06-17 03:00); v2 rejected by the 2024-06-23 turn."""
    root = tmp_path_factory.mktemp("trained")
    clock = Clock(FIRST_TURN + pd.Timedelta(hours=27))
    registry = ModelRegistry(str(root / "models"), f"sqlite:///{root}/platform.db", clock=clock)
    ds = make_dataset(hourly, WEEKLY)
    first = weekly_turn(registry, ds, FIRST_TURN)
    assert first.gate.passed, first.gate.reason
    clock.at = SECOND_TURN + pd.Timedelta(hours=27)
    # The gate of this turn asks for more validation rows than a week has: a real rejection, a shadow from now on.
    second = weekly_turn(registry, ds, SECOND_TURN, GateConfig(min_validation_samples=10**6))
    assert not second.gate.passed and registry.champion(SYMBOL, "weekly").version == 1
    return {"root": root, "ds": ds, "at": clock.at}


@pytest.fixture
def champion(trained, tmp_path):
    """A copy of the trained registry (files and database) for one test, its clock where the turns left it."""
    root = tmp_path / "state"
    shutil.copytree(trained["root"], root)
    clock = Clock(trained["at"])
    db = f"sqlite:///{root}/platform.db"
    registry = ModelRegistry(str(root / "models"), db, clock=clock)
    return {"registry": registry, "clock": clock, "db": db, "ds": trained["ds"], "root": root}


def candles_until(hourly, end):
    """The bars that had closed at ``end``."""
    return hourly[hourly["timestamp"] + pd.Timedelta(hours=1) <= pd.Timestamp(end).tz_convert("UTC")]


@pytest.mark.slow
def test_live_scores_equal_an_independent_computation(champion, hourly):
    registry = champion["registry"]
    now = pd.Timestamp("2024-07-20", tz="UTC")
    scores = live_scoring.score_symbol(registry, candles_until(hourly, now), WEEKLY, SYMBOL, CFG, now)

    # Expected, computed here: bars that closed after the promotion (2024-06-17 03:00) and that v1 did not train on.
    v1 = registry.get(SYMBOL, "weekly", 1)
    promoted_at = pd.Timestamp(registry.champion_changes(SYMBOL, "weekly")[0].at)
    ds = make_dataset(candles_until(hourly, now), WEEKLY)
    data_start, data_end = pd.Timestamp(v1.info["data_start"]), pd.Timestamp(v1.info["data_end"])
    live = ((ds.timestamps + pd.Timedelta(hours=1) >= promoted_at) & (ds.timestamps > data_end)).to_numpy()
    train = ((ds.timestamps >= data_start) & (ds.timestamps <= data_end)).to_numpy()
    y, fwd, last = ds.y[live], ds.forward[live], ds.last_dir[live]
    p = registry.load(v1).predict_proba(ds.X.to_numpy()[live])[:, 1]
    base_rate = np.full(len(y), ds.y[train].mean())
    rate = {d: (ds.y[train & (ds.last_dir == d)].sum() + 1) / ((train & (ds.last_dir == d)).sum() + 2) for d in (0, 1)}
    persistence = np.where(last > 0, rate[1], rate[0])
    position = (p >= 0.5).astype(float)
    net = position * fwd - np.abs(np.diff(np.r_[0.0, position])) * 10 / 1e4
    expected_baseline = min(log_loss(y, base_rate, labels=[0, 1]), log_loss(y, persistence, labels=[0, 1]))

    got = scores.since_promotion
    assert got["n"] == live.sum() == len(y) > 300
    assert got["first_bar"] == ds.timestamps[live].min()
    assert got["log_loss"] == pytest.approx(log_loss(y, p, labels=[0, 1]), rel=1e-9)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, p >= 0.5), rel=1e-12)
    assert got["sharpe"] == pytest.approx(net.mean() / net.std(ddof=1) * np.sqrt(365 * 24), rel=1e-9)
    assert got["baseline_log_loss"] == pytest.approx(expected_baseline, rel=1e-9)
    # The per-bar frame: the champion's predictions on exactly those bars, named for what they hold.
    bars = scores.frame[scores.frame["role"] == "champion"]
    assert list(bars.columns[:9]) == list(live_scoring.FRAME_COLUMNS)
    assert (bars["version"] == 1).all() and (bars["symbol"] == SYMBOL).all() and (bars["cadence"] == "weekly").all()
    np.testing.assert_allclose(bars["prob_up"], p)
    # The rolling window: the newest 500 labelled bars.
    assert scores.window["n"] == CFG.window_bars
    assert scores.window["log_loss"] == pytest.approx(log_loss(y[-500:], p[-500:], labels=[0, 1]), rel=1e-9)


@pytest.mark.slow
def test_a_good_champion_is_not_rolled_back_and_its_shadow_is_scored_beside_it(champion, hourly):
    registry = champion["registry"]
    now = pd.Timestamp("2024-07-20", tz="UTC")
    scores = live_scoring.score_symbol(registry, candles_until(hourly, now), WEEKLY, SYMBOL, CFG, now)
    router = build_router_from_env(champion["db"])
    action = live_scoring.apply_rule(registry, router, scores, CFG)

    assert scores.verdict.judged and not scores.verdict.underperforming, scores.verdict.reason
    assert action == "none" and router.store.open_alerts() == []
    assert registry.champion(SYMBOL, "weekly").version == 1
    assert [d.action for d in registry.history(SYMBOL, "weekly")] == ["promoted", "rejected"]
    # v2 (rejected) in shadow: scored on the bars since v1's promotion that it did not train on, v1 beside it.
    shadow = scores.shadows[2]
    shadow_bars = scores.frame[scores.frame["role"] == "shadow"]
    assert (shadow_bars["version"] == 2).all() and shadow["n"] == len(shadow_bars) > 300
    assert shadow["gate"] == "rejected"
    assert shadow_bars["bar_time"].min() > pd.Timestamp(registry.get(SYMBOL, "weekly", 2).info["data_end"])
    v2 = registry.load(registry.get(SYMBOL, "weekly", 2))
    ds = make_dataset(candles_until(hourly, now), WEEKLY)
    at = ds.timestamps.isin(shadow_bars["bar_time"]).to_numpy()
    np.testing.assert_allclose(shadow_bars["prob_up"], v2.predict_proba(ds.X.to_numpy()[at])[:, 1])
    assert shadow["log_loss"] == pytest.approx(log_loss(ds.y[at], shadow_bars["prob_up"], labels=[0, 1]), rel=1e-9)
    champion_same_bars = scores.frame[
        (scores.frame["role"] == "champion") & scores.frame["bar_time"].isin(shadow_bars["bar_time"])
    ]
    assert shadow["champion_log_loss"] == pytest.approx(
        log_loss(champion_same_bars["label"], champion_same_bars["prob_up"], labels=[0, 1]), rel=1e-9
    )


def inverted_model(ds, end):
    """A real scikit-learn model that says the opposite of what the training window taught, confidently."""
    rows = ds.between(end - pd.Timedelta(days=WEEKLY.window_days), end)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(rows.X.to_numpy(), 1 - rows.y)
    model[-1].coef_ *= 20
    model[-1].intercept_ *= 20
    return model, rows


def plant_bad_champion(champion):
    registry, clock = champion["registry"], champion["clock"]
    clock.at = SECOND_TURN + pd.Timedelta(hours=28)
    model, rows = inverted_model(champion["ds"], SECOND_TURN)
    mv = registry.register(
        SYMBOL,
        "weekly",
        model,
        info={"data_start": str(rows.timestamps.min()), "data_end": str(rows.timestamps.max()), "gate_passed": True},
    )
    registry.promote(mv, reason="planted: predicts the opposite", by="test")
    return mv


@pytest.mark.slow
def test_a_champion_bad_on_new_data_is_alerted_once_rolled_back_and_the_alert_resolves_when_it_recovers(
    champion, hourly
):
    registry, clock = champion["registry"], champion["clock"]
    bad = plant_bad_champion(champion)
    router = build_router_from_env(champion["db"])
    key = live_scoring.alert_key(SYMBOL, "weekly")

    # Two days after the bad promotion: too few labelled bars to judge, nothing happens yet.
    now = SECOND_TURN + pd.Timedelta(days=3)
    early = live_scoring.score_symbol(registry, candles_until(hourly, now), WEEKLY, SYMBOL, CFG, now)
    assert not early.verdict.judged and "judged on 200" in early.verdict.reason
    assert live_scoring.apply_rule(registry, router, early, CFG) == "none"
    assert registry.champion(SYMBOL, "weekly").version == bad.version

    now = pd.Timestamp("2024-07-20", tz="UTC")
    clock.at = now
    scores = live_scoring.score_symbol(registry, candles_until(hourly, now), WEEKLY, SYMBOL, CFG, now)
    assert scores.verdict.underperforming and scores.verdict.version == bad.version
    assert scores.verdict.model_log_loss > scores.verdict.baseline_log_loss
    action = live_scoring.apply_rule(registry, router, scores, CFG)
    assert action == f"rolled back v{bad.version} -> v1"
    assert registry.champion(SYMBOL, "weekly").version == 1
    last = registry.history(SYMBOL, "weekly")[-1]
    assert (last.action, last.version, last.previous_champion, last.by) == (
        "rolled_back",
        1,
        bad.version,
        "live-scoring",
    )
    assert "live log loss" in last.reason and "p = " in last.reason
    alert = router.store.open_alert(key)
    assert alert is not None and f"v{bad.version}" in alert.title and "rolled back" in alert.body

    # The same day again: v1 has no bars since its return, so no second rollback and no second alert.
    again = live_scoring.score_symbol(registry, candles_until(hourly, now), WEEKLY, SYMBOL, CFG, now)
    assert not again.verdict.judged and live_scoring.apply_rule(registry, router, again, CFG) == "none"
    assert len(router.store.history(key, RAISED)) == 1 and router.store.open_alert(key) is not None

    # A month later v1 has been judged on its own bars since the rollback and is fine: the episode is over.
    later = live_scoring.score_symbol(registry, hourly, WEEKLY, SYMBOL, CFG, END)
    assert later.verdict.judged and not later.verdict.underperforming and later.verdict.version == 1
    assert later.since_promotion["first_bar"] + pd.Timedelta(hours=1) >= now
    assert live_scoring.apply_rule(registry, router, later, CFG).startswith("resolved")
    assert router.store.open_alert(key) is None and len(router.store.history(key, RESOLVED)) == 1


@pytest.mark.slow
def test_a_bad_champion_with_no_earlier_champion_is_alerted_not_rolled_back(hourly, tmp_path):
    db = f"sqlite:///{tmp_path}/platform.db"
    clock = Clock(SECOND_TURN + pd.Timedelta(hours=28))
    registry = ModelRegistry(str(tmp_path / "models"), db, clock=clock)
    model, rows = inverted_model(make_dataset(hourly, WEEKLY), SECOND_TURN)
    mv = registry.register(
        SYMBOL, "weekly", model, info={"data_start": str(rows.timestamps.min()), "data_end": str(rows.timestamps.max())}
    )
    registry.promote(mv, reason="planted", by="test")
    now = pd.Timestamp("2024-07-20", tz="UTC")
    scores = live_scoring.score_symbol(registry, candles_until(hourly, now), WEEKLY, SYMBOL, CFG, now)
    router = build_router_from_env(db)
    action = live_scoring.apply_rule(registry, router, scores, CFG)
    assert action == "no earlier eligible champion: v1 keeps serving"
    assert registry.champion(SYMBOL, "weekly").version == 1
    alert = router.store.open_alert(live_scoring.alert_key(SYMBOL, "weekly"))
    assert alert is not None and alert.severity.value == "critical"


@pytest.mark.slow
def test_no_labelled_bar_since_the_promotion_says_so_and_shows_no_score(champion, hourly):
    fresh = champion["registry"]
    now = FIRST_TURN + pd.Timedelta(hours=27)  # v1 just promoted: the newest stored bar closes as it takes office
    scores = live_scoring.score_symbol(fresh, candles_until(hourly, now), WEEKLY, SYMBOL, CFG, now)
    assert scores.since_promotion == {"n": 0} and not scores.verdict.judged
    assert scores.status.startswith("no labelled bars since v1 became champion at 2024-06-17 03:00 UTC")
    metadata = live_assets.score_metadata(scores, CFG, None)
    assert metadata["n_labelled"].value == 0
    assert not [k for k in metadata if k.startswith(("live_", "p_value"))]  # no number invented
    assert "no labelled bars" in metadata["status"].value


def _store_candles(root, hourly):
    store = ParquetPartitionStore(str(root / "candles"))
    days = [str(d.date()) for d in pd.date_range(hourly["timestamp"].min().floor("D"), END, freq="D", inclusive="left")]
    store.write_days("candles_1h", pa.Table.from_pandas(hourly, preserve_index=False), days)
    return str(root / "candles")


@pytest.mark.slow
def test_live_scores_asset_plots_scores_rolls_back_and_shows_it_on_the_champion(champion, hourly, monkeypatch):
    bad = plant_bad_champion(champion)
    root = champion["root"]
    candles_url = _store_candles(root, candles_until(hourly, pd.Timestamp("2024-07-20", tz="UTC")))
    monkeypatch.setattr(live_assets, "clock", lambda: pd.Timestamp("2024-07-20", tz="UTC").to_pydatetime())
    monkeypatch.setenv("ALPHAPULSE_HOME", str(root / "home"))
    resources = {
        "candle_store": CandleStoreResource(base_url=candles_url),
        "model_registry": ModelRegistryResource(artifact_root=str(root / "models"), db_url=champion["db"]),
    }
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("symbols", ["BTCUSDT", SYMBOL])
    result = dg.materialize(
        [live_assets.live_scores],
        instance=instance,
        resources=resources,
        tags={"dagster/asset_partition_range_start": "BTCUSDT", "dagster/asset_partition_range_end": SYMBOL},
    )
    assert result.success
    by_key = {(m.asset_key, m.partition): m.materialization.metadata for m in result.get_asset_materialization_events()}
    mine = by_key[(dg.AssetKey(["live_scores", "weekly"]), SYMBOL)]
    assert mine["champion"].value == f"v{bad.version}" and mine["n_labelled"].value > 200
    for key in (
        "live_log_loss",
        "live_baseline_log_loss",
        "live_accuracy",
        "live_sharpe_net_of_fees",
        "p_value_worse_than_baseline",
    ):
        assert isinstance(mine[key].value, float), key  # numbers: the UI plots them across materializations
    assert mine["live_log_loss"].value > mine["live_baseline_log_loss"].value
    assert mine["action"].value == f"rolled back v{bad.version} -> v1"
    assert (
        mine["costs"].value.startswith("10 bps fee + 0 bps slippage") and "crypto" in mine["sharpe_annualisation"].value
    )
    assert f"champion since promotion (v{bad.version})" in mine["scores"].value
    assert pd.read_parquet(mine["per_bar"].value)["role"].isin(["champion", "shadow"]).all()
    other = by_key[(dg.AssetKey(["live_scores", "weekly"]), "BTCUSDT")]
    assert other["status"].value == "no champion" and "live_log_loss" not in other
    # The rollback shows on the champion asset, with who and why.
    event = instance.get_latest_materialization_event(dg.AssetKey(["champions", "weekly"]))
    shown = event.asset_materialization.metadata
    assert event.asset_materialization.partition.endswith(f"|{SYMBOL}")  # on the symbol's row of the grid
    assert shown["change"].value == "rolled_back" and shown["by"].value == "live-scoring"
    assert shown["version"].value == "v1" and "live log loss" in shown["reason"].value


def test_who_was_champion_when_follows_promotions_rollbacks_and_fall_backs():
    from datetime import datetime, timezone

    from alphapulse_assets.training.registry import Decision

    def at(day, action, version):
        return Decision(SYMBOL, "weekly", version, action, None, "", "", datetime(2024, 6, day, tzinfo=timezone.utc))

    history = live_scoring.stints(
        [
            at(1, "promoted", 1),
            at(3, "promoted", 2),
            at(5, "rolled_back", 1),
            at(7, "fell_back", None),
            at(9, "promoted", 3),
        ]
    )
    day = lambda d: pd.Timestamp(2024, 6, d, tz="UTC")  # noqa: E731
    assert history == [
        live_scoring.Stint(1, day(1), day(3)),
        live_scoring.Stint(2, day(3), day(5)),
        live_scoring.Stint(1, day(5), day(7)),  # from the fall-back on, no champion served until v3
        live_scoring.Stint(3, day(9), None),
    ]


def test_live_scoring_runs_daily_after_the_ingestion():
    from datetime import datetime, timezone

    assert live_assets.live_scoring_schedule.cron_schedule == "45 3 * * *"
    with dg.instance_for_test() as instance:
        when = datetime(2026, 11, 2, 3, 45, tzinfo=timezone.utc)
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as context:
            request = live_assets.live_scoring_schedule(context)
    assert request.run_key == "live:2026-11-02" and request.job_name in (None, "live_scoring")
    symbols = get_settings().symbols  # every active symbol in one run: the seed, on a new instance
    assert request.tags["dagster/asset_partition_range_start"] == symbols[0]
    assert request.tags["dagster/asset_partition_range_end"] == symbols[-1]


@pytest.mark.slow
def test_replayed_predictions_equal_what_the_predictor_serves_for_the_same_bars(champion, hourly):
    from alphapulse_assets.serving.predictor import Predictor

    now = pd.Timestamp("2024-07-20", tz="UTC")
    candles = candles_until(hourly, now)
    url = _store_candles(champion["root"], candles)
    scores = live_scoring.score_symbol(champion["registry"], candles, WEEKLY, SYMBOL, CFG, now)
    replayed = scores.frame[scores.frame["role"] == "champion"].set_index("bar_time")["prob_up"]
    predictor = Predictor(registry=champion["registry"], candle_store=url)
    served, problems = predictor.predict_days("weekly", ["2024-07-10", "2024-07-11"], [SYMBOL])
    assert not problems and (served["version"] == 1).all()
    served = served.set_index("bar_time")["prob_up"]
    common = served.index.intersection(replayed.index)
    assert len(common) == len(served) == 48
    np.testing.assert_allclose(replayed.loc[common].to_numpy(), served.loc[common].to_numpy(), rtol=1e-12)


# -- promotion on live evidence -----------------------------------------------------------------------------

THIRD_TURN = pd.Timestamp("2024-06-30", tz="UTC")


def bad_champion_and_a_rejected_challenger(champion):
    """v3 (planted, predicts the opposite) champion from 2024-06-24 04:00; v4 trained by the 2024-06-30 turn
    (run 2024-07-01 03:00) and rejected by its gate: a shadow from then on."""
    bad = plant_bad_champion(champion)
    champion["clock"].at = THIRD_TURN + pd.Timedelta(hours=27)
    out = weekly_turn(champion["registry"], champion["ds"], THIRD_TURN, GateConfig(min_validation_samples=10**6))
    assert not out.gate.passed and champion["registry"].champion(SYMBOL, "weekly").version == bad.version
    return bad, out.version


@pytest.mark.slow
def test_a_shadow_better_than_the_champion_live_is_shown_so_and_promoted_from_the_command_line(
    champion, hourly, tmp_path, monkeypatch, capsys
):
    import os
    import subprocess
    import sys

    from alphapulse_assets.cli import main

    registry = champion["registry"]
    bad, shadow = bad_champion_and_a_rejected_challenger(champion)
    now = pd.Timestamp("2024-07-20", tz="UTC")
    scores = live_scoring.score_symbol(registry, candles_until(hourly, now), WEEKLY, SYMBOL, CFG, now)
    evidence = scores.shadows[shadow.version]["evidence"]
    assert evidence.beats and evidence.n >= CFG.min_bars and evidence.p_value < CFG.alpha
    # Only bars that closed after the shadow was registered, paired with the champion's on the same bars.
    first = scores.frame[(scores.frame["role"] == "shadow") & (scores.frame["bar_time"] >= THIRD_TURN)]
    assert evidence.n == (first["bar_time"] + pd.Timedelta(hours=1) >= THIRD_TURN + pd.Timedelta(hours=27)).sum()
    assert evidence.edge == pytest.approx(evidence.champion_log_loss - evidence.shadow_log_loss) and evidence.edge > 0
    metadata = live_assets.score_metadata(scores, CFG, None)
    assert metadata["best_shadow_log_loss_edge"].value > 0
    assert metadata["best_shadow_p_value_better"].value < CFG.alpha
    assert f"shadow v{shadow.version} (rejected)" in metadata["scores"].value
    assert "beats champion live" in metadata["scores"].value and "| yes" in metadata["scores"].value
    assert "nan" not in metadata["scores"].value  # a figure that does not apply is a dash

    # From the command line, as an operator runs it: refused while too few bars are stored, promoted once they are.
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("")
    env = os.environ | {
        "DAGSTER_HOME": str(home),
        "ALPHAPULSE_PLATFORM_DB_URL": champion["db"],
        "ALPHAPULSE_STORE__MODELS_URL": str(champion["root"] / "models"),
        "ALPHAPULSE_STORE__CANDLES_URL": str(tmp_path / "candles"),
        "USER": "alice",
    }
    command = [sys.executable, "-m", "alphapulse_assets.cli", "models", "promote-shadow", SYMBOL, "weekly"]
    command += [str(shadow.version), "--reason", "beats the planted champion live"]
    _store_candles(tmp_path, candles_until(hourly, THIRD_TURN + pd.Timedelta(days=3)))
    early = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert early.returncode == 1, early.stderr
    assert "not promoted" in early.stderr and "(judged on 200)" in early.stderr
    assert registry.champion(SYMBOL, "weekly").version == bad.version

    _store_candles(tmp_path, candles_until(hourly, now))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"champion is now v{shadow.version} (was v{bad.version})" in done.stdout
    assert registry.champion(SYMBOL, "weekly").version == shadow.version
    last = registry.history(SYMBOL, "weekly")[-1]
    assert (last.action, last.version, last.previous_champion, last.by) == (
        "promoted",
        shadow.version,
        bad.version,
        "alice",
    )
    assert last.reason.startswith("promoted on live evidence (") and "p = " in last.reason
    assert last.reason.endswith("beats the planted champion live")

    # ... shows on the champion asset of the instance the command ran on, with who and why ...
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["champions", "weekly"]))
    shown = event.asset_materialization.metadata
    assert shown["change"].value == "promoted" and shown["by"].value == "alice"
    assert shown["version"].value == f"v{shadow.version}" and "promoted on live evidence" in shown["reason"].value
    # ... and in the promotion history.
    monkeypatch.chdir(home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("ALPHAPULSE_PLATFORM_DB_URL", champion["db"])
    assert main(["models", "history", SYMBOL, "--cadence", "weekly"]) == 0
    row = read_table(capsys.readouterr().out, "when (UTC)")[-1]
    assert (row["action"], row["version"], row["prev"]) == ("promoted", f"v{shadow.version}", f"v{bad.version}")
    assert row["reason"].startswith("promoted on live evidence (") and row["by"] == "alice"


@pytest.mark.slow
def test_a_shadow_not_significantly_better_or_not_a_shadow_is_not_promoted_and_the_figures_say_why(champion, hourly):
    registry = champion["registry"]
    now = pd.Timestamp("2024-07-20", tz="UTC")
    candles = candles_until(hourly, now)

    def promote(version, at=now, rows=candles):
        return live_scoring.promote_on_live_evidence(
            registry, rows, WEEKLY, SYMBOL, version, CFG, at, reason="try", by="alice"
        )

    # v2 (rejected by its gate) against the sound champion v1: enough bars, not significantly better.
    with pytest.raises(live_scoring.NotPromoted) as refused:
        promote(2)
    text = str(refused.value)
    assert "not promoted: v2 vs champion v1: live log loss" in text and "one-sided p = " in text
    assert f">= {CFG.alpha}" in text and "labelled bars" in text
    assert registry.champion(SYMBOL, "weekly").version == 1

    # A bad champion and a challenger registered since: too few bars two days later.
    bad, shadow = bad_champion_and_a_rejected_challenger(champion)
    soon = THIRD_TURN + pd.Timedelta(days=3)
    with pytest.raises(live_scoring.NotPromoted, match=r"v4 vs champion v3: \d+ labelled bar\(s\) .*judged on 200"):
        promote(shadow.version, soon, candles_until(hourly, soon))
    # v2 was registered before the bad champion took office: no live evidence against it.
    with pytest.raises(live_scoring.PermanentError, match="registered before champion v3 took office.*shadows: v4"):
        promote(2)
    # A version held for review takes `approve`, whatever its live figures.
    held = registry.register(SYMBOL, "weekly", registry.load(shadow), info=dict(shadow.info, gate_verdict="held"))
    registry.hold(held, reason="direction AUC implausibly high")
    with pytest.raises(live_scoring.PermanentError, match=f"held for review .*models approve {SYMBOL} weekly 5"):
        promote(held.version)
    assert registry.champion(SYMBOL, "weekly").version == bad.version
    assert [d.action for d in registry.history(SYMBOL, "weekly")][-2:] == ["rejected", "held"]
