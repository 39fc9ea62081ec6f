"""Local instance storage: the project's dagster.yaml (PooledSqliteStorage) against Dagster's stock SQLite storage.

Two instances on disk in one process, the same runs on each, interleaved and repeated (median):

- empty: a one-asset run that does nothing (Dagster's fixed cost per run);
- cadence-shaped: one step materializing ``--assets`` assets with ``--checks`` checks each (the shape of a
  cadence's models step: many small events).

The figure is pooled time / stock time (lower is better).

    python bench/bench_instance_storage.py [--repeat 7] [--assets 10] [--checks 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STOCK_YAML = "storage:\n  sqlite:\n    base_dir: storage\ntelemetry:\n  enabled: false\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--assets", type=int, default=10)
    parser.add_argument("--checks", type=int, default=1)
    args = parser.parse_args()

    import dagster as dg

    work = Path(tempfile.mkdtemp(prefix="alphapulse-bench-storage-"))
    project_yaml = (REPO / "dagster.yaml").read_text().replace(".alphapulse/storage", str(work / "pooled" / "storage"))
    instances = {}
    for name, text in (("stock", STOCK_YAML.replace("base_dir: storage", f"base_dir: {work / 'stock' / 'storage'}")),
                       ("pooled", project_yaml)):
        home = work / name
        home.mkdir()
        (home / "dagster.yaml").write_text(text)
        os.chdir(home)  # the project yaml's other relative paths (artifacts, compute logs) land in the temp home
        instances[name] = dg.DagsterInstance.from_config(str(home))

    @dg.asset
    def empty() -> None:
        return None

    specs = [dg.AssetSpec(f"model_{i}") for i in range(args.assets)]
    checks = [dg.AssetCheckSpec(f"rule_{j}", asset=f"model_{i}") for i in range(args.assets) for j in range(args.checks)]

    @dg.multi_asset(specs=specs, check_specs=checks)
    def models():
        for i in range(args.assets):
            yield dg.MaterializeResult(asset_key=f"model_{i}", metadata={"log_loss": 0.69})
            for j in range(args.checks):
                yield dg.AssetCheckResult(asset_key=f"model_{i}", check_name=f"rule_{j}", passed=True)

    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    jobs = {
        "empty": dg.Definitions(assets=[empty], executor=dg.in_process_executor).resolve_implicit_global_asset_job_def(),
        "cadence_shaped": dg.Definitions(assets=[models], executor=dg.in_process_executor).resolve_implicit_global_asset_job_def(),
    }
    times = {(job, name): [] for job in jobs for name in instances}
    for job_name, job in jobs.items():
        for name, instance in instances.items():  # first run creates tables: not timed
            job.execute_in_process(instance=instance, run_config=quiet)
        for _ in range(args.repeat):
            for name, instance in instances.items():
                t = time.perf_counter()
                job.execute_in_process(instance=instance, run_config=quiet)
                times[(job_name, name)].append(time.perf_counter() - t)
    results = {}
    for job_name in jobs:
        stock = statistics.median(times[(job_name, "stock")])
        pooled = statistics.median(times[(job_name, "pooled")])
        results[job_name] = {"stock_ms": round(stock * 1000, 1), "pooled_ms": round(pooled * 1000, 1),
                             "ratio": round(pooled / stock, 3)}
    print(json.dumps({"repeat": args.repeat, "assets": args.assets, "checks": args.checks, "results": results},
                     indent=2))


if __name__ == "__main__":
    main()
