"""Every run is watched however it was started, and a CLI run can be stopped and killed without leaving the
platform stuck: the real ``alphapulse`` command in a subprocess, the real sensors on the same instance."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from alphapulse_assets.alerting.alert_store import AlertStore
from alphapulse_assets.platform_db import platform_db_url

ROOT = Path(__file__).resolve().parent.parent
ALPHAPULSE = Path(sys.executable).parent / "alphapulse"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A local instance (the project's dagster.yaml) in a temporary DAGSTER_HOME, used by the CLI and here."""
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    for key in list(os.environ):
        if key.startswith(("DAGSTER_", "ALPHAPULSE_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("ALPHAPULSE_SYMBOLS", "BTCUSDT,ETHUSDT")
    monkeypatch.chdir(tmp_path)  # the yaml's storage paths are relative to DAGSTER_HOME
    return tmp_path


def cli(*args: str, env: dict | None = None, timeout: float = 240.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ALPHAPULSE), *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def spawn(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [str(ALPHAPULSE), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


SLOW_FIT_MODULE = """
import time

from sklearn.linear_model import LogisticRegression


class SlowFitLogit(LogisticRegression):
    def fit(self, X, y, sample_weight=None):
        time.sleep(90)
        return super().fit(X, y, sample_weight)
"""


@pytest.fixture
def slow_nightly(home) -> dict:
    """Env for a CLI run whose nightly fit takes 90 s (a user estimator by dotted path): the run surely holds
    its training slot when the test signals it, however fast or loaded the machine is."""
    user_code = home / "user_code"
    user_code.mkdir()
    (user_code / "slow_fit_model.py").write_text(SLOW_FIT_MODULE)
    return {
        "ALPHAPULSE_NIGHTLY__ESTIMATOR": "slow_fit_model:SlowFitLogit",
        "PYTHONPATH": os.pathsep.join(p for p in (str(user_code), os.environ.get("PYTHONPATH")) if p),
    }


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def tick(sensor, instance, cursor=None):
    """One daemon-like evaluation of a sensor of the platform's definitions; returns the new cursor."""
    from alphapulse_assets.definitions import defs

    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    sensor.evaluate_tick(context)
    return context.cursor


BROKEN = {
    "ALPHAPULSE_SOURCES": "files",
    "ALPHAPULSE_FILES_DIR": "/nonexistent/alphapulse-market-data",
    "ALPHAPULSE_RETRY__MAX_RETRIES": "0",
}


# -- section 2: every run is watched ------------------------------------------------------------------------


@pytest.mark.slow
def test_failed_cli_ingests_alert_once_each_feed_the_breaker_and_resolve_on_success(home):
    from alphapulse_assets.alerting.alerts import build_router_from_env
    from alphapulse_assets.definitions import defs
    from alphapulse_assets.monitoring.sensors import run_failure_alert_sensor, run_success_resolve_sensor
    from alphapulse_assets.recovery.config import load_recovery_config
    from alphapulse_assets.recovery.gating import default_store
    from alphapulse_assets.recovery.sensors import evaluate_tick

    with dg.DagsterInstance.get() as instance:
        # The daemon's sensors were running before (first ticks set their cursors), then stopped: cron only.
        fail_cursor = tick(run_failure_alert_sensor, instance)
        ok_cursor = tick(run_success_resolve_sensor, instance)
        repo = defs.get_repository_def()
        breaker = evaluate_tick(
            instance,
            repo,
            None,
            store=default_store(),
            router=build_router_from_env(platform_db_url()),
            config=load_recovery_config(),
            now=time.time(),
        )

        for _ in range(3):
            proc = cli("ingest", "--start", "2025-01-01", env=BROKEN)
            assert proc.returncode != 0, proc.stdout + proc.stderr
            assert "FAILED" in proc.stdout and "market-data folder does not exist" in proc.stderr

        store = AlertStore(platform_db_url())
        failed = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        assert len(failed) == 3
        # No daemon ran: the CLI itself raised one alert per failed run, through the router and its store.
        assert len(store.history("run:ingest_market_data", event="raised")) == 3
        assert store.open_alert("run:ingest_market_data") is not None

        # The daemon comes back: its run-failure sensor sees the CLI runs, and does not alert them again.
        for _ in range(3):
            fail_cursor = tick(run_failure_alert_sensor, instance, fail_cursor)
        assert len(store.history("run:ingest_market_data", event="raised")) == 3
        assert all(r.tags.get("alphapulse/alerted", "").startswith("alphapulse cli") for r in failed)

        # The breaker sensor is fed by the CLI runs.
        report = evaluate_tick(
            instance,
            repo,
            breaker.cursor,
            store=default_store(),
            router=build_router_from_env(platform_db_url()),
            config=load_recovery_config(),
            now=time.time(),
        )
        fed = [(run_id, o) for run_id, o in report.outcomes if o.dependency == "market_data"]
        assert {run_id for run_id, _ in fed} == {r.run_id for r in failed}
        assert all(not o.ok for _, o in fed)

        # A later success resolves the alert (the CLI does it; the sensor then has nothing to do).
        proc = cli("ingest", "--start", "2025-01-01")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert store.open_alert("run:ingest_market_data") is None
        assert [h.event for h in store.history("run:ingest_market_data") if h.channel is None][-1] == "resolved"
        tick(run_success_resolve_sensor, instance, ok_cursor)
        assert len(store.history("run:ingest_market_data", event="resolved")) == 1


# -- section 3: stop and kill ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signum,code,concurrency",
    [(signal.SIGTERM, 143, "4"), (signal.SIGINT, 130, "4"), (signal.SIGTERM, 143, "1")],
    ids=["SIGTERM-4-threads", "SIGINT-4-threads", "SIGTERM-1-thread"],
)
@pytest.mark.slow
def test_signal_stops_a_cli_run_canceled_nonzero_nothing_written(home, signum, code, concurrency):
    from alphapulse_assets_tests.fake_exchange import KLINES, FakeBinance

    with FakeBinance() as fake:
        fake.hang(1, 120.0)  # the first klines request stalls: the step is mid-fetch when the signal comes
        env = {
            "ALPHAPULSE_SOURCES": "exchange",
            "ALPHAPULSE_EXCHANGE_API_URL": fake.url,
            "ALPHAPULSE_SOURCE_TIMEOUT_SECONDS": "110",
            "ALPHAPULSE_EXCHANGE_CONCURRENCY": concurrency,
        }
        proc = spawn("ingest", "--start", "2024-05-01", env=env)
        try:
            wait_until(lambda: fake.requests_to(KLINES), 90, "the CLI run to reach the exchange")
            time.sleep(0.5)
            sent = time.monotonic()
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        took = time.monotonic() - sent

    assert proc.returncode == code, out + err
    assert took < 15, f"stopping took {took:.1f} s"
    print(f"ingest stopped {took:.2f} s after {signal.Signals(signum).name}")
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.CANCELED
        retried = instance.all_logs(
            run.run_id, of_type={dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_RESTARTED}
        )
        assert retried == []
        assert instance.get_latest_materialization_event(dg.AssetKey("market_candles")) is None
    candles = home / ".alphapulse" / "candles"
    written = [p for p in candles.rglob("*") if p.is_file()] if candles.exists() else []
    assert written == [], f"partial files left: {written}"
    assert AlertStore(platform_db_url()).open_alerts() == []  # an operator's stop is not a failure


def _holds_training_slot(instance, run_id_holder: list) -> bool:
    info = instance.event_log_storage.get_concurrency_info("training")
    if info.claimed_slots:
        run_id_holder[:] = [info.claimed_slots[0].run_id]
        return True
    return False


@pytest.mark.slow
def test_sigkilled_cadence_run_is_ended_and_its_slot_freed(home, slow_nightly):
    from alphapulse_assets.definitions import defs
    from alphapulse_assets.monitoring.sensors import run_failure_alert_sensor
    from alphapulse_assets.recovery.runs import dead_run_sensor

    proc = cli("ingest", "--start", "2025-01-01", "--end", "2025-01-31")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with dg.DagsterInstance.get() as instance:
        fail_cursor = tick(run_failure_alert_sensor, instance)
        killed = spawn("run", "nightly", "--partition", "2025-01-30", env=slow_nightly)
        holder: list[str] = []
        try:
            wait_until(
                lambda: _holds_training_slot(instance, holder),
                120,
                "the cadence run to hold the training slot",
                interval=0.02,
            )
        finally:
            killed.kill()
            killed.wait(10)
        [dead_id] = holder
        assert instance.get_run_by_id(dead_id).status == dg.DagsterRunStatus.STARTED  # stuck, as today

        # The daemon's sensor ends the dead run with the reason and frees its slot.
        dead_run_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        dead = instance.get_run_by_id(dead_id)
        assert dead.status == dg.DagsterRunStatus.FAILURE
        [failure] = instance.all_logs(dead_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert f"worker process {killed.pid} on {os.uname().nodename} died" in failure.message
        assert instance.event_log_storage.get_concurrency_info("training").claimed_slots == []

        # ... and the death is alerted once, with that reason.
        tick(run_failure_alert_sensor, instance, fail_cursor)
        alert = AlertStore(platform_db_url()).open_alert("run:nightly_cadence")
        assert alert is not None and f"worker process {killed.pid}" in alert.body

        # ... and the daily report counts it as a failed nightly run.
        from alphapulse_assets.monitoring.sensors import compute_report

        now = time.time()
        report = compute_report(instance, "today", now - 3600, now + 60, db_url=platform_db_url(), now=now)
        [nightly] = [row for row in report["cadences"] if row["cadence"] == "nightly"]
        assert nightly["runs"] == 1 and nightly["failed"] == 1

    # The next cadence run is not stuck.
    proc = cli("run", "nightly", "--partition", "2025-01-30", timeout=180)
    assert "nightly cadence, partition 2025-01-30" in proc.stdout and " in " in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow
def test_cli_ends_a_dead_run_before_it_starts(home, slow_nightly):
    """Without the daemon: the next ``alphapulse run`` ends the SIGKILLed run itself and is not stuck."""
    proc = cli("ingest", "--start", "2025-01-01", "--end", "2025-01-31")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with dg.DagsterInstance.get() as instance:
        killed = spawn("run", "nightly", "--partition", "2025-01-30", env=slow_nightly)
        holder: list[str] = []
        try:
            wait_until(
                lambda: _holds_training_slot(instance, holder),
                120,
                "the cadence run to hold the training slot",
                interval=0.02,
            )
        finally:
            killed.kill()
            killed.wait(10)
        started = time.monotonic()
        proc = cli("run", "nightly", "--partition", "2025-01-30", timeout=120)
        assert time.monotonic() - started < 120
        assert f"ended run {holder[0]}" in proc.stdout and f"worker process {killed.pid}" in proc.stdout, proc.stdout
        runs = instance.get_runs(dg.RunsFilter(job_name="nightly_cadence"))
        assert all(r.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE) for r in runs)
        assert instance.event_log_storage.get_concurrency_info("training").claimed_slots == []


@pytest.mark.slow
def test_a_cli_run_waiting_for_a_pool_slot_says_which_pool_and_which_run_holds_it(home):
    from alphapulse_assets.definitions import defs
    from alphapulse_assets.recovery.runs import owner_tags

    proc = cli("ingest", "--start", "2025-01-01", "--end", "2025-01-31")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with dg.DagsterInstance.get() as instance:
        # A live run of this process holds the training slot (pool limit 1).
        holder = instance.create_run_for_job(defs.resolve_job_def("weekly_cadence"), tags=owner_tags())
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default("training")  # as the executor does on first use
        storage.claim_concurrency_slot("training", holder.run_id, "weekly_models")
        assert storage.get_concurrency_info("training").claimed_slots
        log = home / "waiter.log"
        with log.open("w") as fh:
            waiter = subprocess.Popen(
                [str(ALPHAPULSE), "run", "nightly", "--partition", "2025-01-30"],
                stdout=fh,
                stderr=subprocess.STDOUT,
                text=True,
            )
        try:
            line = wait_until(
                lambda: next((x for x in log.read_text().splitlines() if "waiting for a slot" in x), None),
                90,
                "the waiting run to say what it waits for",
                interval=0.2,
            )
            assert "pool 'training' (limit 1)" in line and holder.run_id in line and "weekly_cadence" in line
            assert f"pid {os.getpid()}" in line
            assert waiter.poll() is None  # still waiting: the holder is alive, its slot is not taken from it
            storage.free_concurrency_slots_for_run(holder.run_id)
            assert waiter.wait(timeout=120) in (0, 1)  # it runs once the slot is free (1: challengers rejected)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait(10)
        assert "nightly cadence, partition 2025-01-30" in log.read_text()


@pytest.mark.slow
def test_sigterm_mid_training_cancels_and_leaves_no_partial_model(home, slow_nightly):
    from alphapulse_assets.training.registry import ModelRegistry

    proc = cli("ingest", "--start", "2025-01-01", "--end", "2025-01-31")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with dg.DagsterInstance.get() as instance:
        run = spawn("run", "nightly", "--partition", "2025-01-30", env=slow_nightly)
        holder: list[str] = []
        try:
            wait_until(
                lambda: _holds_training_slot(instance, holder), 120, "the cadence run to be training", interval=0.02
            )
            sent = time.monotonic()
            run.send_signal(signal.SIGTERM)
            out, err = run.communicate(timeout=30)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait(10)
        assert run.returncode == 143, out + err
        took = time.monotonic() - sent
        assert took < 15
        print(f"training stopped {took:.2f} s after SIGTERM")
        stopped = instance.get_run_by_id(holder[0])
        assert stopped.status == dg.DagsterRunStatus.CANCELED
        assert instance.event_log_storage.get_concurrency_info("training").claimed_slots == []
    models = home / ".alphapulse" / "models"
    registry = ModelRegistry(str(models), platform_db_url())
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for version in registry.versions(symbol, "nightly"):
            registry.verify(version)  # every registered version has its complete, verified artifact
    leftovers = [p for p in models.rglob("*") if p.is_file() and (".tmp" in p.name or p.name.startswith("."))]
    assert leftovers == []
    # The next run goes ahead.
    proc = cli("run", "nightly", "--partition", "2025-01-30", timeout=180)
    assert "nightly cadence, partition 2025-01-30" in proc.stdout, proc.stdout + proc.stderr


def test_owner_alive_judges_only_this_hosts_processes_and_sees_a_reused_pid():
    from alphapulse_assets.recovery.runs import owner_alive, owner_tags

    mine = owner_tags()
    assert owner_alive(mine) is True
    assert owner_alive({**mine, "alphapulse/pid_started": str(float(mine["alphapulse/pid_started"]) - 100)}) is False
    assert owner_alive({**mine, "alphapulse/host": "another-host"}) is None
    assert owner_alive({}) is None
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert owner_alive({**mine, "alphapulse/pid": done.stdout.strip(), "alphapulse/pid_started": ""}) is False
