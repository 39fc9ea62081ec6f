"""Command-line runs under the real daemon on PostgreSQL (deploy/dagster.yaml): a failed `alphapulse ingest`
alerts once, and a SIGKILLed `alphapulse run` is ended by the daemon's dead_run_sensor, its slot freed and its
death alerted once by the run-failure sensor, within a bounded time."""

from __future__ import annotations

import subprocess
import time

import dagster as dg
import pytest

from alphapulse_assets.alerting.alert_store import AlertStore
from alphapulse_assets_tests.dagster_harness import BIN_DIR
from alphapulse_assets_tests.e2e.test_e2e_faults import latest_key

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

#: dead_run_sensor ticks every 30 s; the daemon's sensor loop adds a few seconds, a busy machine some more.
DEAD_RUN_BOUND_SECONDS = 90


def test_cli_runs_are_watched_by_the_daemon(own_deployment):
    d = own_deployment
    instance = d.instance()
    alerts = AlertStore(d.database_url)

    broken = {**d.env, "ALPHAPULSE_SOURCES": "files", "ALPHAPULSE_FILES_DIR": "/nonexistent/alphapulse-e2e"}
    failed = subprocess.run(
        [str(BIN_DIR / "alphapulse"), "ingest", "--start", latest_key(d, "nightly")],
        env=broken,
        cwd=d.dagster_home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode != 0 and "FAILED" in failed.stdout, failed.stdout + failed.stderr
    assert len(alerts.history("run:ingest_market_data", event="raised")) == 1

    # A weekly cadence run from cron, killed while it trains (it holds the "training" pool slot).
    key = latest_key(d, "weekly")
    proc = subprocess.Popen(
        [str(BIN_DIR / "alphapulse"), "run", "weekly", "--partition", key],
        env=d.env,
        cwd=d.dagster_home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        holder = d.wait_until(
            lambda: [s.run_id for s in instance.event_log_storage.get_concurrency_info("training").claimed_slots],
            timeout=300,
            what="the CLI run to hold the training slot",
            interval=0.02,
        )
    finally:
        proc.kill()
        proc.wait(10)
    killed_at = time.monotonic()
    [run_id] = holder

    def ended():
        run = instance.get_run_by_id(run_id)
        return run if run.status == dg.DagsterRunStatus.FAILURE else None

    d.wait_until(ended, timeout=DEAD_RUN_BOUND_SECONDS, what="the daemon to end the killed run", interval=1.0)
    detected = time.monotonic() - killed_at
    [failure] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert f"worker process {proc.pid} on " in failure.message and "died" in failure.message
    assert instance.event_log_storage.get_concurrency_info("training").claimed_slots == []

    alert = d.wait_until(
        lambda: alerts.open_alert("run:weekly_cadence"),
        timeout=90,
        what="the run-failure sensor to alert the dead run",
        interval=1.0,
    )
    assert f"worker process {proc.pid}" in alert.body
    # The sensor saw the failed CLI ingest before the dead run (it reads in order) and did not alert it again.
    assert len(alerts.history("run:ingest_market_data", event="raised")) == 1
    assert len(alerts.history("run:weekly_cadence", event="raised")) == 1
    print(f"dead CLI run ended by the daemon {detected:.1f} s after SIGKILL")
