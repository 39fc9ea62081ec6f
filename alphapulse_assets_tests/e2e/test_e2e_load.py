"""Load: 24 partition runs queued at once go through the daemon's queue under the concurrency limits.

The cheapest job (candle ingestion of one day for the deployment's two symbols) keeps the test bounded;
what is under test is the queue, the launcher and the storage, not the work. Afterwards every partition
has exactly one new materialization of each of its three assets, no run was lost, the number of runs in
progress never exceeded ``max_concurrent_runs``, and the sensors kept ticking throughout.

24 runs are four times deploy/dagster.yaml's limit of 6 runs at once: the queue holds most of them most of the
time, which is what is tested (50 runs took 150-220 s of CI's time for the same checks).
"""

from __future__ import annotations

import time
from datetime import timedelta

import dagster as dg
import pytest
import yaml

from alphapulse_assets_tests.dagster_harness import PRODUCTION_YAML, RunSummary
from alphapulse_assets_tests.e2e.conftest import YESTERDAY

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

N_RUNS = 24
ASSETS = ("market_candles", "candles_1h", "candles_4h")
IN_PROGRESS = {"STARTING", "STARTED", "CANCELING"}
SENSORS_QUERY = """
query { sensorsOrError(repositorySelector: {repositoryLocationName: "alphapulse", repositoryName: "__repository__"}) {
  __typename ... on Sensors { results { name sensorState { status ticks(limit: 5) { timestamp status } } } } } }
"""
RUNS_QUERY = """
query ($tag: String!) { runsOrError(filter: {tags: [{key: "alphapulse/test", value: $tag}]}) {
  __typename ... on Runs { results { id status } } } }
"""


def _materializations(instance, asset: str, day: str) -> int:
    return len(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1000
        ).records
    )


def _running_sensors(d) -> dict[str, float]:
    """Running sensors and the time of their newest finished tick."""
    out = {}
    for sensor in d.graphql(SENSORS_QUERY)["sensorsOrError"]["results"]:
        if sensor["sensorState"]["status"] == "RUNNING":
            done = [t["timestamp"] for t in sensor["sensorState"]["ticks"] if t["status"] != "STARTED"]
            out[sensor["name"]] = max(done, default=0.0)
    return out


def test_partition_runs_queued_at_once_far_above_the_limit_complete_once_each(live_deployment):
    d = live_deployment
    instance = d.instance()
    limit = yaml.safe_load(PRODUCTION_YAML.read_text())["concurrency"]["runs"]["max_concurrent_runs"]
    assert N_RUNS >= 4 * limit, "the queue must hold runs: queue far more runs than may run at once"
    days = [str(YESTERDAY - timedelta(days=60 + i)) for i in range(N_RUNS)]
    before = {(a, day): _materializations(instance, a, day) for a in ASSETS for day in days}
    sensors_before = _running_sensors(d)

    load_started = time.time()
    run_ids = [
        d.submit("ingest_market_data", tags={"dagster/partition": day, "alphapulse/test": "load"}) for day in days
    ]
    assert len(set(run_ids)) == N_RUNS

    max_in_progress, heartbeats = 0, set()
    deadline = time.monotonic() + 900
    while True:
        runs = d.graphql(RUNS_QUERY, {"tag": "load"})["runsOrError"]["results"]
        statuses = [r["status"] for r in runs]
        max_in_progress = max(max_in_progress, sum(s in IN_PROGRESS for s in statuses))
        heartbeats.add(d.daemon_statuses()["SENSOR"]["lastHeartbeatTime"])
        if len(runs) == N_RUNS and all(s in ("SUCCESS", "FAILURE", "CANCELED") for s in statuses):
            break
        assert time.monotonic() < deadline, f"load not finished after 900 s: {sorted(statuses)}\n{d.logs()}"
        time.sleep(1)
    load_finished = time.time()

    # Nothing lost: every run succeeded, for the partition it was asked for.
    assert statuses.count("SUCCESS") == N_RUNS, sorted(statuses)
    assert max_in_progress <= limit, f"{max_in_progress} runs in progress at once, limit {limit}"
    for run_id, day in zip(run_ids, days, strict=False):
        summary = RunSummary(instance, run_id)
        assert summary.went_through_queue
        assert sorted(summary.materialized) == sorted((a, day) for a in ASSETS), (day, summary.materialized)
    # Nothing duplicated: exactly one new materialization per asset and partition.
    for (asset, day), count in before.items():
        assert _materializations(instance, asset, day) == count + 1, (asset, day)
    # No other run was created for these partitions (no double launch, no spurious retry).
    assert len(instance.get_runs(filters=dg.RunsFilter(tags={"alphapulse/test": "load"}))) == N_RUNS

    # The sensor daemon kept its heartbeat during the load, and every running sensor ticked after it began.
    assert len(heartbeats) >= 2 or load_finished - load_started < 30, heartbeats
    if sensors_before:
        d.wait_until(
            lambda: all(t > load_started for t in _running_sensors(d).values()),
            timeout=150,
            what="a tick of every running sensor after the load began",
            interval=3,
        )
