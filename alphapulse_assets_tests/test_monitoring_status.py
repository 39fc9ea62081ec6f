"""``alphapulse status`` through the real CLI entry point on a project folder of its own (DAGSTER_HOME with
a dagster.yaml, SQLite instance and platform database): fresh, healthy, and with a forced-open breaker plus
a failed check, each checked for content and exit code."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psutil
import pytest
from dagster._daemon.types import DaemonHeartbeat  # internal: no public type; tests write heartbeats as the daemon does
from sklearn.linear_model import LogisticRegression

from alphapulse_assets import cli
from alphapulse_assets.monitoring import readers
from alphapulse_assets.monitoring.sensors import build_check_failure_alert_sensor
from alphapulse_assets.platform_db import platform_db_url
from alphapulse_assets.settings import get_settings
from alphapulse_assets_tests.table_reader import read_table, row_where

DAGSTER_YAML = """\
storage:
  sqlite:
    base_dir: .alphapulse/storage
telemetry:
  enabled: false
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "dagster.yaml").write_text(DAGSTER_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    for name in (
        "ALPHAPULSE_PLATFORM_DB_URL",
        "DAGSTER_PG_HOST",
        "ALPHAPULSE_SLACK_WEBHOOK_URL",
        "ALPHAPULSE_ALERT_WEBHOOK_URL",
        "ALPHAPULSE_SMTP_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()  # settings (and the models folder) follow this project's DAGSTER_HOME
    yield tmp_path
    get_settings.cache_clear()


def run_status(capsys, *args) -> tuple[int, str]:
    code = cli.main(["status", *args])
    return code, capsys.readouterr().out


def instance_for(project) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(project))


@dg.op
def noop():
    return 1


@dg.job(name="nightly_cadence")
def nightly_cadence_stub():
    noop()


def make_healthy(project) -> None:
    """Daemon heartbeats fresh, every cadence's due partition trained, a champion, a successful run."""
    import time

    from alphapulse_assets.training.registry import ModelRegistry

    now = time.time()
    settings = get_settings()
    with instance_for(project) as instance:
        for daemon in instance.get_required_daemon_types():
            instance.add_daemon_heartbeat(DaemonHeartbeat(now, daemon, "d1"))
        for cadence in readers.CADENCE_NAMES:
            key = readers.expected_partition(cadence, now, settings, get_settings().monitoring)
            for symbol in settings.symbols:
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(["models", cadence], partition=f"{key}|{symbol}")
                )
        nightly_cadence_stub.execute_in_process(instance=instance, tags={"dagster/partition": "2026-01-01"})
    registry = ModelRegistry(str(settings.home / "models"), platform_db_url())  # where status verifies them
    model = LogisticRegression().fit([[0.0], [1.0], [0.2], [0.9]], [0, 1, 0, 1])
    version = registry.register(
        "BTCUSDT", "nightly", model, info={"metrics": {"log_loss": 0.6512, "auc": 0.612, "f1": 0.55}}
    )
    registry.promote(version, reason="test")


def test_status_on_a_fresh_project(project, capsys):
    code, out = run_status(capsys)
    assert code == 0, out  # a fresh project is not critical: nothing has run yet
    assert out.startswith("AlphaPulse status at ") and ": WARNING" in out.splitlines()[0]
    assert "no daemon heartbeat" in out and "never trained" in out
    cadences = read_table(out, "cadence")
    assert [(r["cadence"], r["status"]) for r in cadences] == [
        (c, "never run") for c in ("nightly", "weekly", "monthly")
    ]
    assert "none yet (no challenger has passed its gate)" in out
    assert "none recorded (all closed)" in out
    assert "live (the resource sensor has not stored a recent sample)" in out

    code, raw = run_status(capsys, "--json")
    status = json.loads(raw)
    assert code == 0 and status["health"]["status"] == "warning"
    assert status["breakers"] == {} and status["open_alerts"] == [] and status["champions"] == []
    assert status["cadences"] == {"nightly": None, "weekly": None, "monthly": None}
    assert status["resources"]["memory_percent"] > 0


def test_status_on_a_healthy_project(project, capsys):
    if psutil.disk_usage("/").percent >= 85:
        pytest.skip("this host's disk is over the 85 % warning threshold, so it cannot look healthy")
    make_healthy(project)
    code, raw = run_status(capsys, "--json")
    status = json.loads(raw)
    assert code == 0
    assert status["health"]["status"] == "healthy", status["health"]["reasons"]
    assert status["health"]["reasons"] == []
    assert status["cadences"]["nightly"]["status"] == "success"
    assert status["cadences"]["nightly"]["partition"] == "2026-01-01"
    [champion] = status["champions"]
    assert champion["symbol"] == "BTCUSDT" and champion["version"] == 1 and champion["metrics"]["auc"] == 0.612

    code, out = run_status(capsys)
    assert code == 0 and ": HEALTHY" in out.splitlines()[0]
    champion = row_where(read_table(out, "symbol"), symbol="BTCUSDT", cadence="nightly")
    assert (champion["version"], champion["log_loss"], champion["auc"]) == ("v1", "0.6512", "0.612")
    assert row_where(read_table(out, "status"), check="freshness nightly")["status"] == "healthy"


