"""Benchmark (e): the same cadence on 1 and on 2 Celery workers, numeric threads capped to one per worker.

Production-shaped, as ``alphapulse_assets_tests/e2e/test_e2e_distributed.py``: PostgreSQL, the real daemon and
webserver on ``deploy/dagster.yaml``, Redis as the broker, ALPHAPULSE_EXECUTOR=celery, and N workers
(``celery -A alphapulse_assets.celery_app worker -c 1``, OMP/OpenBLAS/MKL threads = 1). Each pass has its own
deployment (fresh database, store and registry) so that both passes do the same work; ingestion is not timed.

The weekly cadence for one partition is timed two ways, both through the daemon's queue:

- ``one run``: the cadence job as the schedule launches it (training set step, then one models step for every
  symbol). Its two steps depend on each other, so a second worker has nothing to take: the ratio shows what
  the executor costs, not a speed-up.
- ``split``: the training set once, then the symbols' models in ``--ranges`` runs over symbol ranges (the
  models assets selected per range, the way a partition split into runs over symbol ranges executes), all
  submitted at once; the "training" pool gets one slot per worker (``dagster instance concurrency set``).

Wall time from the first submission to the last run's end; the ratio is 1 worker / 2 workers.

    .venv/bin/python bench/bench_distributed.py --symbols 8 --ranges 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from alphapulse_assets.market_data.symbols import range_tags, symbol_ranges  # noqa: E402
from alphapulse_assets_tests.dagster_harness import BIN_DIR, DagsterDeployment, cadence_tags  # noqa: E402
from alphapulse_assets_tests.pg_harness import PostgresServer, end_on_sigterm  # noqa: E402
from alphapulse_assets_tests.service_harness import RedisServer  # noqa: E402

ALL_SYMBOLS = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT",
               "LTCUSDT", "AVAXUSDT", "ATOMUSDT", "TRXUSDT"]  # fmt: skip
INGEST = ("2024-03-01", "2024-06-09")
WEEK = "2024-06-02"
ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def start_workers(deployment: DagsterDeployment, count: int) -> list[subprocess.Popen]:
    procs = []
    env = {**deployment.env, **ONE_THREAD}
    for i in range(count):
        log = open(deployment.log_dir / f"worker-{i}.log", "ab")
        procs.append(
            subprocess.Popen(
                [
                    str(BIN_DIR / "celery"),
                    "-A",
                    "alphapulse_assets.celery_app",
                    "worker",
                    "-c",
                    "1",
                    "--prefetch-multiplier=1",
                    "-n",
                    f"bench-{i}@%h",
                    "-Q",
                    "dagster",
                    "-l",
                    "WARNING",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=deployment.dagster_home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        )
        log.close()
    from celery import Celery

    control = Celery("bench", broker=deployment.env["ALPHAPULSE_CELERY__BROKER_URL"]).control
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if len({n for reply in control.ping(timeout=1.0) or [] for n in reply}) >= count:
            return procs
    raise RuntimeError(f"workers not up\n{deployment.logs()}")


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_all(deployment: DagsterDeployment, run_ids: list[str]) -> int:
    """Until every run (or, when it failed, its automatic retry: a run the code server was too busy to start is
    retried by run retries, as in production) has succeeded; returns the number of retries."""
    retries = 0
    for run_id in run_ids:
        for _attempt in range(3):
            status = deployment.wait_for_run(run_id, timeout=1800)
            if status == "SUCCESS":
                break
            children = deployment.wait_until(
                lambda rid=run_id: deployment.runs(tags=[{"key": "dagster/parent_run_id", "value": rid}]),
                timeout=300,
                what=f"the retry of failed run {run_id}",
            )
            run_id, retries = children[0]["runId"], retries + 1
        else:
            raise RuntimeError(f"run {run_id}: {status}\n{deployment.logs(80)}")
    return retries


def one_pass(pg: PostgresServer, redis: RedisServer, symbols: list[str], workers: int, ranges: int, n: int) -> dict:
    settings = {
        "ALPHAPULSE_SYMBOLS": ",".join(symbols),
        "ALPHAPULSE_SOURCES": "sample",
        "ALPHAPULSE_EXECUTOR": "celery",
        "ALPHAPULSE_CELERY__BROKER_URL": redis.url,
    }
    deployment = DagsterDeployment(pg, settings_env=settings, database=f"bench_dist_{os.getpid()}_{n}")
    procs: list[subprocess.Popen] = []
    try:
        deployment.start()
        proc = deployment.cli("ingest", "--start", INGEST[0], "--end", INGEST[1], timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        concurrency = subprocess.run(
            [str(BIN_DIR / "dagster"), "instance", "concurrency", "set", "training", str(workers)],
            env=deployment.env, cwd=deployment.dagster_home, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if concurrency.returncode != 0:
            raise RuntimeError(concurrency.stderr[-2000:])
        procs = start_workers(deployment, workers)
        # The week x every symbol (the ingestion seeded them, in this order), as the schedule asks for it.
        tags = cadence_tags(deployment.instance(), WEEK, symbols)

        start = time.perf_counter()
        retries = wait_all(deployment, [deployment.submit("weekly_cadence", tags=tags)])
        one_run = time.perf_counter() - start

        start = time.perf_counter()
        first = deployment.submit("weekly_cadence", tags=tags, asset_selection=[["training_sets", "weekly"]])
        retries += wait_all(deployment, [first])
        size = -(-len(symbols) // ranges)
        run_ids = []
        keys = [["models", "weekly"], ["champions", "weekly"]]
        for first, last in symbol_ranges(symbols, size):  # contiguous symbol ranges of the week
            run_ids.append(
                deployment.submit("weekly_cadence", tags=range_tags(WEEK, WEEK, first, last), asset_selection=keys)
            )
        retries += wait_all(deployment, run_ids)
        split = time.perf_counter() - start
        result = {
            "workers": workers,
            "one_run_s": round(one_run, 2),
            "split_s": round(split, 2),
            "runs": len(run_ids),
            "run_retries": retries,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        print(json.dumps(result), flush=True)
        return result
    finally:
        stop_workers(procs)
        deployment.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--ranges", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "distributed.json")
    args = parser.parse_args()
    symbols = ALL_SYMBOLS[: args.symbols]
    # A SIGTERM stops the servers and workers this script started (the finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pg, redis = PostgresServer(), RedisServer()
    try:
        pg.start()
        redis.start()
        results = [one_pass(pg, redis, symbols, w, args.ranges, n) for n, w in enumerate((1, 2))]
    finally:
        redis.stop()
        pg.stop()
    one, two = results
    report = {
        "symbols": len(symbols),
        "ranges": args.ranges,
        "week": WEEK,
        "passes": results,
        "ratio_one_run": round(one["one_run_s"] / two["one_run_s"], 2),
        "ratio_split": round(one["split_s"] / two["split_s"], 2),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    end_on_sigterm()  # a `kill` stops the servers this started, as Ctrl-C does
    main()
