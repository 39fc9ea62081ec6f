"""Benchmark (c): many symbols' nightly and weekly end to end through the daemon on PostgreSQL.

Production-shaped, as the end-to-end tests: PostgreSQL, the real daemon and webserver on ``deploy/dagster.yaml``
(queued run coordinator, a run worker process per run), the default multiprocess executor, the models step
spreading the symbols over the usable cores. Candles are ingested by the ``alphapulse ingest`` command first
(not timed). Then each cadence's partition is submitted through the GraphQL API as one run over all symbols,
the way its schedule launches it, and timed from submission to the run's end (queue pickup, run worker start,
code loading, both steps and every event written to PostgreSQL).

Baseline in the same invocation, on the same candles: ``bench_scale.plain_cadence`` (the same pure functions
without Dagster, over forked processes: the best plain program), on an empty registry like the platform's.
Ratio = platform wall time / plain.

    .venv/bin/python bench/bench_daemon.py --symbols 500 --cadences nightly,weekly
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_scale import FIRST_DAY, KEYS, LAST_DAY, plain_cadence  # noqa: E402

from alphapulse_assets_tests.dagster_harness import DagsterDeployment, RunSummary, cadence_tags  # noqa: E402
from alphapulse_assets_tests.pg_harness import PostgresServer, end_on_sigterm  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--cadences", default="nightly,weekly")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "daemon.json")
    args = parser.parse_args()
    cadences = [c for c in args.cadences.split(",") if c]
    defaults = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT"]
    symbols = (defaults + [f"SYN{i:03d}USDT" for i in range(args.symbols)])[: args.symbols]
    settings = {"ALPHAPULSE_SYMBOLS": ",".join(symbols), "ALPHAPULSE_SOURCES": "sample"}
    load_start = os.getloadavg()
    pg = PostgresServer().start()
    deployment = DagsterDeployment(pg, settings_env=settings, database=f"bench_daemon_{os.getpid()}")
    out: dict = {"symbols": len(symbols), "storage": "postgres", "cadences": {}}
    try:
        deployment.start()
        first = min(FIRST_DAY[c] for c in cadences)
        t = time.perf_counter()
        proc = deployment.cli("ingest", "--start", first, "--end", LAST_DAY, timeout=3600)
        if proc.returncode != 0:
            raise SystemExit(f"ingest failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        out["ingest_s"] = round(time.perf_counter() - t, 1)
        print(f"ingested {first}..{LAST_DAY} for {len(symbols)} symbols in {out['ingest_s']} s", flush=True)
        instance = deployment.instance()
        for name in cadences:
            tags = cadence_tags(instance, KEYS[name], symbols)
            t = time.perf_counter()
            run_id = deployment.submit(f"{name}_cadence", tags=tags)
            status = deployment.wait_for_run(run_id, timeout=3600)
            wall = time.perf_counter() - t
            if status != "SUCCESS":
                raise SystemExit(f"{name} run {run_id}: {status}\n{deployment.logs(80)}")
            summary = RunSummary(instance, run_id)
            out["cadences"][name] = {
                "platform_s": round(wall, 2),
                "events_per_run": len(summary.events),
                "materialized": len(summary.materialized),
                "checks": len(summary.checks),
            }
            print(f"{name}: {wall:.1f} s through the daemon, {len(summary.events)} events", flush=True)
        # The baseline: the same work on the same candles, without Dagster, each on an empty registry, with the
        # deployment's processes stopped (an idle daemon still ticks its sensors) and its candles kept.
        for name in ("daemon", "webserver"):
            deployment.stop_process(name)
        os.environ.update({"ALPHAPULSE_HOME": str(deployment.alphapulse_home), **settings})
        from alphapulse_assets.training.fanout import usable_cores

        work = Path(tempfile.mkdtemp(prefix="alphapulse-bench-daemon-"))
        for name in cadences:
            root = work / name
            root.mkdir()
            t = time.perf_counter()
            plain_cadence(
                name, KEYS[name], symbols, str(root / "models"), f"sqlite:///{root}/platform.db",
                pooled=True, cores=usable_cores(),
            )  # fmt: skip
            plain = time.perf_counter() - t
            row = out["cadences"][name]
            row.update({"plain_s": round(plain, 2), "ratio": round(row["platform_s"] / plain, 2)})
            print(f"{name}: plain {plain:.1f} s, ratio {row['ratio']}", flush=True)
    finally:
        deployment.stop()
        pg.stop()
    out["load_average_start"] = [round(x, 2) for x in load_start]
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    end_on_sigterm()  # a `kill` stops the servers this started, as Ctrl-C does
    main()