def test_status_with_an_open_breaker_and_a_failed_check(project, capsys, monkeypatch):
    from alphapulse_assets.definitions import defs
    from alphapulse_assets.recovery.breaker_store import BreakerStore

    make_healthy(project)
    BreakerStore(platform_db_url()).force_open("source:exchange", by="ops", reason="exchange maintenance")
    check_key = sorted(defs.get_repository_def().asset_graph.asset_check_keys, key=str)[0]
    with instance_for(project) as instance:
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=check_key.asset_key,
                check_name=check_key.name,
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                description="17 missing bars",
            )
        )
        # The check sensor turns the failure into an open alert, as the daemon would.
        sensor = build_check_failure_alert_sensor()
        sensor(dg.build_sensor_context(instance=instance, definitions=defs))

    code, out = run_status(capsys)
    assert code == 2, out
    first = out.splitlines()[0]
    assert ": CRITICAL" in first
    assert "breakers: source:exchange forced_open (exchange maintenance)" in out
    assert row_where(read_table(out, "breaker"), breaker="source:exchange")["state"] == "FORCED_OPEN"
    asset = check_key.asset_key.to_user_string()
    failed = row_where(read_table(out, "asset"), asset=asset, check=check_key.name)
    assert (failed["severity"], failed["description"]) == ("error", "17 missing bars")
    assert row_where(read_table(out, "severity"), alert=f"check:{asset}:{check_key.name}")  # the open alert

    code, raw = run_status(capsys, "--json")
    status = json.loads(raw)
    assert code == 2 and status["health"]["status"] == "critical"
    assert status["breakers"]["source:exchange"]["state"] == "forced_open"
    assert [a["key"] for a in status["open_alerts"]] == [f"check:{asset}:{check_key.name}"]
    assert status["failed_checks"][0]["check"] == check_key.name


def _cpu_samples(url, now, values_by_age):
    from alphapulse_assets.monitoring.metrics import ResourceSample, SampleStore

    store = SampleStore(url)
    for age, cpu in values_by_age:
        store.add(ResourceSample(at=now - age, cpu_percent=cpu, memory_percent=40.0, host="h"))


def test_a_past_cpu_spike_does_not_keep_status_critical_and_a_sustained_one_does(project, capsys):
    """Two busy minutes an hour ago, whose critical alert the stopped resource sensor never resolved: status
    is not critical. CPU at 97 % for the last 16 minutes (sampled every 30 s): critical, and it says why."""
    import time

    from alphapulse_assets.alerting.alert_store import AlertStore
    from alphapulse_assets.recovery.errors import Severity

    make_healthy(project)
    url, now = platform_db_url(), time.time()
    _cpu_samples(url, now, [(3600 - 30 * i, 99.0) for i in range(5)] + [(30 * i, 30.0) for i in range(20)])
    AlertStore(url).upsert_open(
        key="resource:cpu_percent",
        severity=Severity.CRITICAL,
        title="cpu_percent 99%",
        body="",
        source="resource_metrics_sensor",
        labels={},
        at=now - 3500,
    )
    code, raw = run_status(capsys, "--json")
    status = json.loads(raw)
    assert code == 0 and status["health"]["status"] != "critical", status["health"]["reasons"]
    resources = next(c for c in status["health"]["checks"] if c["name"] == "resources")
    assert resources["status"] == "healthy" and resources["reason"].startswith("cpu 30.0%")

    from alphapulse_assets.monitoring.metrics import SampleStore

    SampleStore(url).prune(now + 1)
    _cpu_samples(url, now, [(30 * i, 97.0) for i in range(33)])  # 16 minutes at 97 %, the newest now
    code, raw = run_status(capsys, "--json")
    status = json.loads(raw)
    assert code == 2 and status["health"]["status"] == "critical"
    assert any(
        r.startswith("resources: cpu 97.0%, at or above 90% for 15 min (critical)") for r in status["health"]["reasons"]
    )


DISK = {"full": True}


@dg.op
def write_candles():
    if DISK["full"]:  # what SQLite says when the platform database's disk is full
        raise sqlite3.OperationalError("database or disk is full")


@dg.job(name="ingest_market_data", tags={"alphapulse/dependency": "market_data"})
def ingest_stub():
    write_candles()


