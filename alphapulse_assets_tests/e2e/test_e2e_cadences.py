"""End to end through the real daemon on PostgreSQL: scheduled cadence ticks and the GraphQL client."""

from __future__ import annotations

import time
from itertools import pairwise

import dagster as dg
import pytest

from alphapulse_assets.training.registry import ModelRegistry
from alphapulse_assets_tests.dagster_harness import RunSummary
from alphapulse_assets_tests.e2e.conftest import SYMBOLS, YESTERDAY

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CADENCES = ("nightly", "weekly", "monthly")
SCHEDULE_MUTATION = """
mutation ($sel: ScheduleSelector!) {
  %s(scheduleSelector: $sel) { __typename ... on PythonError { message } ... on ScheduleStateResult { scheduleState { status } } }
}
"""


def _selector(name: str) -> dict:
    return {"repositoryLocationName": "alphapulse", "repositoryName": "__repository__", "scheduleName": name}


def _runs_of_schedule(instance, schedule: str):
    return instance.get_runs(filters=dg.RunsFilter(tags={"dagster/schedule_name": schedule}))


def test_scheduled_tick_of_each_cadence_goes_through_queue_and_materializes(live_deployment):
    d = live_deployment
    instance = d.instance()
    try:
        for name in CADENCES:
            result = d.graphql(SCHEDULE_MUTATION % "startSchedule", {"sel": _selector(f"{name}_schedule")})[
                "startSchedule"
            ]
            assert result["__typename"] == "ScheduleStateResult", result
        # The crons tick every minute in this deployment: within ~70 s each schedule has asked for a run.
        d.wait_until(
            lambda: all(_runs_of_schedule(instance, f"{n}_schedule") for n in CADENCES),
            timeout=150,
            what="a scheduled run of every cadence",
            interval=2,
        )
    finally:
        for name in CADENCES:  # back to the default (stopped)
            d.graphql(SCHEDULE_MUTATION % "resetSchedule", {"sel": _selector(f"{name}_schedule")})

    registry = ModelRegistry(str(d.alphapulse_home / "models"), d.database_url)
    # Each schedule's first run (the oldest), chosen once. The crons tick every minute here, so a schedule whose run
    # came early ticked again on the same newest partition while the others were awaited: those ticks must not
    # have asked for it again (a run key dedupes only within a tick; CI once found a second weekly run, not yet
    # started, and no gate verdict on it).
    first_run = {name: _runs_of_schedule(instance, f"{name}_schedule")[-1] for name in CADENCES}
    time.sleep(5)  # a tick in flight when the schedules were reset has launched its run, if it made one
    for name in CADENCES:
        runs = _runs_of_schedule(instance, f"{name}_schedule")
        assert [r.run_id for r in runs] == [first_run[name].run_id], (
            f"{name}: the schedule asked for its partition more than once: "
            f"{[(r.run_id, r.status.value, r.tags.get('dagster/asset_partition_range_start')) for r in runs]}"
        )
    for name in CADENCES:
        run = first_run[name]
        status = d.wait_for_run(run.run_id, timeout=300)
        summary = RunSummary(instance, run.run_id)
        key, first = run.tags["dagster/asset_partition_range_start"].split("|")
        assert (first, run.tags["dagster/asset_partition_range_end"]) == (SYMBOLS[0], f"{key}|{SYMBOLS[-1]}")
        assert summary.went_through_queue, (
            f"{name}: run was not enqueued and dequeued by the daemon: {summary.event_types}"
        )
        assert run.tags.get("alphapulse/trigger") == "schedule"
        assert not summary.step_failures, f"{name}: {summary.step_failures}\n{d.logs()}"
        # Rejections included: a rejected challenger is not a failure.
        assert status == "SUCCESS", f"{name}: run {run.run_id} {status}: {summary.event_types}\n{d.logs()}"
        materialized = set(summary.materialized)  # (asset/SYMBOL, time key) for each (time, symbol) partition
        for symbol in SYMBOLS:
            assert (f"training_sets/{name}/{symbol}", key) in materialized, (name, symbol, materialized)
            assert (f"models/{name}/{symbol}", key) in materialized, (name, symbol, materialized)
            checks = {c: p for a, c, p in summary.checks if a == f"models/{name}/{symbol}"}
            assert list(checks) == ["promotion_gate"], checks  # the gate was evaluated
            promoted = (f"champions/{name}/{symbol}", key) in materialized
            # A champion is materialized exactly when the gate passed.
            assert promoted == checks["promotion_gate"], (name, symbol, checks, promoted)
            # The registry (platform tables in the same PostgreSQL database) has this partition's challenger.
            versions = registry.versions(symbol, name)
            assert any(v.info.get("partition") == key for v in versions), (name, symbol)
    # The weekly gate is set to need more rows than exist: its rejection must be recorded, not promoted.
    weekly = RunSummary(instance, first_run["weekly"].run_id)
    assert ("models/weekly/BTCUSDT", "promotion_gate", False) in weekly.checks
    # Through GraphQL, as the UI reads it: the rejected symbol's champion is not "failed", its latest run
    # succeeded, and the gate check shows the rejection.
    week = weekly.run.tags["dagster/asset_partition_range_start"].split("|")[0]
    variables = {"path": ["champions", "weekly"], "partitions": [f"{week}|BTCUSDT"]}
    node = d.graphql(CHAMPION_QUERY, variables)["assetNodeOrError"]
    assert node["__typename"] == "AssetNode"
    info = d.graphql(LATEST_INFO_QUERY, {"keys": [{"path": ["champions", "weekly"]}]})["assetsLatestInfo"]
    assert info and (info[0]["latestRun"] or {}).get("status") in (None, "SUCCESS"), info
    assert not node["assetMaterializations"]  # the rejected symbol's week has no champion materialization
    executions = d.graphql(CHECK_HISTORY_QUERY, {"path": ["models", "weekly"]})["assetCheckExecutions"]
    # One verdict per symbol on its own partition, no "execution failed" row: the run's rows are verdicts, one
    # per symbol, and only verdicts in the whole history (other tests of the session ran the same check).
    mine = {e["partition"]: e["status"] for e in executions if e["runId"] == weekly.run.run_id}
    assert mine == {f"{week}|{s}": "FAILED" for s in SYMBOLS}, executions
    assert {e["status"] for e in executions} <= {"FAILED", "SUCCEEDED"}, executions


