"""The daily pipeline report: pure computation, and the asset materialized on a test instance over real runs
of a job named like a cadence (one clean run, one stopped by a gate's blocking check, one with a failed
symbol, one with a retried step), registry decisions and a tripped breaker."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import dagster as dg
import pytest
from sklearn.linear_model import LogisticRegression

from alphapulse_assets.monitoring.alert_store import AlertStore
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
from alphapulse_assets.training.registry import ModelRegistry


def test_percentile_matches_numpy_linear():
    np = pytest.importorskip("numpy")
    xs = [3.0, 1.0, 10.0, 7.5, 2.0]
    assert percentile(xs, 50) == pytest.approx(np.percentile(xs, 50))
    assert percentile(xs, 95) == pytest.approx(np.percentile(xs, 95))
    assert percentile([], 50) is None


def _run(i, status, durations, *, gate_only=False, eth="success", retry=False):
    steps = (StepRecord("models__nightly__BTC", "BTC", "success", 0, durations[0], attempts=2 if retry else 1),
             StepRecord("models__nightly__ETH", "ETH", eth, 0, durations[1]))
    return RunRecord(f"r{i}", "nightly", status, 0.0, sum(durations), steps=steps, gate_only=gate_only)


def test_report_rates_durations_and_alerts():
    runs = [_run(1, "success", (100, 200)), _run(2, "failure", (100, 300), eth="failure"),
            _run(3, "failure", (50, 50), gate_only=True), _run(4, "success", (1000, 3000), retry=True),
            RunRecord("r5", "weekly", "success", 0.0, 4000.0)]
    report = build_report("2024-05-01", (0.0, 86400.0), ["nightly", "weekly", "monthly"], ["BTC", "ETH"], runs)
    nightly = report["cadences"][0]
    assert (nightly["runs"], nightly["succeeded"], nightly["failed"]) == (4, 3, 1)  # the gate-only run completed
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
    assert "| nightly | 4 | 3 | 1 | 75.0% | 25.0% |" in tables["cadences"]


# -- on a test instance with real runs -------------------------------------------------------------------

BEHAVIOUR = {"gate_pass": True, "eth_fails": False, "btc_flaky": False}
ATTEMPTS = {"btc": 0}


@dg.asset(key=["training_sets", "nightly"])
def training_set():
    return 1


@dg.asset(key=["models", "nightly", "BTCUSDT"], deps=[training_set], retry_policy=dg.RetryPolicy(max_retries=1),
          check_specs=[dg.AssetCheckSpec("promotion_gate", asset=["models", "nightly", "BTCUSDT"], blocking=True)])
def btc_model():
    ATTEMPTS["btc"] += 1
    if BEHAVIOUR["btc_flaky"] and ATTEMPTS["btc"] == 1:
        raise ConnectionError("exchange reset the connection")
    yield dg.Output(1)
    yield dg.AssetCheckResult(check_name="promotion_gate", passed=BEHAVIOUR["gate_pass"])


@dg.asset(key=["models", "nightly", "ETHUSDT"], deps=[training_set])
def eth_model():
    if BEHAVIOUR["eth_fails"]:
        raise ValueError("feature column is all NaN")
    return 1


nightly_cadence = dg.define_asset_job("nightly_cadence", selection=[training_set, btc_model, eth_model])
defs = dg.Definitions(assets=[training_set, btc_model, eth_model, pipeline_report], jobs=[nightly_cadence],
                      executor=dg.in_process_executor)


@pytest.fixture
def env(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/platform.db"
    monkeypatch.setenv("ALPHAPULSE_PLATFORM_DB_URL", url)
    monkeypatch.setenv("ALPHAPULSE_MONITORING_REPORT_DIR", str(tmp_path / "reports"))
    for name in ("ALPHAPULSE_SLACK_WEBHOOK_URL", "ALPHAPULSE_ALERT_WEBHOOK_URL", "ALPHAPULSE_SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    from alphapulse_assets.monitoring.config import get_monitoring_settings

    get_monitoring_settings.cache_clear()
    yield url
    get_monitoring_settings.cache_clear()


def test_report_asset_over_real_runs(env, tmp_path):
    job = defs.resolve_job_def("nightly_cadence")
    with dg.instance_for_test() as instance:
        for behaviour in ({}, {"gate_pass": False}, {"eth_fails": True}, {"btc_flaky": True}):
            BEHAVIOUR.update({"gate_pass": True, "eth_fails": False, "btc_flaky": False, **behaviour})
            ATTEMPTS["btc"] = 0
            job.execute_in_process(instance=instance, raise_on_error=False)

        registry = ModelRegistry(str(tmp_path / "models"), env)
        model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
        registry.promote(registry.register("BTCUSDT", "nightly", model), reason="passed")
        registry.reject(registry.register("BTCUSDT", "nightly", model), reason="worse than champion")
        breakers = BreakerStore(env)
        for _ in range(5):
            breakers.record("source:exchange", BreakerConfig(), ok=False, error_class=ErrorClass.TRANSIENT)

        today = datetime.now(timezone.utc).date().isoformat()
        result = dg.materialize([pipeline_report], instance=instance, partition_key=today)
        assert result.success
        [mat] = result.asset_materializations_for_node("platform__pipeline_report")

    md = mat.metadata
    assert md["nightly_runs"].value == 4 and md["failed_runs"].value == 1
    assert md["nightly_failure_rate"].value == pytest.approx(0.25)
    assert md["nightly_retries"].value == 1
    assert md["promotions"].value == 1 and md["rejections"].value == 1 and md["breaker_trips"].value == 1
    assert "| nightly | 4 | 3 | 1 | 75.0% | 25.0% |" in md["cadences"].value
    assert "| nightly | ETHUSDT | 4 | 3 | 1 |" in md["symbols"].value
    assert "| source:exchange | 1 |" in md["breaker_trips_table"].value

    report = json.loads((tmp_path / "reports" / f"pipeline_report_{today}.json").read_text())
    btc = next(r for r in report["symbols"] if r["symbol"] == "BTCUSDT")
    assert (btc["attempted"], btc["succeeded"], btc["retries"], btc["promotions"], btc["rejections"]) == (4, 4, 1, 1, 1)
    assert report["cadences"][0]["p95_seconds"] > 0
    # 25 % failed runs is over the 20 % critical line: one alert, open in the platform database.
    [alert] = AlertStore(env).open_alerts()
    assert alert.key == "report:pipeline_failure_rate_percent:nightly" and alert.severity.value == "critical"


def test_report_schedule_builds_yesterday():
    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2024, 5, 2, 0, 30, tzinfo=timezone.utc))
    request = pipeline_report_schedule(ctx)
    assert request.partition_key == "2024-05-01"