def test_status_after_a_disk_full_failure_says_critical_system_error(project, capsys):
    """A run failed on a full disk: the alert is critical (a system error, not a transient database fault),
    and ``status`` shows it, exits 2, and does not crash."""
    from alphapulse_assets.alerting.alert_store import AlertStore
    from alphapulse_assets.alerting.alerts import build_router_from_env
    from alphapulse_assets.monitoring.sensors import run_failure_alert

    make_healthy(project)
    with instance_for(project) as instance:
        result = ingest_stub.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        run_failure_alert(instance, instance.get_run_by_id(result.run_id), build_router_from_env(platform_db_url()))
    [alert] = AlertStore(platform_db_url()).open_alerts()
    assert alert.severity.value == "critical" and "system error" in alert.title

    code, out = run_status(capsys)
    assert code == 2, out
    assert ": CRITICAL" in out.splitlines()[0] and "run:ingest_market_data" in out
    code, raw = run_status(capsys, "--json")
    assert code == 2 and json.loads(raw)["open_alerts"][0]["severity"] == "critical"


def test_a_failure_found_after_the_job_succeeded_again_is_alerted_and_resolved(project):
    """A killed run is found dead only after the next run of its job started; when that run already succeeded
    (its resolve found nothing open), the late failure alert is raised for the record and resolved at once."""
    from alphapulse_assets.alerting.alert_store import AlertStore
    from alphapulse_assets.alerting.alerts import build_router_from_env
    from alphapulse_assets.monitoring.sensors import alert_run_outcome, run_failure_alert

    make_healthy(project)
    router = lambda: build_router_from_env(platform_db_url())  # noqa: E731
    with instance_for(project) as instance:
        DISK["full"] = True
        failed = ingest_stub.execute_in_process(instance=instance, raise_on_error=False)
        DISK["full"] = False
        try:
            ok = ingest_stub.execute_in_process(instance=instance)
        finally:
            DISK["full"] = True
        assert alert_run_outcome(instance, instance.get_run_by_id(ok.run_id), router) == "nothing open"
        said = run_failure_alert(instance, instance.get_run_by_id(failed.run_id), router())
    store = AlertStore(platform_db_url())
    assert store.open_alerts() == [], said
    assert ok.run_id in said and "resolved" in said
    events = [e.event for e in store.history(key="run:ingest_market_data")]
    assert events.count("raised") == 1 and events.count("resolved") == 1, events


def test_a_failed_run_seen_by_the_cli_and_the_sensor_at_once_is_alerted_once(project):
    """The CLI that ran a job and the daemon's run-failure sensor look at its failure at the same moment: both
    read the run before either tagged it (CI once saw two alerts for one run). Eight such lookers, each with
    the run as read before any tag and a router of its own, start together: one alert is raised, and the run's
    tag and every other looker name the one that raised it."""
    import threading

    from alphapulse_assets.alerting.alert_store import AlertStore
    from alphapulse_assets.alerting.alerts import build_router_from_env
    from alphapulse_assets.monitoring.sensors import run_failure_alert

    make_healthy(project)
    with instance_for(project) as instance:
        failed = ingest_stub.execute_in_process(instance=instance, raise_on_error=False)
        seen = instance.get_run_by_id(failed.run_id)  # the snapshot each looker holds: no tag yet
        routers = [build_router_from_env(platform_db_url()) for _ in range(8)]
        start = threading.Barrier(len(routers))
        said: dict[int, str] = {}

        def look(i: int) -> None:
            start.wait(30)
            said[i] = run_failure_alert(instance, seen, routers[i], by=f"looker {i}")

        threads = [threading.Thread(target=look, args=(i,)) for i in range(len(routers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # A looker that comes later still holds the stale snapshot: it must not raise either.
        said[len(routers)] = run_failure_alert(instance, seen, routers[0], by="late sensor")
        tag = instance.get_run_by_id(failed.run_id).tags["alphapulse/alerted"]

    raised = [i for i, text in said.items() if text.startswith("raised")]
    assert len(raised) == 1, said
    assert tag == f"looker {raised[0]}"
    assert all(text == f"already alerted by {tag}" for i, text in said.items() if i != raised[0]), said
    assert len(AlertStore(platform_db_url()).history("run:ingest_market_data", event="raised")) == 1


@pytest.fixture
def small_disk(tmp_path):
    """A real 64 MiB file system (tmpfs) for the project, to be filled; skipped where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_status_on_a_full_disk_is_critical_and_does_not_crash(small_disk):
    """The instance's disk fills up: ``status`` (the real command) still answers, critical, exit 2."""
    home = small_disk
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHAPULSE_", "DAGSTER_"))}
    env["DAGSTER_HOME"] = str(home)
    command = [str(Path(sys.executable).parent / "alphapulse"), "status", "--no-sources"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr  # the instance and platform database exist now
    with open(home / "filler", "wb") as fh:  # fill the disk to the last byte
        chunk = b"\0" * 2**20
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    full = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    out = full.stdout + full.stderr
    assert "Traceback" not in out, out
    assert full.returncode == 2, out
    assert ": CRITICAL" in (full.stdout.splitlines() or [""])[0] and "system error" in full.stdout, out