CHAMPION_QUERY = """
query ($path: [String!]!, $partitions: [String!]) { assetNodeOrError(assetKey: {path: $path}) {
  __typename ... on AssetNode { assetMaterializations(limit: 1, partitions: $partitions) { runId } } } }
"""
CHECK_HISTORY_QUERY = """
query ($path: [String!]!) { assetCheckExecutions(assetKey: {path: $path}, checkName: "promotion_gate", limit: 100) {
  status runId partition } }
"""
LATEST_INFO_QUERY = """
query ($keys: [AssetKeyInput!]!) { assetsLatestInfo(assetKeys: $keys) { latestRun { id status } } }
"""


def test_graphql_client_launches_a_run_and_reads_its_result(live_deployment):
    d = live_deployment
    client = d.client()
    key = (YESTERDAY - __import__("datetime").timedelta(days=3)).isoformat()
    run_id = client.submit_job_execution(
        "ingest_market_data", tags={"dagster/partition": key, "alphapulse/trigger": "graphql-client"}
    )
    deadline = time.monotonic() + 120
    status = client.get_run_status(run_id)
    while status not in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
        assert time.monotonic() < deadline, f"run {run_id} still {status}\n{d.logs()}"
        time.sleep(0.5)
        status = client.get_run_status(run_id)
    assert status == dg.DagsterRunStatus.SUCCESS, d.logs()
    summary = RunSummary(d.instance(), run_id)
    assert summary.went_through_queue, summary.event_types
    assert sorted(summary.materialized) == [("candles_1h", key), ("candles_4h", key), ("market_candles", key)]
    assert all(passed for asset, _c, passed in summary.checks if asset == "market_candles")
    record = (
        d.instance()
        .fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("market_candles"), asset_partitions=[key]), limit=1
        )
        .records[0]
    )
    metadata = record.asset_materialization.metadata
    assert metadata["rows"].value == 96 * len(SYMBOLS)  # one day of 15-minute bars per symbol
    assert metadata["synthetic_data"].value is True


RUN_WATCH_SENSORS = ("dead_run_sensor", "run_failure_alert_sensor", "run_success_resolve_sensor")
SENSOR_TICKS_QUERY = """
query { sensorsOrError(repositorySelector: {repositoryLocationName: "alphapulse", repositoryName: "__repository__"}) {
  __typename ... on Sensors { results { name minIntervalSeconds sensorState { ticks(limit: 3) { timestamp status } } } } } }
"""


def test_run_watching_sensors_tick_at_the_interval_the_settings_give(live_deployment):
    """The deployment sets ALPHAPULSE_MONITORING__RUN_STATUS_INTERVAL_SECONDS and __DEAD_RUN_INTERVAL_SECONDS
    to 5 (default 30): the code location declares that interval and the daemon ticks the sensors at it."""
    d = live_deployment

    def ticked():
        sensors = {s["name"]: s for s in d.graphql(SENSOR_TICKS_QUERY)["sensorsOrError"]["results"]}
        done = {n: [t["timestamp"] for t in sensors[n]["sensorState"]["ticks"]] for n in RUN_WATCH_SENSORS}
        return (sensors, done) if all(len(times) >= 2 for times in done.values()) else None

    sensors, done = d.wait_until(ticked, timeout=60, what="two ticks of each run-watching sensor", interval=1.0)
    assert {n: sensors[n]["minIntervalSeconds"] for n in RUN_WATCH_SENSORS} == dict.fromkeys(RUN_WATCH_SENSORS, 5)
    gaps = {n: round(min(b - a for a, b in pairwise(sorted(t))), 1) for n, t in done.items()}
    assert all(gap < 20 for gap in gaps.values()), gaps  # at the default 30 s, no gap would be under 30 s
