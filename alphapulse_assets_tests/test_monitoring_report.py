"""The daily pipeline report: pure computation, and the asset materialized on a test instance over real runs
of the real weekly cadence job (promotions, gate rejections, a run whose training set failed), a tripped
breaker, and the alerts it raises."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import dagster as dg
import pytest

from alphapulse_assets.alerting.alert_store import AlertStore
from alphapulse_assets.market_data.resources import CandleStoreResource, PartitionedParquetIOManager
from alphapulse_assets.monitoring.report import (
    RunRecord,
    StepRecord,
    build_report,
    percentile,
    render_markdown,
    report_alerts,
)
from alphapulse_assets.monitoring.sensors import pipeline_report, pipeline_report_schedule
from alphapulse_assets.recovery.breaker import BreakerConfig
from alphapulse_assets.recovery.breaker_store import BreakerStore
from alphapulse_assets.recovery.errors import ErrorClass
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training.assets import ModelRegistryResource, cadence_assets
from alphapulse_assets.training.schedules import JOBS
from alphapulse_assets_tests.candles import ingest, symbol_tags

SYMBOLS = list(get_settings().symbols)


def test_percentile_matches_numpy_linear():
    np = pytest.importorskip("numpy")
    xs = [3.0, 1.0, 10.0, 7.5, 2.0]
    assert percentile(xs, 50) == pytest.approx(np.percentile(xs, 50))
    assert percentile(xs, 95) == pytest.approx(np.percentile(xs, 95))
    assert percentile([], 50) is None


def _run(i, status, durations, *, error_class=None, eth="trained", retry=False):
    steps = (
        StepRecord("training_set", "success", 0, 1.0),
        StepRecord("nightly_models", status, 1.0, sum(durations), attempts=2 if retry else 1),
    )
    trained = {"BTC"} | ({"ETH"} if eth == "trained" else set())
    return RunRecord(
        f"r{i}",
        "nightly",
        status,
        0.0,
        sum(durations),
        steps=steps,
        error_class=error_class,
        planned=frozenset({"BTC", "ETH"}),
        trained=frozenset(trained),
    )


def test_report_rates_durations_and_alerts():
    runs = [
        _run(1, "success", (100, 200)),
        _run(2, "failure", (100, 300), eth="failed", error_class="permanent"),
        _run(3, "success", (50, 50)),
        _run(4, "success", (1000, 3000), retry=True),
        RunRecord("r5", "weekly", "success", 0.0, 4000.0),
    ]
    report = build_report("2024-05-01", (0.0, 86400.0), ["nightly", "weekly", "monthly"], ["BTC", "ETH"], runs)
    nightly = report["cadences"][0]
    assert (nightly["runs"], nightly["succeeded"], nightly["failed"]) == (4, 3, 1)
    assert nightly["failed_by_class"] == {"permanent": 1}
    assert nightly["failure_rate"] == 0.25 and nightly["step_retries"] == 1
    assert nightly["p50_seconds"] == pytest.approx(350.0)
    eth = next(r for r in report["symbols"] if r["cadence"] == "nightly" and r["symbol"] == "ETH")
    assert (eth["attempted"], eth["failed"]) == (4, 1)
    alerts = {key: ev for key, _m, ev in report_alerts(report)}
    assert alerts["report:pipeline_failure_rate_percent:nightly"].level.name == "CRITICAL"  # 25 % >= 20 %
    assert alerts["report:run_duration_seconds:weekly"].level.name == "CRITICAL"  # 4000 s >= 3600 s
    assert alerts["report:pipeline_failure_rate_percent:weekly"] is None
    assert "report:pipeline_failure_rate_percent:monthly" not in alerts  # no runs, nothing to judge
    tables = render_markdown(report)
    assert "| nightly | 4 | 3 | 1 (1 permanent) | 75.0% | 25.0% |" in tables["cadences"]


def test_report_alerts_are_never_stamped_in_the_future():
    """Today's report so far: its alerts carry the time it was built, not midnight tonight."""
    runs = [RunRecord("r1", "nightly", "failure", 0.0, 10.0)]
    report = build_report("2024-05-01", (0.0, 86400.0), ["nightly"], ["BTC"], runs, generated_at=3600.0)
    [(_key, _metric, event)] = [a for a in report_alerts(report) if a[1] == "pipeline_failure_rate_percent"]
    assert event is not None and event.at == 3600.0


# -- on a test instance, over real runs of the real weekly cadence job ----------------------------------


