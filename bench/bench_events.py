"""What one event costs the instance: the floor under the orchestration cost per symbol (benchmark b).

A cadence run writes about six events per (time, symbol) cell, each on its own (the planned materializations
of the training set, model and champion, the training set's and the model's materializations, the gate's
verdict, and the champion's materialization when promoted), so the orchestration cost per symbol is at least
six times what one event costs. Measured here on each instance storage the project ships (Dagster's stock
storages, configured by ``dagster.yaml`` and ``deploy/dagster.yaml``): one run whose step logs ``--events``
partitioned materializations through ``context.log_event``, as the models step does, timed inside the step
(the events are built before the clock starts).

    .venv/bin/python bench/bench_events.py --events 300
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def measure(storage: str, events: int, rounds: int) -> dict:
    keys = [f"SYN{i:04d}USDT" for i in range(events)]
    symbols = dg.DynamicPartitionsDefinition(name="bench_symbols")
    timings: dict[str, float] = {}

    @dg.asset(partitions_def=symbols)
    def cells(context: dg.AssetExecutionContext) -> None:
        made = [
            dg.AssetMaterialization(asset_key="cells", partition=key, metadata={"auc": 0.5, "rows": 1000})
            for key in keys
        ]
        t = time.perf_counter()
        for event in made:
            context.log_event(event)
        timings["log"] = time.perf_counter() - t

    job = dg.Definitions(assets=[cells], executor=dg.in_process_executor).resolve_implicit_global_asset_job_def()
    home = Path(tempfile.mkdtemp(prefix="alphapulse-bench-events-"))
    server = None
    if storage == "postgres":
        from alphapulse_assets_tests.pg_harness import PostgresServer

        server = PostgresServer().start()
        os.environ.update(
            {
                "DAGSTER_PG_HOST": "127.0.0.1",
                "DAGSTER_PG_PORT": str(server.port),
                "DAGSTER_PG_DB": server.create_database("events"),
                "DAGSTER_PG_USERNAME": "alphapulse",
                "DAGSTER_PG_PASSWORD": server.password,
            }
        )
        (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    else:
        (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    os.chdir(home)
    try:
        instance = dg.DagsterInstance.from_config(str(home))
        instance.add_dynamic_partitions("bench_symbols", keys)
        per_event = []
        for _ in range(rounds):
            result = job.execute_in_process(
                instance=instance,
                partition_key=keys[0],
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            )
            assert result.success
            stored = instance.get_records_for_run(result.run_id, limit=10_000).records
            assert sum(1 for r in stored if r.event_log_entry.is_dagster_event) >= events
            per_event.append(1000 * timings["log"] / events)
        per_event.sort()
        return {
            "storage": storage,
            "events": events,
            "rounds": rounds,
            "ms_per_event_median": round(per_event[len(per_event) // 2], 2),
            "ms_per_event_all": [round(x, 2) for x in per_event],
        }
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "events.json")
    args = parser.parse_args()
    load_start = os.getloadavg()
    results = [measure(s, args.events, args.rounds) for s in ("sqlite", "postgres")]
    out = {
        "results": results,
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out, indent=2))
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from alphapulse_assets_tests.pg_harness import end_on_sigterm

    end_on_sigterm()  # a `kill` stops the servers this started, as Ctrl-C does
    main()
