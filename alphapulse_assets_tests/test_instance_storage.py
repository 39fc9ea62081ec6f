"""The local instance's storage (dagster.yaml -> alphapulse_assets/instance_storage.py) on real SQLite files:
the project's own dagster.yaml, runs read back, the stock Dagster storage and this one reading each other's
files, other processes writing at the same time, a writer killed mid-run, more run files than open
connections, and a broken setting."""

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

from alphapulse_assets import instance_storage
from alphapulse_assets.instance_storage import PooledSqliteStorage
from alphapulse_assets_tests.pg_harness import free_port

REPO = Path(__file__).resolve().parent.parent
STOCK_YAML = "storage:\n  sqlite:\n    base_dir: .alphapulse/storage\ntelemetry:\n  enabled: false\n"

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
        assert isinstance(instance.get_ref().storage_data.rehydrate(as_type=PooledSqliteStorage), PooledSqliteStorage)
        results = [_materialize(instance, day) for day in ("2024-01-01", "2024-01-02")]
        assert all(r.success for r in results)
        assert _materialized_days(instance) == ["2024-01-01", "2024-01-02"]
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("prices"), "positive")])
        assert check[dg.AssetCheckKey(dg.AssetKey("prices"), "positive")].status.value == "SUCCEEDED"
        run = instance.get_run_by_id(results[-1].run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert [e for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.is_step_success]
        # Run files are made from a template: not a run itself, and stamped at the same schema revision as
        # a run file Dagster's own storage creates.
        assert sorted(instance.event_log_storage.get_all_run_ids()) == sorted(r.run_id for r in results)
    storage = home / ".alphapulse" / "storage"
    for name in ("history/runs.db", "history/runs/index.db", "schedules/schedules.db"):
        assert (storage / name).exists(), name
    revision = "SELECT version_num FROM alembic_version"
    ours = sqlite3.connect(storage / "history" / "runs" / f"{results[0].run_id}.db").execute(revision).fetchall()
    with dg.instance_for_test() as stock:
        stock_run = _materialize(stock, "2024-01-01").run_id
        stock_db = Path(stock.event_log_storage.path_for_shard(stock_run))
        assert sqlite3.connect(stock_db).execute(revision).fetchall() == ours
        schema = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
        ours_schema = sqlite3.connect(storage / "history" / "runs" / f"{results[0].run_id}.db").execute(schema)
        assert sqlite3.connect(stock_db).execute(schema).fetchall() == ours_schema.fetchall()
    mode = sqlite3.connect(storage / "history" / "runs" / "index.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_stock_dagster_storage_and_pooled_storage_read_each_others_files(tmp_path, monkeypatch):
    home = _home(tmp_path, monkeypatch, STOCK_YAML)
    with dg.DagsterInstance.from_config(str(home)) as stock:
        assert _materialize(stock, "2024-01-01").success
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")  # an existing project upgrades in place
    with dg.DagsterInstance.from_config(str(home)) as pooled:
        assert _materialized_days(pooled) == ["2024-01-01"]
        assert _materialize(pooled, "2024-01-02").success
    (home / "dagster.yaml").write_text(STOCK_YAML)  # and can go back
    with dg.DagsterInstance.from_config(str(home)) as stock:
        assert _materialized_days(stock) == ["2024-01-01", "2024-01-02"]
        assert len(stock.get_runs()) == 2


WRITER = textwrap.dedent("""
    import sys, dagster as dg
    from alphapulse_assets_tests.test_instance_storage import prices
    instance = dg.DagsterInstance.get()
    for day in sys.argv[1:]:
        assert dg.materialize([prices], instance=instance, partition_key=day).success
        print(day, flush=True)
""")


def _writer(home: Path, days: list[str]) -> subprocess.Popen:
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", WRITER, *days], cwd=home, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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


def test_more_run_files_than_open_connections(tmp_path, monkeypatch):
    monkeypatch.setattr(instance_storage, "MAX_OPEN_FILES", 3)
    home = _home(tmp_path, monkeypatch)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run_ids = [_materialize(instance, f"2024-06-{d:02d}").run_id for d in range(1, 9)]
        pool = instance.event_log_storage._pool
        assert pool.open_files <= 3
        for run_id in run_ids:  # older run files were closed and reopen on demand
            assert any(e.dagster_event and e.dagster_event.is_step_success for e in instance.all_logs(run_id))
        assert len(_materialized_days(instance)) == 8


def test_a_wrong_synchronous_setting_is_refused_with_the_setting_named(tmp_path, monkeypatch):
    yaml_text = (REPO / "dagster.yaml").read_text().replace("synchronous: NORMAL", "synchronous: SOMETIMES")
    assert "SOMETIMES" in yaml_text
    home = _home(tmp_path, monkeypatch, yaml_text)
    with pytest.raises(ValueError, match=r"synchronous.*SOMETIMES.*dagster.yaml"):
        dg.DagsterInstance.from_config(str(home))


def test_full_sync_mode_is_applied_to_connections(tmp_path, monkeypatch):
    home = _home(tmp_path, monkeypatch, (REPO / "dagster.yaml").read_text().replace("synchronous: NORMAL",
                                                                                     "synchronous: FULL"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert _materialize(instance, "2024-01-01").success
        engine = instance.run_storage._pool.engine(
            instance.run_storage._conn_string)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_the_web_ui_reads_runs_and_checks_from_this_storage(tmp_path, monkeypatch):
    import json
    import urllib.request

    home = _home(tmp_path, monkeypatch)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run_id = _materialize(instance, "2024-01-03").run_id
    (home / "defs.py").write_text("import dagster as dg\nfrom alphapulse_assets_tests.test_instance_storage import prices\n"
                                  "defs = dg.Definitions(assets=[prices])\n")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    server = subprocess.Popen([str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
                               "-f", "defs.py"], cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        query = ('{ runOrError(runId: "%s") { ... on Run { status } } assetNodeOrError(assetKey: {path: ["prices"]}) '
                 '{ ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks { name '
                 'executionForLatestMaterialization { status } } } } } } }' % run_id)
        deadline, answer = time.monotonic() + 90, None
        while answer is None and time.monotonic() < deadline:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", json.dumps({"query": query}).encode(),
                                                 {"Content-Type": "application/json"})
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