@pytest.fixture
def env(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/platform.db"
    monkeypatch.setenv("ALPHAPULSE_PLATFORM_DB_URL", url)
    monkeypatch.setenv("ALPHAPULSE_MONITORING_REPORT_DIR", str(tmp_path / "reports"))
    for name in ("ALPHAPULSE_SLACK_WEBHOOK_URL", "ALPHAPULSE_ALERT_WEBHOOK_URL", "ALPHAPULSE_SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)

    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def _weekly_definitions(root, url, candles_url):
    """The real weekly cadence job and its assets, on resources in a temporary folder."""
    resources = {
        "candle_store": CandleStoreResource(base_url=candles_url),
        "training_set_io_manager": PartitionedParquetIOManager(base_url=str(root / "ts"), layout="keys"),
        "model_registry": ModelRegistryResource(artifact_root=str(root / "models"), db_url=url),
    }
    return dg.Definitions(
        assets=cadence_assets["weekly"], jobs=[JOBS["weekly"]], resources=resources, executor=dg.in_process_executor
    )


@pytest.mark.slow
def test_report_rows_per_symbol_from_real_cadence_runs(env, tmp_path):
    job = _weekly_definitions(tmp_path, env, str(tmp_path / "candles")).resolve_job_def("weekly_cadence")
    # The week of 2024-06-09 needs candles up to 2024-06-16: this run's training set fails, no symbol is trained.
    broken = _weekly_definitions(tmp_path, env, str(tmp_path / "empty")).resolve_job_def("weekly_cadence")

    with dg.instance_for_test() as instance:
        ingest(instance, str(tmp_path / "candles"), "2024-03-01", "2024-06-09", symbols=SYMBOLS)
        results = [
            job.execute_in_process(instance=instance, tags=symbol_tags(instance, key, SYMBOLS), raise_on_error=False)
            for key in ("2024-05-26", "2024-06-02")
        ]
        results.append(
            broken.execute_in_process(
                instance=instance, tags=symbol_tags(instance, "2024-06-09", SYMBOLS), raise_on_error=False
            )
        )
        assert not results[-1].success
        for _ in range(5):
            BreakerStore(env).record("training", BreakerConfig(), ok=False, error_class=ErrorClass.TRANSIENT)

        today = datetime.now(timezone.utc).date().isoformat()
        before = time.time()
        report_result = dg.materialize([pipeline_report], instance=instance, partition_key=today)
        after = time.time()
        assert report_result.success
        [mat] = report_result.asset_materializations_for_node("platform__pipeline_report")

    registry = ModelRegistryResource(artifact_root=str(tmp_path / "models"), db_url=env).get()
    report = json.loads((tmp_path / "reports" / f"pipeline_report_{today}.json").read_text())
    weekly = next(r for r in report["cadences"] if r["cadence"] == "weekly")
    assert (weekly["runs"], weekly["failed"]) == (3, 1)  # the runs with rejections succeeded
    assert weekly["failed_by_class"] == {"permanent": 1}  # missing candles: the platform's one classifier
    rows = {r["symbol"]: r for r in report["symbols"] if r["cadence"] == "weekly"}
    assert set(rows) == set(SYMBOLS)
    for symbol in SYMBOLS:
        history = [d.action for d in registry.history(symbol, "weekly")]
        row = rows[symbol]
        # Two runs trained every symbol's challenger; the third failed them all before training.
        assert (row["attempted"], row["succeeded"], row["failed"]) == (3, 2, 1), symbol
        assert row["promotions"] == history.count("promoted") and row["rejections"] == history.count("rejected")
        assert row["promotions"] + row["rejections"] == 2, symbol
    assert rows["ETHUSDT"]["promotions"] == 1 and rows["ETHUSDT"]["rejections"] == 1
    assert "| weekly | ETHUSDT | 3 | 2 | 1 | 66.7% | 33.3% | 1 | 1 | 0 |" in mat.metadata["symbols"].value
    assert "| training | 1 |" in mat.metadata["breaker_trips_table"].value

    # A third of the weekly runs failed (critical at 20 %): one alert, stamped when the report was built.
    [alert] = [a for a in AlertStore(env).open_alerts() if a.key.startswith("report:")]
    assert alert.key == "report:pipeline_failure_rate_percent:weekly" and alert.severity.value == "critical"
    assert before <= alert.first_at <= after


def test_report_schedule_builds_yesterday():
    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2024, 5, 2, 0, 30, tzinfo=timezone.utc))
    request = pipeline_report_schedule(ctx)
    assert request.partition_key == "2024-05-01"
