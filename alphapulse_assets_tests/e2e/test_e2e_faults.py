"""Fault injection through the real daemon on PostgreSQL: what an operator would check afterwards is that
nothing was lost and nothing wrong was promoted or read.

Each test is bounded: every wait has a timeout and raises with the daemon's and webserver's logs.
"""

from __future__ import annotations

import os
import signal
import time

import dagster as dg
import pandas as pd
import pytest

from alphapulse_assets.market_data.storage import ParquetPartitionStore
from alphapulse_assets.training.registry import ModelRegistry
from alphapulse_assets_tests.dagster_harness import RunSummary, cadence_tags
from alphapulse_assets_tests.e2e.conftest import SYMBOLS, YESTERDAY
from alphapulse_assets_tests.fake_exchange import KLINES

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STEP_EVENTS = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
EXCHANGE_ONLY = {"resources": {"market_data": {"config": {"sources": ["exchange"]}}}}


def registry(deployment) -> ModelRegistry:
    return ModelRegistry(str(deployment.alphapulse_home / "models"), deployment.database_url)


def candle_store(deployment) -> ParquetPartitionStore:
    return ParquetPartitionStore(str(deployment.alphapulse_home / "candles"))


def _step_states(instance, run_id: str) -> dict[str, str]:
    states = {}
    for record in instance.all_logs(run_id, of_type=STEP_EVENTS):
        states[record.dagster_event.step_key] = record.dagster_event.event_type.value
    return states


def _retry_of(instance, run_id: str):
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))
    return runs[0] if runs else None


def test_run_worker_killed_with_sigkill_during_training_is_detected_and_retried(live_deployment):
    d = live_deployment
    instance = d.instance()
    key = d.latest_key("weekly")
    run_id = d.submit("weekly_cadence", tags={**cadence_tags(instance, key, SYMBOLS), "alphapulse/test": "sigkill"})
    pid = d.wait_until(
        lambda: RunSummary(instance, run_id).worker_pid, timeout=120, what="the run worker's pid", interval=0.2
    )

    # Freeze the worker while a training step is running (started, not finished), then kill it.
    killed_in = None
    deadline = time.monotonic() + 120
    while killed_in is None:
        assert time.monotonic() < deadline, f"no training step seen running\n{d.logs()}"
        # The training step's key depends on how the model assets are grouped (one step per symbol, or one
        # multi-asset step per cadence): any running step that produces weekly models counts.
        running = [
            s
            for s, state in _step_states(instance, run_id).items()
            if "models" in s and "weekly" in s and state == "STEP_START"
        ]
        if running:
            os.kill(pid, signal.SIGSTOP)
            if _step_states(instance, run_id).get(running[0]) == "STEP_START":
                os.kill(pid, signal.SIGKILL)
                killed_in = running[0]
            else:
                os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)

    # Detected: the run is failed with the reason, not left STARTED forever.
    assert d.wait_for_run(run_id, timeout=120) == "FAILURE"
    failed = RunSummary(instance, run_id)
    assert any("signal 9" in m or "SIGKILL" in m for m in failed.engine_messages), failed.engine_messages
    assert _step_states(instance, run_id)[killed_in] == "STEP_START"  # the killed step never finished

    # Retried: run retries start a new run for the same partition, through the queue.
    retry = d.wait_until(lambda: _retry_of(instance, run_id), timeout=120, what="the retry of the killed run")
    d.wait_for_run(retry.run_id, timeout=300)
    again = RunSummary(instance, retry.run_id)
    assert retry.tags["dagster/asset_partition_range_start"] == f"{key}|{SYMBOLS[0]}"  # the same rectangle
    assert retry.tags.get("dagster/retry_number") == "1"
    assert again.went_through_queue
    assert not again.step_failures, again.step_failures
    # The retry trained every model the killed run had not finished (from the training set it had stored).
    done_before = {a for a, p in failed.materialized if p == key}
    done_after = {a for a, p in again.materialized if p == key}
    for symbol in SYMBOLS:
        assert f"models/weekly/{symbol}" in done_before | done_after, (done_before, done_after)
    assert {f"models/weekly/{s}" for s in SYMBOLS} - done_before, "the kill came after training had finished"

    # No half-written model is ever registered or read: every registered version verifies and loads.
    reg = registry(d)
    for symbol in SYMBOLS:
        versions = [v for v in reg.versions(symbol, "weekly") if v.info.get("partition") == key]
        assert versions, symbol
        for version in versions:
            reg.load(version)  # raises ArtifactIntegrityError on a partial or foreign file
        assert reg.champion(symbol, "weekly") is None  # the weekly gate rejects in this deployment
    # Every model file a reader could find by its name belongs to a registered, verified version.
    registered = {v.uri for s in SYMBOLS for v in reg.versions(s, "weekly")}
    on_disk = {str(p) for p in (d.alphapulse_home / "models").rglob("*.skops") if "weekly" in p.parts}
    assert on_disk <= registered, on_disk - registered


