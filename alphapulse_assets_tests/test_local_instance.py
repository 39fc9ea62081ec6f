"""The local instance (the project's dagster.yaml: Dagster's stock SQLite storage under .alphapulse/) on real
files: runs and check results read back, other processes writing at the same time, a writer killed mid-run,
and the web UI reading what the runs wrote."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from alphapulse_assets_tests.pg_harness import free_port

REPO = Path(__file__).resolve().parent.parent

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")


@dg.asset(partitions_def=DAILY, check_specs=[dg.AssetCheckSpec("positive", asset="prices")])
def prices(context):
    yield dg.MaterializeResult(metadata={"rows": 3})
    yield dg.AssetCheckResult(passed=True, metadata={"day": context.partition_key})


def _home(tmp_path: Path, monkeypatch, yaml_text: str | None = None) -> Path:
    home = tmp_path / "project"
    home.mkdir(exist_ok=True)
    if yaml_text is None:
        shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    else:
        (home / "dagster.yaml").write_text(yaml_text)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.chdir(home)  # dagster.yaml's base_dir is relative to the project folder, as `make` runs it
    return home


def _materialize(instance: dg.DagsterInstance, day: str) -> dg.ExecuteInProcessResult:
    return dg.materialize([prices], instance=instance, partition_key=day)


def _materialized_days(instance: dg.DagsterInstance) -> list[str]:
    records = instance.fetch_materializations(dg.AssetKey("prices"), limit=1000).records
    return sorted(r.partition_key for r in records)


def test_project_dagster_yaml_stores_and_reads_runs_in_dagster_layout(tmp_path, monkeypatch):
    home = _home(tmp_path, monkeypatch)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        results = [_materialize(instance, day) for day in ("2024-01-01", "2024-01-02")]
        assert all(r.success for r in results)
        assert _materialized_days(instance) == ["2024-01-01", "2024-01-02"]
        key = dg.AssetCheckKey(dg.AssetKey("prices"), "positive")
        record = instance.get_latest_asset_check_evaluation_record(key)
        assert record is not None and record.event.dagster_event.event_specific_data.passed
        run = instance.get_run_by_id(results[-1].run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert [e for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.is_step_success]
    storage = home / ".alphapulse" / "storage"
    for name in ("history/runs.db", "history/runs/index.db", "schedules/schedules.db"):
        assert (storage / name).exists(), name
    for run in results:
        assert (storage / "history" / "runs" / f"{run.run_id}.db").exists()


WRITER = textwrap.dedent("""
    import sys, dagster as dg
    from alphapulse_assets_tests.test_local_instance import prices
    instance = dg.DagsterInstance.get()
    for day in sys.argv[1:]:
        assert dg.materialize([prices], instance=instance, partition_key=day).success
        print(day, flush=True)
""")


def _writer(home: Path, days: list[str]) -> subprocess.Popen:
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, *days],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_other_processes_write_while_this_one_holds_its_connections_open(tmp_path, monkeypatch):
    home = _home(tmp_path, monkeypatch)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert _materialize(instance, "2024-01-01").success  # this process now holds pooled connections
        days_a = [f"2024-02-{d:02d}" for d in range(1, 5)]
        days_b = [f"2024-03-{d:02d}" for d in range(1, 5)]
        writers = [_writer(home, days_a), _writer(home, days_b)]
        for w in writers:
            out, err = w.communicate(timeout=240)
            assert w.returncode == 0, err[-2000:]
        # Read through the connections opened before the other processes wrote: nothing stale, nothing lost.
        assert _materialized_days(instance) == sorted(["2024-01-01", *days_a, *days_b])
        assert len(instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))) == 9


@pytest.mark.slow
def test_writer_killed_mid_run_leaves_every_database_intact_and_finished_runs_complete(tmp_path, monkeypatch):
    home = _home(tmp_path, monkeypatch)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert _materialize(instance, "2024-01-01").success
    days = [f"2024-04-{d:02d}" for d in range(1, 29)]
    writer = _writer(home, days)
    finished = []
    deadline = time.monotonic() + 120
    while len(finished) < 3 and time.monotonic() < deadline:  # kill it while it is busy writing
        finished.append(writer.stdout.readline().strip())
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert len(finished) == 3, "the writer never got going"
    for db in (home / ".alphapulse" / "storage").rglob("*.db"):
        assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok", db
    with dg.DagsterInstance.from_config(str(home)) as instance:
        materialized = _materialized_days(instance)
        assert set(finished) <= set(materialized)  # every run the writer reported is fully there
        succeeded = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
        assert len(succeeded) >= 4
        assert _materialize(instance, "2024-05-01").success  # and the instance keeps working


@pytest.mark.e2e
@pytest.mark.slow
def test_the_web_ui_reads_runs_and_checks_from_this_storage(tmp_path, monkeypatch):
    import json
    import urllib.request

    home = _home(tmp_path, monkeypatch)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run_id = _materialize(instance, "2024-01-03").run_id
    (home / "defs.py").write_text(
        "import dagster as dg\nfrom alphapulse_assets_tests.test_local_instance import prices\n"
        "defs = dg.Definitions(assets=[prices])\n"
    )
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-f", "defs.py"],
        cwd=home,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        query = (
            f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ status }} }} assetNodeOrError(assetKey: {{path: ["prices"]}}) '
            "{ ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks { name "
            "executionForLatestMaterialization { status } } } } } } }"
        )
        deadline, answer = time.monotonic() + 90, None
        while answer is None and time.monotonic() < deadline:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    json.dumps({"query": query}).encode(),
                    {"Content-Type": "application/json"},
                )
                answer = json.load(urllib.request.urlopen(request, timeout=10))["data"]
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                time.sleep(1)
        assert answer is not None, "the webserver did not answer within 90 s"
        assert answer["runOrError"]["status"] == "SUCCESS"
        checks = answer["assetNodeOrError"]["assetChecksOrError"]["checks"]
        assert checks == [{"name": "positive", "executionForLatestMaterialization": {"status": "SUCCEEDED"}}]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_the_local_web_ui_shows_no_newsletter_pop_up(tmp_path, monkeypatch):
    """dagster-webserver opens its "community" sign-up dialog (newsletter) on 127.0.0.1 unless the instance
    says ``nux: enabled: false``; its GraphQL field ``shouldShowNux`` is ``instance.nux_enabled and not seen``."""
    home = _home(tmp_path, monkeypatch)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.nux_enabled is False
