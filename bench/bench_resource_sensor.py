"""Resource sensor tick cost: CPU time per tick, and the share of one core at the 30 s interval.

Runs the real ``resource_metrics_sensor`` (real psutil, a SQLite platform database in a temporary folder,
a Dagster test instance) tick after tick with its cursor, as the daemon would, and measures the process's
CPU time (all threads) per tick. Side by side, in the same run and interleaved: the plain sampler alone
(``ResourceSampler.sample``, the limit: what any monitoring must read), and its parts (the process scan for
Dagster memory). Medians over rounds; the machine is shared, so wall times are for context only.

    python bench/bench_resource_sensor.py [--ticks 100] [--rounds 5] [--interval 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import dagster as dg
import psutil


def cpu_per_call(fn, n: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per call, averaged over ``n`` calls."""
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn()
    return (time.process_time() - c0) / n, (time.perf_counter() - w0) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=30.0)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-resource-")
    os.environ["ALPHAPULSE_PLATFORM_DB_URL"] = f"sqlite:///{tmp}/platform.db"
    for name in ("ALPHAPULSE_SLACK_WEBHOOK_URL", "ALPHAPULSE_ALERT_WEBHOOK_URL", "ALPHAPULSE_SMTP_HOST"):
        os.environ.pop(name, None)

    from alphapulse_assets.monitoring.metrics import ResourceSampler
    from alphapulse_assets.monitoring.sensors import build_resource_metrics_sensor

    sensor = build_resource_metrics_sensor("bench_resource_sensor")
    sampler = ResourceSampler(("/",), "dagster")
    state = {"cursor": None, "counters": None}

    with dg.instance_for_test() as instance:

        def tick():
            result = sensor(dg.build_sensor_context(instance=instance, cursor=state["cursor"]))
            state["cursor"] = result.cursor

        def sample_only():
            _, state["counters"] = sampler.sample(state["counters"])

        tick()  # warm up: tables created, imports done
        sample_only()
        rows = {"sensor tick": [], "sampler alone": [], "process scan": []}
        walls = {k: [] for k in rows}
        for _ in range(args.rounds):
            for name, fn in (
                ("sensor tick", tick),
                ("sampler alone", sample_only),
                ("process scan", sampler.dagster_memory),
            ):
                cpu, wall = cpu_per_call(fn, args.ticks)
                rows[name].append(cpu)
                walls[name].append(wall)

    procs = len(psutil.pids())
    print(
        f"host: {psutil.cpu_count()} cores, {procs} processes; {args.ticks} ticks x {args.rounds} rounds; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(f"| part | CPU ms per tick (median) | wall ms | share of one core at {args.interval:g} s |")
    print("|---|---|---|---|")
    for name, values in rows.items():
        cpu = statistics.median(values)
        print(
            f"| {name} | {cpu * 1e3:.2f} | {statistics.median(walls[name]) * 1e3:.2f} | {100 * cpu / args.interval:.4f} % |"
        )
    tick_cpu, base = statistics.median(rows["sensor tick"]), statistics.median(rows["sampler alone"])
    print(f"sensor tick / sampler alone: {tick_cpu / base:.2f}x")


if __name__ == "__main__":
    main()