def test_postgres_stopped_and_restarted_during_a_run_loses_nothing(live_deployment, postgres_server):
    d = live_deployment
    instance = d.instance()
    start, end = YESTERDAY - pd.Timedelta(days=39), YESTERDAY - pd.Timedelta(days=10)
    days = [str(x.date()) for x in pd.date_range(start, end, freq="D")]
    before = {day: _materialization_count(instance, "market_candles", day) for day in days}
    run_id = d.submit(
        "ingest_market_data",
        tags={
            "dagster/asset_partition_range_start": days[0],
            "dagster/asset_partition_range_end": days[-1],
            "alphapulse/test": "postgres-restart",
        },
    )
    d.wait_until(
        lambda: "market_candles" in _step_states(instance, run_id),
        timeout=120,
        what="the ingestion step to start",
        interval=0.1,
    )
    postgres_server.stop_server_only()
    time.sleep(3)
    postgres_server.start()

    status = _wait_tolerating_outage(d, instance, run_id, timeout=300)
    runs = [run_id]
    if status != "SUCCESS":  # a crashed worker is retried by run retries; a failed step is re-launched
        retry = _retry_of(instance, run_id)
        if retry is None:
            retry_id = d.submit(
                "ingest_market_data",
                tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
            )
        else:
            retry_id = retry.run_id
        assert _wait_tolerating_outage(d, instance, retry_id, timeout=300) == "SUCCESS", d.logs()
        runs.append(retry_id)
    # Every day is there, readable and complete; each got at least one new materialization and the
    # successful run recorded exactly one per day.
    store = candle_store(d)
    frame = store.read_days("market_candles", days)
    assert frame.groupby(frame["timestamp"].dt.strftime("%Y-%m-%d")).size().to_dict() == {
        day: 96 * len(SYMBOLS) for day in days
    }
    final = RunSummary(instance, runs[-1])
    assert sorted(p for a, p in final.materialized if a == "market_candles") == days
    for day in days:
        assert _materialization_count(instance, "market_candles", day) >= before[day] + 1
    # The daemon recovered: fresh heartbeats from every daemon after the restart.
    d.wait_ready(time.monotonic() + 120, heartbeat_after=time.time())
    # And launching works again. The webserver's pooled connections died with the server: dagster-postgres
    # does not pre-ping them, so a request on a stale one fails once (and the pool is then refreshed).
    again = d.submit("ingest_market_data", tags={"dagster/partition": days[0]})
    assert d.wait_for_run(again, timeout=180) == "SUCCESS", d.logs()


def _wait_tolerating_outage(d, instance, run_id, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            run = instance.get_run_by_id(run_id)
            if run.is_finished:
                return run.status.value
        except Exception:  # the database is coming back
            pass
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} not finished after {timeout} s\n{d.logs()}")


def _materialization_count(instance, asset: str, day: str) -> int:
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1000
    )
    return len(result.records)


@pytest.mark.parametrize("fault", ["hang", "garbage"])
def test_source_that_hangs_or_returns_garbage_fails_cleanly_and_writes_nothing(live_deployment, fake_exchange, fault):
    d = live_deployment
    instance = d.instance()
    day = str(YESTERDAY - pd.Timedelta(days=5 if fault == "hang" else 6))
    store = candle_store(d)
    stored_before = store.read_days("market_candles", [day])
    count_before = _materialization_count(instance, "market_candles", day)
    first = fake_exchange.counts[KLINES] + 1
    for nth in range(first, first + 40):
        if fault == "hang":
            fake_exchange.hang(nth, seconds=30)  # far beyond ALPHAPULSE_SOURCE_TIMEOUT_SECONDS=2
        else:
            fake_exchange.garbage(nth, "arity")
    run_id = d.submit(
        "ingest_market_data",
        run_config=EXCHANGE_ONLY,
        tags={"dagster/partition": day, "alphapulse/test": f"source-{fault}"},
    )
    assert d.wait_for_run(run_id, timeout=180) == "FAILURE"
    summary = RunSummary(instance, run_id)
    assert fake_exchange.counts[KLINES] >= first  # the run really asked the fake exchange
    (failure,) = [f for f in summary.step_failures if f[0] == "market_candles"]
    message = failure[2].lower()
    if fault == "hang":
        assert "transient" in message and ("timed out" in message or "timeout" in message), message
        assert summary.retries_up >= 1  # transient: retried by the asset's RetryPolicy before giving up
    else:
        assert "permanent" in message, message
        assert summary.retries_up == 0  # garbage is not worth retrying
    # Nothing written: no materialization, and the stored day is exactly what it was.
    assert not [m for m in summary.materialized if m[0] == "market_candles"]
    assert _materialization_count(instance, "market_candles", day) == count_before
    pd.testing.assert_frame_equal(store.read_days("market_candles", [day]), stored_before)


