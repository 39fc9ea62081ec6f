"""Breaker sensor tick cost against the size of the run history: 100 vs 10,000 past runs.

A tick must cost what is new, not the whole history. For each history size the script fills a fresh
SQLite instance (the local default, run-sharded event log) with finished runs (half successes, half
failures, each with its run-status event), lets the sensor take its first tick, then repeatedly adds a few
new finished runs and times one tick through the real sensor (``build_sensor_context`` + cursor): the
platform path end to end (run-status events since the cursor, run records, the failed runs' step events,
breaker store updates in the platform DB, alerts, cursor). Ticks of both sizes are interleaved and the
median is reported, with the ratio 10,000 / 100.

    .venv/bin/python bench/bench_breaker_sensor.py [--big 10000] [--small 100] [--repeat 15] [--new 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore")

import dagster as dg  # noqa: E402
from dagster import DagsterEvent, DagsterEventType  # noqa: E402
from dagster._core.test_utils import create_run_for_test  # noqa: E402

from alphapulse_assets.alerting.alert_store import AlertStore  # noqa: E402
from alphapulse_assets.alerting.alerts import AlertRouter  # noqa: E402
from alphapulse_assets.alerting.channels import LogChannel  # noqa: E402
from alphapulse_assets.recovery.breaker_store import BreakerStore  # noqa: E402
from alphapulse_assets.recovery.config import load_recovery_config  # noqa: E402
from alphapulse_assets.recovery.sensors import build_breaker_sensor  # noqa: E402

JOB = "ingest_market_data"


def bulk_history(instance: dg.DagsterInstance, count: int, batch: int = 500) -> None:
    """``count`` finished runs: run rows and their run-status events, written in batches through Dagster's
    own storage statements (the same rows the instance writes; the per-run event shards of old runs are
    not created, since a tick never opens them). One run at a time costs about 0.2 s on SQLite here."""
    from dagster._core.events.log import EventLogEntry
    from dagster._core.storage.runs.schema import RunsTable
    from dagster._core.utils import make_new_run_id
    from dagster._time import get_current_datetime

    runs, events = instance.run_storage, instance.event_log_storage
    for first in range(0, count, batch):
        rows, entries = [], []
        for i in range(first, min(first + batch, count)):
            failed = bool(i % 2)
            status = dg.DagsterRunStatus.FAILURE if failed else dg.DagsterRunStatus.SUCCESS
            run = dg.DagsterRun(job_name=JOB, run_id=make_new_run_id(), status=status)
            rows.append(runs._get_run_insertion_values(run, get_current_datetime()))
            kind = DagsterEventType.RUN_FAILURE if failed else DagsterEventType.RUN_SUCCESS
            event = DagsterEvent(kind.value, job_name=JOB)
            entries.append(
                EventLogEntry(
                    error_info=None,
                    level=20,
                    user_message="",
                    run_id=run.run_id,
                    timestamp=time.time(),
                    dagster_event=event,
                    job_name=JOB,
                )
            )
        with runs.connect() as conn:
            conn.execute(RunsTable.insert(), rows)
        with events.index_connection() as conn:
            conn.execute(events.prepare_insert_event_batch(entries))


def finish_runs(instance: dg.DagsterInstance, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        run = create_run_for_test(instance, job_name=JOB, status=dg.DagsterRunStatus.STARTED)
        if i % 2:
            instance.report_run_failed(run, "bench: failed run")
        else:
            instance.report_dagster_event(DagsterEvent(DagsterEventType.RUN_SUCCESS.value, job_name=JOB), run.run_id)


class Setup:
    def __init__(self, root: Path, history: int):
        self.dir = root / f"h{history}"
        self.dir.mkdir()
        (self.dir / "dagster").mkdir()
        self._ctx = dg.instance_for_test(temp_dir=str(self.dir / "dagster"))
        self.instance = self._ctx.__enter__()
        t0 = time.perf_counter()
        bulk_history(self.instance, history)
        self.fill_seconds = time.perf_counter() - t0
        db = f"sqlite:///{self.dir / 'platform.db'}"
        store = BreakerStore(db)
        router = AlertRouter([LogChannel()], AlertStore(db))
        # A threshold it never reaches, so every tick does the same work.
        config = load_recovery_config(
            {"ALPHAPULSE_BREAKER__FAILURE_THRESHOLD": "1000000", "ALPHAPULSE_BREAKER__FAILURE_RATE_THRESHOLD": "none"}
        )
        self.sensor = build_breaker_sensor(store=lambda: store, router=lambda: router, config=lambda: config)
        self.cursor = self.tick()[0]
        self.added = history

    def tick(self):
        result = self.sensor(dg.build_sensor_context(instance=self.instance, cursor=getattr(self, "cursor", None)))
        return result.cursor, result.skip_reason.skip_message

    def timed_tick(self, new: int) -> float:
        finish_runs(self.instance, new, self.added)
        self.added += new
        t0 = time.perf_counter()
        self.cursor, message = self.tick()
        elapsed = time.perf_counter() - t0
        if new and f"from {new} run(s)" not in message:
            raise SystemExit(f"tick did not see the {new} new runs: {message}")
        return elapsed

    def close(self):
        self._ctx.__exit__(None, None, None)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--new", type=int, default=5, help="new finished runs before each timed tick")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"filling instances ({args.small:,} and {args.big:,} past runs) ...", flush=True)
        small, big = Setup(root, args.small), Setup(root, args.big)
        print(f"  fill: {args.small:,} runs {small.fill_seconds:.1f}s, {args.big:,} runs {big.fill_seconds:.1f}s")
        for setup in (small, big):  # warm both (imports, caches, SQLite pages)
            setup.timed_tick(args.new)
            setup.timed_tick(0)
        times = {"small": [], "big": [], "small0": [], "big0": []}
        for _ in range(args.repeat):
            times["small"].append(small.timed_tick(args.new))
            times["big"].append(big.timed_tick(args.new))
            times["small0"].append(small.timed_tick(0))
            times["big0"].append(big.timed_tick(0))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(
            f"tick with {args.new} new runs : {args.small:,} past runs {med['small'] * 1000:.1f} ms, "
            f"{args.big:,} past runs {med['big'] * 1000:.1f} ms, ratio {med['big'] / med['small']:.2f}"
        )
        print(
            f"tick with nothing new   : {args.small:,} past runs {med['small0'] * 1000:.1f} ms, "
            f"{args.big:,} past runs {med['big0'] * 1000:.1f} ms, ratio {med['big0'] / med['small0']:.2f}"
        )
        print(f"(median of {args.repeat}, interleaved; python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
        small.close()
        big.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
