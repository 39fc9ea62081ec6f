"""Tests that count alerts, decisions or events exactly, on a deployment of their own (the session deployment
carries whatever the tests before them did, e.g. an alert already open). One deployment serves this module:
each test counts only keys the other never touches (ingest and weekly runs; the nightly champion of one symbol).

- Command-line runs under the real daemon on PostgreSQL (deploy/dagster.yaml): a failed `alphapulse ingest`
  alerts once, and a SIGKILLed `alphapulse run` is ended by the daemon's dead_run_sensor, its slot freed and
  its death alerted once by the run-failure sensor, within a bounded time.
- A corrupted champion file is refused, recorded, alerted once and never read.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from alphapulse_assets.alerting.alert_store import AlertStore
from alphapulse_assets.training.registry import ArtifactIntegrityError
from alphapulse_assets_tests.dagster_harness import BIN_DIR, RunSummary, cadence_tags
from alphapulse_assets_tests.e2e.conftest import START, SYMBOLS
from alphapulse_assets_tests.e2e.test_e2e_faults import registry

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

#: dead_run_sensor ticks every 30 s by default (5 s in the test deployments); the daemon's sensor loop adds a few
#: seconds, a busy machine some more.
DEAD_RUN_BOUND_SECONDS = 90


def test_cli_runs_are_watched_by_the_daemon(quiet_deployment):
    d = quiet_deployment
    instance = d.instance()
    alerts = AlertStore(d.database_url)

    broken = {**d.env, "ALPHAPULSE_SOURCES": "files", "ALPHAPULSE_FILES_DIR": "/nonexistent/alphapulse-e2e"}
    failed = subprocess.run(
        # The first seeded day: no cadence window here reads it, so its failed re-ingest holds back no training.
        [str(BIN_DIR / "alphapulse"), "ingest", "--start", START.isoformat()],
        env=broken,
        cwd=d.dagster_home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode != 0 and "FAILED" in failed.stdout, failed.stdout + failed.stderr
    assert len(alerts.history("run:ingest_market_data", event="raised")) == 1

    # A weekly cadence run from cron, killed while it trains (it holds the "training" pool slot).
    key = d.latest_key("weekly")
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


def test_corrupted_champion_is_refused_recorded_alerted_and_never_read(quiet_deployment):
    import numpy as np
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    d = quiet_deployment
    instance = d.instance()
    reg = registry(d)
    symbol = SYMBOLS[1]
    key = d.latest_key("nightly")
    # A champion for the nightly cadence (registered and promoted the way the champion asset does) ...
    rng = np.random.default_rng(0)
    model = Pipeline([("scale", StandardScaler()), ("sgd", SGDClassifier(loss="log_loss", random_state=0))])
    model.fit(rng.normal(size=(200, 3)), rng.integers(0, 2, 200))
    champion = reg.register(
        symbol,
        "nightly",
        model,
        info={"data_end": str(pd.Timestamp(key, tz="UTC")), "metrics": {}, "partition": "e2e-seeded"},
    )
    reg.promote(champion, reason="seeded by the corruption test")
    # ... whose file is then damaged on disk.
    path = Path(champion.uri)  # the registry's own folder under this deployment's home
    assert path.is_file() and d.alphapulse_home in path.parents
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError):
        reg.load(champion)

    run_id = d.submit(
        "nightly_cadence", tags={**cadence_tags(instance, key, SYMBOLS), "alphapulse/test": "corrupt-model"}
    )
    d.wait_for_run(run_id, timeout=300)
    summary = RunSummary(instance, run_id)
    # The run refused the file without failing on it: recorded, and no earlier champion verifies, so none serves
    # and the symbol trains from scratch (never from the damaged file).
    assert not [m for _step, _cls, m in summary.step_failures if re.search(r"sha-?256|does not match", m, re.I)]
    [fell] = [h for h in reg.history(symbol, "nightly") if h.action == "fell_back"]
    assert (fell.version, fell.previous_champion, fell.by) == (None, champion.version, "registry")
    assert "does not match" in fell.reason and str(path) in fell.reason
    now = reg.champion(symbol, "nightly")
    assert now is None or now.version > champion.version
    assert (f"models/nightly/{symbol}", key) in summary.materialized
    assert (f"models/nightly/{SYMBOLS[0]}", key) in summary.materialized  # the other symbol is unaffected
    # One critical alert, and the change on the champion asset (an observation: no version serves).
    alerts = AlertStore(d.database_url)
    assert len(alerts.history(key=f"model_artifact:{symbol}/nightly", event="raised")) == 1
    observed = instance.fetch_observations(dg.AssetKey(["champions", "nightly"]), limit=5).records
    observed = [r for r in observed if r.event_log_entry.asset_observation.metadata["symbol"].value == symbol]
    assert [r.event_log_entry.asset_observation.metadata["change"].value for r in observed] == ["fell_back"]