CHAMPION_EVENTS = """
query ($key: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $key) { __typename ... on Asset {
    assetMaterializations(limit: 10, partitions: $partitions) { metadataEntries { label ... on TextMetadataEntry { text } } } } }
}
"""


def test_a_cli_rollback_shows_on_the_champion_asset_in_the_ui(live_deployment):
    """The operator's rollback, through the real CLI on the PostgreSQL deployment, read back through the web
    UI's GraphQL API: the champion asset's newest materialization says which version, from which, who and why.
    (A symbol of its own, so no cadence in this session trains against these seeded models.)"""
    from sklearn.linear_model import LogisticRegression

    d = live_deployment
    reg = registry(d)
    symbol = "ROLLBACKUSDT"
    versions = []
    for c in (1.0, 2.0):
        mv = reg.register(
            symbol,
            "weekly",
            LogisticRegression(C=c).fit([[0.0], [1.0], [0.2], [0.8]], [0, 1, 0, 1]),
            info={"gate_passed": True, "partition": "2024-05-26"},
        )
        reg.promote(mv, reason="seeded")
        versions.append(mv.version)
    refused = d.cli("models", "rollback", symbol, "weekly", "--to", str(versions[1]), "--reason", "no-op")
    assert refused.returncode != 0 and "already the champion" in refused.stderr, refused.stderr

    done = d.cli("models", "rollback", symbol, "weekly", "--to", str(versions[0]), "--reason", "bad week for v2")
    assert done.returncode == 0, done.stderr

    variables = {"key": {"path": ["champions", "weekly"]}, "partitions": [f"2024-05-26|{symbol}"]}
    found = d.graphql(CHAMPION_EVENTS, variables)["assetOrError"]
    assert found["__typename"] == "Asset", found
    [shown] = [{e["label"]: e.get("text") for e in m["metadataEntries"]} for m in found["assetMaterializations"]]
    assert shown["change"] == "rolled_back" and shown["reason"] == "bad week for v2"
    assert (shown["version"], shown["previous_version"]) == (f"v{versions[0]}", f"v{versions[1]}")
    assert shown["by"]  # the operator's user name


SENSOR_TICKS = """
query ($sel: SensorSelector!) {
  sensorOrError(sensorSelector: $sel) { __typename ... on Sensor { sensorState { status ticks(limit: 1) { timestamp status } } } }
}
"""


def test_daemon_restart_keeps_an_open_breaker_open(live_deployment):
    found = live_deployment.graphql(
        'query { assetNodeOrError(assetKey: {path: ["platform", "breakers"]}) { __typename } }'
    )
    if found["assetNodeOrError"]["__typename"] != "AssetNode":
        pytest.skip("breaker wiring (issue 4) has not landed in the definitions")
    from alphapulse_assets.recovery.breaker import CircuitState
    from alphapulse_assets.recovery.breaker_store import BreakerStore

    d = live_deployment
    store = BreakerStore(d.database_url)
    store.force_open("market_data", by="e2e-test", reason="daemon restart test")
    try:
        restarted_at = time.time()
        d.restart_daemon()
        selector = {
            "repositoryLocationName": "alphapulse",
            "repositoryName": "__repository__",
            "sensorName": "breaker_sensor",
        }

        def ticked_since_restart():
            state = d.graphql(SENSOR_TICKS, {"sel": selector})["sensorOrError"]["sensorState"]
            return [t for t in state["ticks"] if t["timestamp"] > restarted_at and t["status"] != "STARTED"]

        # The breaker sensor runs again after the restart, and the breaker is still held open.
        d.wait_until(ticked_since_restart, timeout=120, what="a breaker sensor tick after the restart", interval=2)
        assert store.get("market_data").state is CircuitState.FORCED_OPEN
    finally:
        store.reset("market_data", by="e2e-test", reason="test finished")
