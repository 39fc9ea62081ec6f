"""Cadence benchmark: a cadence run through Dagster against the same work in a plain Python loop.

For each of the nightly and weekly cadences, in one process, interleaved and repeated:

- platform: the cadence's job executed in process against a Dagster instance configured by the project's
  own dagster.yaml (what ``alphapulse run <cadence>`` does, and what the schedule's run worker does once it
  has started): training-set asset (features and labels for every symbol, stored as Parquet), then per
  symbol the challenger asset (train, evaluate, promotion_gate check, register) and the champion asset
  where the gate passed;
- plain: the same library functions in a loop: read the candle window from the store, build the
  training set, then ``training.cadence.train_symbol`` and ``promote`` per symbol;
- empty run: a one-asset Dagster run that does nothing, on the same instance: Dagster's fixed cost per run,
  so ``ratio_floor`` = (plain + empty run) / plain is the best any run through Dagster could reach here.

Each repetition starts from an empty model registry, so both paths do identical work. The figure is
platform time / plain time (lower is better). A launched run also pays its worker's start (a new process
importing the code location and opening the instance) and, with the daemon, the queue's pickup (4-5 s):
once per run, not per symbol; ``--worker-start`` times the first, reported apart.

    python bench/bench_cadences.py --symbols 5 [--repeat 3]
    python bench/bench_cadences.py --symbols 50 --repeat 1
    python bench/bench_cadences.py --backfill-days 365 --cadences "" --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cadences", default="nightly,weekly")
    parser.add_argument(
        "--backfill-days",
        type=int,
        default=0,
        help="also time a backfill of this many nightly partitions (runs of 92 days, as the policy)",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--worker-start",
        action="store_true",
        help="also time a run worker's start (new process, import, instance), reported apart",
    )
    args = parser.parse_args()
    if args.json:
        args.json = args.json.resolve()  # the benchmark runs in its temporary instance folder

    work = Path(tempfile.mkdtemp(prefix="alphapulse-bench-cadence-"))
    defaults = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT"]
    symbols = (defaults + [f"SYN{i:02d}USDT" for i in range(args.symbols)])[: args.symbols]
    # Settings are read at import: point everything at the temp folder before importing the platform.
    os.environ.update(
        {
            "ALPHAPULSE_SYMBOLS": ",".join(symbols),
            "ALPHAPULSE_HOME": str(work / "home"),
            "DAGSTER_HOME": str(work / "dagster"),
        }
    )
    (work / "dagster").mkdir(parents=True)
    repo = Path(__file__).resolve().parent.parent
    # The project's own instance config (storage, compute logs, pools...), relative paths under the temp home.
    (work / "dagster" / "dagster.yaml").write_text((repo / "dagster.yaml").read_text())
    os.chdir(work / "dagster")
    sys.path.insert(0, str(repo))

    import dagster as dg
    import pandas as pd

    from alphapulse_assets.cli import ingest
    from alphapulse_assets.definitions import defs
    from alphapulse_assets.market_data.symbols import SYMBOLS_NAME, range_tags
    from alphapulse_assets.training.assets import _build_training_set, _candle_asset_for, gate_config, spec_for
    from alphapulse_assets.training.cadence import promote, train_symbol
    from alphapulse_assets.training.registry import ModelRegistry

    keys = {"nightly": "2024-06-10", "weekly": "2024-06-02"}
    backfill_first = pd.Timestamp("2024-06-12", tz="UTC")
    start = pd.Timestamp("2024-03-01", tz="UTC")
    end = max(pd.Timestamp("2024-06-12", tz="UTC"), backfill_first + pd.Timedelta(days=args.backfill_days + 1))
    # One instance for the whole benchmark, as a run worker has one for its run: opening an instance (Dagster
    # checks each database's schema revision) is part of the worker's start, measured apart below.
    instance = dg.DagsterInstance.get()
    # The run's symbols are the instance's (dynamic partitions): add those it does not hold yet, in this order.
    known = set(instance.get_dynamic_partitions(SYMBOLS_NAME))
    instance.add_dynamic_partitions(SYMBOLS_NAME, [s for s in symbols if s not in known])
    # Candles go in as the platform ingests them (quality checks recorded per day): a training set reads only
    # days whose blocking checks passed.
    t0 = time.perf_counter()
    totals = ingest(start.date(), (end - pd.Timedelta(days=1)).date(), out=sys.stderr)
    print(
        f"setup: {totals['candles']:,} candles for {len(symbols)} symbols ingested in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )

    def worker_start() -> float:
        """What a launched run pays before its first step: a new process importing the code location and
        opening the instance (the queue's pickup, 4-5 s with the daemon, comes on top)."""
        t = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import dagster as dg; import alphapulse_assets.definitions; dg.DagsterInstance.get()",
            ],
            check=True,
            cwd=os.getcwd(),
            env=os.environ.copy(),
        )
        return time.perf_counter() - t

    class Window:  # what _build_training_set reads from a Dagster context
        instance = dg.DagsterInstance.get()

        def __init__(self, partitions_def, key):
            self.partition_keys = [f"{key}|{s}" for s in symbols]  # the time key x the run's symbols
            self.partition_time_window = partitions_def.time_window_for_partition_key(key)

    def plain(name: str, registry_dir: Path) -> None:
        spec, cfg = spec_for(name), gate_config(name)
        registry = ModelRegistry(str(registry_dir / "models"), f"sqlite:///{registry_dir}/platform.db")
        from alphapulse_assets.market_data.resources import CandleStoreResource
        from alphapulse_assets.training.assets import partitions_for

        ds, _ = _build_training_set(
            Window(partitions_for(name), keys[name]),
            CandleStoreResource(),
            name,
            spec,
            _candle_asset_for(spec.timeframe),
        )
        for symbol in symbols:
            outcome = train_symbol(
                registry, ds.for_symbol(symbol), spec, cfg, symbol=symbol, partition=keys[name], code_version="bench"
            )
            if outcome.gate.passed:
                promote(registry, symbol, name, outcome.version.version, keys[name])

    events_per_run: dict[str, int] = {}

    def platform(name: str, registry_dir: Path) -> None:
        os.environ["ALPHAPULSE_PLATFORM_DB_URL"] = f"sqlite:///{registry_dir}/platform.db"
        from alphapulse_assets.training.assets import ModelRegistryResource

        job = defs.resolve_job_def(f"{name}_cadence")
        result = job.execute_in_process(
            instance=instance,
            tags=range_tags(keys[name], keys[name], symbols[0], symbols[-1]),
            resources={
                "model_registry": ModelRegistryResource(
                    artifact_root=str(registry_dir / "models"), db_url=f"sqlite:///{registry_dir}/platform.db"
                )
            },
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            raise_on_error=False,
        )
        if not result.success:  # a rejected challenger does not fail a run: anything failed here is a fault
            raise SystemExit(f"platform run failed: {[e.step_key for e in result.all_events if e.is_step_failure]}")
        events_per_run[name] = len(instance.all_logs(result.run_id))  # what the run wrote to the instance

    @dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2024-01-01"))
    def empty_asset() -> None:
        return None

    empty_job = dg.Definitions(
        assets=[empty_asset], executor=dg.in_process_executor
    ).resolve_implicit_global_asset_job_def()

    def floor() -> float:
        """Dagster's fixed cost of one run on this instance: a one-asset run that does nothing."""
        t = time.perf_counter()
        empty_job.execute_in_process(
            instance=instance,
            partition_key="2024-06-10",
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        return time.perf_counter() - t

    def backfill_days() -> list[str]:
        return [str(d.date()) for d in pd.date_range(backfill_first, periods=args.backfill_days, freq="D")]

    def plain_backfill(registry_dir: Path) -> None:
        from alphapulse_assets.market_data.resources import CandleStoreResource
        from alphapulse_assets.training.assets import partitions_for

        spec, cfg = spec_for("nightly"), gate_config("nightly")
        registry = ModelRegistry(str(registry_dir / "models"), f"sqlite:///{registry_dir}/platform.db")
        days = backfill_days()
        pdef = partitions_for("nightly")

        class Range:
            partition_keys = [f"{d}|{s}" for d in days for s in symbols]
            partition_time_window = type("W", (), {"end": pdef.time_window_for_partition_key(days[-1]).end})

        ds, _ = _build_training_set(Range(), CandleStoreResource(), "nightly", spec, "market_candles")
        for symbol in symbols:
            rows = ds.for_symbol(symbol)
            for day in days:
                end_ = pd.Timestamp(pdef.time_window_for_partition_key(day).end)
                outcome = train_symbol(
                    registry,
                    rows.between(end_ - pd.Timedelta(days=spec.window_days), end_),
                    spec,
                    cfg,
                    symbol=symbol,
                    partition=day,
                    code_version="bench",
                )
                if outcome.gate.passed:
                    promote(registry, symbol, "nightly", outcome.version.version, day)

    def platform_backfill(registry_dir: Path) -> None:
        from alphapulse_assets.training.assets import ModelRegistryResource

        job = defs.resolve_job_def("nightly_cadence")
        days = backfill_days()
        for i in range(0, len(days), 92):  # the backfill policy's runs
            chunk = days[i : i + 92]
            result = job.execute_in_process(
                instance=instance,
                tags=range_tags(chunk[0], chunk[-1], symbols[0], symbols[-1]),
                resources={
                    "model_registry": ModelRegistryResource(
                        artifact_root=str(registry_dir / "models"), db_url=f"sqlite:///{registry_dir}/platform.db"
                    )
                },
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
                raise_on_error=False,
            )
            if not result.success:
                raise SystemExit("platform backfill run failed")

    results = {}
    if args.backfill_days:
        times = {"plain": [], "platform": []}
        for i in range(args.repeat):
            for path, fn in (("plain", plain_backfill), ("platform", platform_backfill)):
                registry_dir = work / f"backfill-{path}-{i}"
                registry_dir.mkdir()
                t = time.perf_counter()
                fn(registry_dir)
                times[path].append(time.perf_counter() - t)
                print(f"backfill {path} #{i}: {times[path][-1]:.2f}s", flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        results[f"nightly_backfill_{args.backfill_days}d"] = {
            "plain_s": round(med["plain"], 3),
            "platform_s": round(med["platform"], 3),
            "ratio": round(med["platform"] / med["plain"], 3),
        }
    floor()  # first run on a new instance creates its tables
    for name in [c for c in args.cadences.split(",") if c]:
        times = {"plain": [], "platform": [], "floor": []}
        for i in range(args.repeat):
            for path, fn in (("plain", plain), ("platform", platform)):
                registry_dir = work / f"{name}-{path}-{i}"
                registry_dir.mkdir()
                t = time.perf_counter()
                fn(name, registry_dir)
                times[path].append(time.perf_counter() - t)
                print(f"{name} {path} #{i}: {times[path][-1]:.2f}s", flush=True)
            times["floor"].append(floor())
        med = {k: statistics.median(v) for k, v in times.items()}
        results[name] = {
            "plain_s": round(med["plain"], 3),
            "platform_s": round(med["platform"], 3),
            "ratio": round(med["platform"] / med["plain"], 3),
            # The best ratio any Dagster run could reach here: plain work plus an empty run.
            "empty_run_s": round(med["floor"], 3),
            "ratio_floor": round((med["plain"] + med["floor"]) / med["plain"], 3),
            "events_per_run": events_per_run[name],
        }
    if args.worker_start:
        results["run_worker_start_s"] = round(statistics.median(worker_start() for _ in range(args.repeat)), 3)
    out = {"symbols": len(symbols), "repeat": args.repeat, "results": results}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
