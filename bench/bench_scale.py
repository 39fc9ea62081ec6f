"""Scale benchmark: a cadence through the platform against the best plain program for the same work.

One configuration (symbol count, instance storage) per invocation, since the symbol list is read at import.
For each cadence asked, interleaved and repeated (median), each repetition on an empty model registry:

- platform: the cadence's job on a real Dagster instance (the project's dagster.yaml for ``sqlite``,
  deploy/dagster.yaml on a throw-away PostgreSQL server for ``postgres``, the registry in the same
  database), executed in process as a run worker does once started: training set, then the models step,
  which spreads the symbols over ``ALPHAPULSE_SCALE__WORKERS`` worker processes (default: every core);
  its workers start cold each run, as in a new run worker;
- plain: the same pure functions without Dagster (read the window from the candle store, ``make_dataset``,
  then per symbol ``fit_symbol`` on all cores, one numeric thread per process, and ``record_symbol`` /
  ``promote`` in the parent), both ways: one process, and a pool of forked processes (the cheapest start
  there is); the faster of the two is "plain";
- empty run: a one-asset Dagster run that does nothing, on the same instance (Dagster's fixed cost per run).

Figures: ratio = platform / plain (benchmark a) and orchestration cost per symbol = (platform - plain -
empty run) / symbols (benchmark b).

    python bench/bench_scale.py --prepare --symbols 50 --cadences monthly --work /tmp/scale   # ingest once
    python bench/bench_scale.py --symbols 5 --cadences weekly,monthly --repeat 3 --work /tmp/scale
    python bench/bench_scale.py --symbols 50 --cadences weekly,monthly --repeat 1 --work /tmp/scale
    python bench/bench_scale.py --symbols 50 --cadences nightly --storage postgres --repeat 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The newest partition of each cadence that the ingested days cover, and the days to ingest for it.
KEYS = {"nightly": "2025-08-10", "weekly": "2025-08-03", "monthly": "2025-08-01"}
FIRST_DAY = {"nightly": "2025-07-15", "weekly": "2025-05-15", "monthly": "2024-01-01"}
LAST_DAY = "2025-08-31"  # the monthly partition 2025-08-01 reads up to the end of August


def _one_thread() -> None:
    import sklearn.ensemble  # noqa: F401 - OpenMP loaded before the cap, as a training would load it
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def plain_cadence(name: str, key: str, symbols: list[str], root: str, url: str, *, pooled: bool, cores: int) -> None:
    """The cadence's work for ``symbols`` at time partition ``key`` without Dagster, on an empty registry at
    (``root``, ``url``): the window read from the candle store (``ALPHAPULSE_HOME``), ``make_dataset``, then
    ``fit_symbol`` per symbol with one numeric thread (in this process, or over ``cores`` forked processes) and
    ``record_symbol`` / ``promote`` here. Also the baseline of ``bench_daemon.py``."""
    import pandas as pd

    from alphapulse_assets.market_data.resources import CandleStoreResource
    from alphapulse_assets.training.assets import (
        _candle_asset_for,
        _training_window,
        gate_config,
        partitions_for,
        spec_for,
    )
    from alphapulse_assets.training.cadence import fit_symbol, promote, record_symbol
    from alphapulse_assets.training.challenger import make_dataset
    from alphapulse_assets.training.registry import ModelRegistry

    spec, cfg = spec_for(name), gate_config(name)
    registry = ModelRegistry(root, url)
    window = partitions_for(name).time_window_for_partition_key(key)
    start, end = _training_window(spec, pd.Timestamp(window.end))
    days = [str(d.date()) for d in pd.date_range(start, end, freq="D", inclusive="left")]
    candles = CandleStoreResource().store.read_days(_candle_asset_for(spec.timeframe), days)
    rows = make_dataset(candles[candles["symbol"].isin(symbols)], spec)
    lo = pd.Timestamp(window.end) - pd.Timedelta(days=spec.window_days)
    parts = rows.by_symbol(symbols)

    def record(symbol, fitted):
        outcome = record_symbol(registry, fitted, spec, symbol=symbol, partition=key, code_version="bench")
        if outcome.gate.passed:
            promote(registry, symbol, name, outcome.version.version, key)

    for symbol in symbols:  # an empty registry: no champion, as in the platform's runs here
        assert registry.serving_champion(symbol, name) is None
    if not pooled:
        _one_thread()
        for symbol in symbols:
            ds = parts[symbol].between(lo, pd.Timestamp(window.end))
            record(symbol, fit_symbol(ds, spec, cfg, symbol=symbol, champion=None, champion_model=None))
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=cores, mp_context=context, initializer=_one_thread) as pool:
        futures = {
            pool.submit(
                fit_symbol,
                parts[s].between(lo, pd.Timestamp(window.end)),
                spec,
                cfg,
                symbol=s,
                champion=None,
                champion_model=None,
            ): s
            for s in symbols
        }
        for future in as_completed(futures):
            record(futures[future], future.result())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--cadences", default="weekly,monthly")
    parser.add_argument("--storage", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--plain",
        default="one_process,pool",
        help="plain variants to time (the faster is 'plain'); 'pool' alone spares a long one-process run",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="SQLite only: a folder kept between invocations; its instance and candles are ingested once "
        "(by the first invocation, for its symbols) and reused by later ones with as many symbols or fewer",
    )
    parser.add_argument("--prepare", action="store_true", help="only ingest into --work, measure nothing")
    parser.add_argument(
        "--profile", type=Path, default=None, help="write a cProfile of the first platform run here (pstats)"
    )
    args = parser.parse_args()
    cadences = [c for c in args.cadences.split(",") if c]
    if args.json:
        args.json = args.json.resolve()

    if args.work and args.storage != "sqlite":
        raise SystemExit("--work keeps a SQLite instance; PostgreSQL runs start their own server")
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="alphapulse-bench-scale-"))
    defaults = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT"]
    symbols = (defaults + [f"SYN{i:03d}USDT" for i in range(args.symbols)])[: args.symbols]
    os.environ.update(
        {
            "ALPHAPULSE_SYMBOLS": ",".join(symbols),
            "ALPHAPULSE_HOME": str(work / "home"),
            "DAGSTER_HOME": str(work / "dagster"),
        }
    )
    (work / "dagster").mkdir(parents=True, exist_ok=True)
    server = None
    if args.storage == "postgres":
        sys.path.insert(0, str(REPO))
        from alphapulse_assets_tests.pg_harness import PostgresServer

        server = PostgresServer().start()
        db = server.create_database("dagster")
        os.environ.update(
            {
                "DAGSTER_PG_HOST": "127.0.0.1",
                "DAGSTER_PG_PORT": str(server.port),
                "DAGSTER_PG_DB": db,
                "DAGSTER_PG_USERNAME": "alphapulse",
                "DAGSTER_PG_PASSWORD": server.password,
            }
        )
        (work / "dagster" / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    else:
        (work / "dagster" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    os.chdir(work / "dagster")
    sys.path.insert(0, str(REPO))
    try:
        out = run(args, cadences, symbols, work, server)
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


def run(args, cadences, symbols, work: Path, server) -> dict:
    import dagster as dg
    import pandas as pd
    from joblib.externals.loky import get_reusable_executor

    from alphapulse_assets.cli import ingest
    from alphapulse_assets.definitions import defs
    from alphapulse_assets.market_data.symbols import SYMBOLS_NAME, range_tags
    from alphapulse_assets.settings import get_settings
    from alphapulse_assets.training.assets import (
        ModelRegistryResource,
    )
    from alphapulse_assets.training.fanout import usable_cores, worker_count

    load_start = os.getloadavg()
    instance = dg.DagsterInstance.get()
    # The run's symbols are the instance's (dynamic partitions): add those it does not hold yet, in this order.
    known = set(instance.get_dynamic_partitions(SYMBOLS_NAME))
    instance.add_dynamic_partitions(SYMBOLS_NAME, [s for s in symbols if s not in known])
    first = min(FIRST_DAY[c] for c in cadences)
    marker = work / "ingested.json"
    done = json.loads(marker.read_text()) if marker.exists() else {"symbols": 0, "first": LAST_DAY}
    done.setdefault("last", "2025-08-10")
    setup_s = 0.0
    if done["symbols"] < len(symbols) or done["first"] > first or done["last"] < LAST_DAY:
        # Only the days missing at the end when the symbols and the start are covered already.
        covered = done["symbols"] >= len(symbols) and done["first"] <= first
        start = pd.Timestamp(done["last"]) + pd.Timedelta(days=1) if covered else pd.Timestamp(first)
        t0 = time.perf_counter()
        totals = ingest(start.date(), pd.Timestamp(LAST_DAY).date(), out=sys.stderr)
        setup_s = time.perf_counter() - t0
        print(f"setup: {totals['candles']:,} candles for {len(symbols)} symbols in {setup_s:.0f}s", flush=True)
        first = min(first, done["first"]) if covered else first
        marker.write_text(json.dumps({"symbols": len(symbols), "first": first, "last": LAST_DAY}))
        if covered and done["symbols"] > len(symbols):
            raise SystemExit(f"ingested the last days for {len(symbols)} symbols only: run --prepare with all")
    if args.prepare:
        return {"prepared": str(work), "symbols": len(symbols), "first": first, "setup_s": round(setup_s, 1)}
    cores = usable_cores()
    workers = worker_count(get_settings().scale.workers)

    registries = iter(range(10_000))
    run_dir = Path(tempfile.mkdtemp(prefix="registries-", dir=work))

    def new_registry() -> tuple[str, str]:
        """(artifact root, database URL) of an empty registry."""
        n = next(registries)
        root = run_dir / f"registry-{n}"
        root.mkdir()
        if server is None:
            return str(root / "models"), f"sqlite:///{root}/platform.db"
        return str(root / "models"), server.password_url(server.create_database(f"registry_{n}"))

    def plain(name: str, pooled: bool) -> None:
        plain_cadence(name, KEYS[name], symbols, *new_registry(), pooled=pooled, cores=cores)

    events: dict[str, int] = {}
    profiled: list[str] = []

    def platform(name: str) -> None:
        root, url = new_registry()
        job = defs.resolve_job_def(f"{name}_cadence")
        profiler = None
        if args.profile and not profiled:  # the first platform run only
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        result = job.execute_in_process(
            instance=instance,
            tags=range_tags(KEYS[name], KEYS[name], symbols[0], symbols[-1]),  # the time key x the run's symbols
            resources={"model_registry": ModelRegistryResource(artifact_root=root, db_url=url)},
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            raise_on_error=False,
        )
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(args.profile))
            profiled.append(name)
        if not result.success:
            raise SystemExit(f"platform run failed: {[e.step_key for e in result.all_events if e.is_step_failure]}")
        events[name] = len(instance.all_logs(result.run_id))
        # A run worker is a new process: its workers start cold. Stop them so the next run pays that too.
        get_reusable_executor().shutdown(wait=True, kill_workers=True)

    @dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2024-01-01"))
    def empty_asset() -> None:
        return None

    empty_job = dg.Definitions(
        assets=[empty_asset], executor=dg.in_process_executor
    ).resolve_implicit_global_asset_job_def()

    def empty_run() -> None:
        result = empty_job.execute_in_process(
            instance=instance,
            partition_key="2025-08-10",
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        events["empty_run"] = len(instance.all_logs(result.run_id))

    empty_run()  # the first run on a new instance creates its tables
    results = {}
    for name in cadences:
        steps = tuple(
            (label, fn)
            for label, fn in (
                ("plain_one_process", lambda name=name: plain(name, False)),
                ("plain_pool", lambda name=name: plain(name, True)),
                ("platform", lambda name=name: platform(name)),
                ("empty_run", empty_run),
            )
            if not label.startswith("plain_") or label[len("plain_") :] in args.plain.split(",")
        )
        times: dict[str, list[float]] = {label: [] for label, _ in steps}
        for i in range(args.repeat):
            for label, fn in steps if i % 2 == 0 else reversed(steps):
                t = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - t)
                print(f"{name} {label} #{i}: {times[label][-1]:.2f}s", flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        best_plain = min(v for k, v in med.items() if k.startswith("plain_"))
        results[name] = {
            **{f"{k}_s": round(v, 3) for k, v in med.items() if k.startswith("plain_")},
            "plain_s": round(best_plain, 3),
            "platform_s": round(med["platform"], 3),
            "ratio": round(med["platform"] / best_plain, 3),
            "empty_run_s": round(med["empty_run"], 3),
            "orchestration_ms_per_symbol": round(
                1000 * (med["platform"] - best_plain - med["empty_run"]) / len(symbols), 2
            ),
            "events_per_run": events[name],
            # What one event costs on this instance here and now: the empty run writes only a few.
            "ms_per_event_in_empty_run": round(1000 * med["empty_run"] / events["empty_run"], 2),
        }
        if args.json:  # after each cadence: a later failure keeps what was measured
            args.json.write_text(json.dumps({"symbols": len(symbols), "partial": True, "results": results}, indent=2))
    return {
        "symbols": len(symbols),
        "storage": args.storage,
        "repeat": args.repeat,
        "cores": cores,
        "platform_workers": workers,
        "setup_s": round(setup_s, 1),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from alphapulse_assets_tests.pg_harness import end_on_sigterm

    end_on_sigterm()  # a `kill` stops the servers this started, as Ctrl-C does
    main()
