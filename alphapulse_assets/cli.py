"""The operator's command line: ``alphapulse <command>``.

Every command runs through the same Dagster definitions and instance as the daemon and the web UI, so
what it does shows in the UI's run history. With no DAGSTER_HOME set, the project folder (the one holding
``dagster.yaml``) is used.
"""

from __future__ import annotations

import argparse
import math
import os
import select
import signal
import sys
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from alphapulse_assets.text_tables import print_table  # reads no settings; imports only tabulate

# The package's other modules are imported inside the commands, not here: the asset modules read the settings when
# imported, which must follow _prepare_home (DAGSTER_HOME, working folder), and importing the definitions takes
# 2-3 s, so `alphapulse --help` and argument errors answer at once (0.13 s; test_layering.py keeps it so).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _prepare_home() -> Path:
    """Use DAGSTER_HOME if set, else this project folder; run from there so relative paths resolve. Then check
    every setting, before anything runs."""
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT).resolve()
    if not (home / "dagster.yaml").exists():
        raise SystemExit(f"alphapulse: no dagster.yaml in DAGSTER_HOME={home}; set DAGSTER_HOME to the project folder")
    os.environ["DAGSTER_HOME"] = str(home)
    os.chdir(home)
    from alphapulse_assets.config_check import check_configuration

    check_configuration()
    return home


def _windows(start: date, end: date, days_per_run: int) -> list[tuple[date, date]]:
    if days_per_run < 1 or end < start:
        raise ValueError(f"no day to ingest: {start}..{end} in runs of {days_per_run} day(s)")
    out, cursor = [], start
    while cursor <= end:
        last = min(cursor + timedelta(days=days_per_run - 1), end)
        out.append((cursor, last))
        cursor = last + timedelta(days=1)
    return out


# Our own lines report progress and failures; the full event log is in the UI for every run.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Stopped(SystemExit):
    """A SIGTERM or Ctrl-C stopped a run: the run is CANCELED and the command exits 128 + signal."""


class _RunWatch:
    """Watches one in-process run from a thread: a SIGTERM/SIGINT marks the run CANCELING at once, and every
    ``every`` seconds a run that waits for a concurrency-pool slot says which pool and which run holds it.

    Dagster replaces the signal handlers while it executes; the signal's wake-up byte (``set_wakeup_fd``)
    still reaches this thread whichever Python handler is installed."""

    def __init__(self, instance, run_id: str, out, every: float = 5.0):
        self.instance, self.run_id, self.out, self.every = instance, run_id, out, every
        self.signum: int | None = None
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="alphapulse-run-watch", daemon=True)

    def __enter__(self):
        self._old_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        signal.set_wakeup_fd(self._old_fd)
        self._done.set()
        os.write(self._write, b"\0")  # wake the thread
        self._thread.join(timeout=10)
        os.close(self._read)
        os.close(self._write)

    def _watch(self) -> None:
        from alphapulse_assets.recovery.runs import pool_waits, request_stop

        last = ""
        while not self._done.is_set():
            ready, _, _ = select.select([self._read], [], [], self.every)
            for byte in os.read(self._read, 64) if ready else b"":
                if byte in SIGNAL_EXIT and self.signum is None and not self._done.is_set():
                    self.signum = byte
                    name = signal.Signals(byte).name
                    print(f"\nalphapulse: {name} received: stopping run {self.run_id}", file=self.out, flush=True)
                    request_stop(self.instance, self.run_id, f"stop requested: {name} to process {os.getpid()}")
            if not ready and self.signum is None:
                waits = "; ".join(pool_waits(self.instance, self.run_id))
                if waits and waits != last:
                    print(f"\nalphapulse: run {self.run_id} is {waits}", file=self.out, flush=True)
                last = waits


# out=None prints to sys.stdout as it is when called: a default bound at import would keep writing to a stdout
# that was replaced (and closed) since, e.g. by a caller capturing output.
def execute(job, *, out=None, tags: dict | None = None, **kwargs):
    """Execute a job in this process on the instance, as an operator's run: ended runs of dead CLI processes
    are ended first (their pool slots freed), the run names this process as its owner, a stop signal cancels
    it (``Stopped``), a wait for a pool slot is reported, and its failure or success goes to the alerts."""
    import dagster as dg

    from alphapulse_assets.monitoring.sensors import alert_run_outcome
    from alphapulse_assets.recovery.runs import end_dead_runs, owner_tags

    instance = dg.DagsterInstance.get()
    for line in end_dead_runs(instance):
        print(f"alphapulse: ended {line}", file=out, flush=True)
    run_id = str(uuid.uuid4())
    with _RunWatch(instance, run_id, out) as watch:
        result = job.execute_in_process(
            instance=instance,
            run_id=run_id,
            run_config=QUIET_LOGS,
            tags={**(tags or {}), **owner_tags()},
            raise_on_error=False,
            **kwargs,
        )
    if watch.signum is not None:
        run = instance.get_run_by_id(run_id)
        print(
            f"alphapulse: run {run_id} stopped by {signal.Signals(watch.signum).name}; it is "
            f"{run.status.value if run else 'gone'}",
            file=sys.stderr,
            flush=True,
        )
        raise Stopped(SIGNAL_EXIT[watch.signum])
    alert_run_outcome(instance, instance.get_run_by_id(run_id))  # the daemon's sensors will not alert twice
    return result


def ingest(start: date, end: date, *, days_per_run: int = 92, out=None) -> dict:
    """Materialize the market-data assets for [start, end] in runs of up to ``days_per_run`` days."""
    from alphapulse_assets.definitions import defs

    job = defs.resolve_job_def("ingest_market_data")
    windows = _windows(start, end, days_per_run)
    totals = {"runs": 0, "candles": 0, "failed_checks": [], "run_ids": []}
    for i, (a, b) in enumerate(windows, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(windows)}] market data {a}..{b}", end=" ", flush=True, file=out)
        result = execute(
            job,
            out=out,
            tags={"dagster/asset_partition_range_start": str(a), "dagster/asset_partition_range_end": str(b)},
        )
        totals["runs"] += 1
        totals["run_ids"].append(result.run_id)
        if not result.success:
            print("FAILED", file=out)
            reason = "; ".join(failure_lines(result)) or "see the run in the UI"
            raise SystemExit(f"alphapulse: ingestion of {a}..{b} failed (run {result.run_id}): {reason}")
        mats = result.asset_materializations_for_node("market_candles")
        rows = sum(int(m.metadata["rows"].value) for m in mats)  # one materialization per day, with its rows
        failed = _failed_check_days(result.get_asset_check_evaluations())
        totals["candles"] += rows
        totals["failed_checks"] += [f"{c} ({a}..{b})" for c in failed]
        flag = f", checks not passed: {', '.join(f'{c} on {n} day(s)' for c, n in failed.items())}" if failed else ""
        print(f"ok: {rows:,} candles in {time.perf_counter() - t0:.1f}s{flag}", flush=True, file=out)
    return totals


def _failed_check_days(evaluations) -> dict[str, int]:
    """{check: days it failed}; each day has its own verdict, and the run's whole range one more."""
    days: dict[str, set] = {}
    for e in evaluations:
        if not e.passed:
            days.setdefault(e.check_name, set()).add(e.partition)
    return {check: len(parts - {None}) or 1 for check, parts in days.items()}


def run_cadence(name: str, partition_key: str | None = None, *, out=None, symbols: list[str] | None = None):
    """Run one cadence through the same definitions and instance as the daemon (no daemon needed): its partition
    for the active symbols (or ``symbols``), as one run, or one per ALPHAPULSE_SCALE__SYMBOLS_PER_RUN symbols.
    Returns the last run's result (the first failed one, if any) and the partition key."""
    import dagster as dg

    from alphapulse_assets.definitions import defs
    from alphapulse_assets.market_data.symbols import ensure_seeded
    from alphapulse_assets.training.schedules import cadence_run_tags, latest_partition_key

    key = partition_key or latest_partition_key(name, datetime.now(timezone.utc))
    if key is None:
        raise SystemExit(f"alphapulse: no complete {name} partition yet")
    symbols = symbols or ensure_seeded(dg.DagsterInstance.get())
    if not symbols:
        raise SystemExit("alphapulse: no active symbol: add one with `alphapulse symbols add SYMBOL`")
    results = []
    for tags in cadence_run_tags(name, key, symbols):
        t0 = time.perf_counter()
        first = tags["dagster/asset_partition_range_start"].split("|")[1]
        last = tags["dagster/asset_partition_range_end"].split("|")[1]
        span = f"{first}..{last}" if first != last else first
        print(f"{name} cadence, partition {key}, symbols {span} ...", end=" ", flush=True, file=out)
        result = execute(defs.resolve_job_def(f"{name}_cadence"), out=out, tags={**tags, "alphapulse/trigger": "cli"})
        status = (
            "done" if result.success else "FAILED: " + ("; ".join(failure_lines(result)) or "see the run in the UI")
        )
        print(f"{status} in {time.perf_counter() - t0:.1f}s (run {result.run_id})", file=out)
        results.append(result)
    return next((r for r in results if not r.success), results[-1]), key


def failure_lines(result) -> list[str]:
    """One line per failed step: its class and the real cause (not Dagster's "Exceeded max_retries")."""
    from alphapulse_assets.recovery.policies import step_failure_record

    return [
        f"{event.step_key}: {step_failure_record(event).describe()}"
        for event in result.all_events
        if event.is_step_failure
    ]


def _num(value, spec: str) -> str:
    """A figure as ``spec`` formats it, or "-" when there is none."""
    return format(value, spec) if isinstance(value, (int, float)) and math.isfinite(value) else "-"


CHAMPION_HEADERS = ("symbol", "cadence", "champion", "latest", "logloss", "base", "persist", "auc", "sharpe", "verdict")
CHAMPION_ALIGN = ("left", "left") + ("right",) * 7 + ("left",)


def champion_table(out=None) -> None:
    """Per symbol and cadence: champion, latest challenger's metrics next to the baselines, and the verdict
    (whole: a reason cut short can change a figure, e.g. ``p=0.062`` read as ``p=0.0``)."""
    import dagster as dg

    from alphapulse_assets.market_data.symbols import active_symbols
    from alphapulse_assets.settings import get_settings
    from alphapulse_assets.training.assets import ModelRegistryResource
    from alphapulse_assets.training.schedules import CADENCES

    registry = ModelRegistryResource().get()
    rows = []
    for symbol in active_symbols(dg.DagsterInstance.get()) or get_settings().symbols:
        for cadence in CADENCES:
            latest = registry.latest_version(symbol, cadence)
            if latest is None:
                rows.append([symbol, cadence, None, None, None, None, None, None, None, "not trained yet"])
                continue
            champion = registry.champion(symbol, cadence)
            m, b = latest.info.get("metrics", {}), latest.info.get("baselines", {})
            verdict = (
                "promoted" if latest.info.get("gate_passed") else f"rejected: {latest.info.get('gate_reason', '')}"
            )
            if champion and champion.version != latest.version and latest.info.get("gate_passed"):
                verdict = f"passed, champion is v{champion.version}"
            if latest.info.get("gate_verdict") == "held":
                verdict = (
                    "promoted after review"
                    if champion and champion.version == latest.version
                    else f"held for review: {latest.info.get('gate_reason', '')} "
                    f"(alphapulse models approve {symbol} {cadence} {latest.version} --reason ...)"
                )
            rows.append(
                [
                    symbol,
                    cadence,
                    f"v{champion.version}" if champion else "none",
                    f"v{latest.version}",
                    _num(m.get("log_loss"), ".4f"),
                    _num(b.get("base_rate", {}).get("log_loss"), ".4f"),
                    _num(b.get("persistence_calibrated", {}).get("log_loss"), ".4f"),
                    _num(m.get("auc"), ".3f"),
                    _num(m.get("sharpe"), ".2f"),
                    verdict,
                ]
            )
    print_table(CHAMPION_HEADERS, rows, CHAMPION_ALIGN, out=out)


def cmd_run(args: argparse.Namespace) -> int:
    _prepare_home()
    from alphapulse_assets.training.schedules import CADENCES

    names = CADENCES if args.cadence == "all" else (args.cadence,)
    failed = 0
    for name in names:
        result, _ = run_cadence(name, args.partition)
        failed += not result.success
    champion_table()
    return 1 if failed else 0


def cmd_models(args: argparse.Namespace) -> int:
    """Champions, versions and the promotion history; roll a symbol back."""
    _prepare_home()
    import getpass

    import dagster as dg

    from alphapulse_assets.training.assets import ModelRegistryResource

    registry = ModelRegistryResource().get(dg.DagsterInstance.get())
    symbol = args.symbol.upper() if getattr(args, "symbol", None) else None
    if symbol is not None:
        from alphapulse_assets.market_data.symbols import active_symbols
        from alphapulse_assets.settings import get_settings

        known = sorted(
            set(get_settings().symbols)
            | set(active_symbols(dg.DagsterInstance.get()))
            | {d.symbol for d in registry.history(None, None)}
        )
        if symbol not in known:
            print(
                f"alphapulse: unknown symbol {args.symbol!r}; known: {', '.join(known)} "
                "(ALPHAPULSE_SYMBOLS and the model registry)",
                file=sys.stderr,
            )
            return 2
    if args.models_command == "rollback":
        cadence = args.cadence_arg or args.cadence
        if cadence is None or (args.cadence_arg and args.cadence and args.cadence_arg != args.cadence):
            raise SystemExit("alphapulse: models rollback needs one cadence: alphapulse models rollback SYMBOL CADENCE")
        if args.force and args.to is None:
            raise SystemExit("alphapulse: --force needs --to N (the version to crown)")
        decision = registry.rollback(
            symbol,
            cadence,
            args.to,
            reason=args.reason,
            force=args.force,
            by=os.environ.get("USER") or getpass.getuser(),
        )
        print(
            f"{symbol} {cadence}: champion is now v{decision.version} (was v{decision.previous_champion}); "
            f"reason: {decision.reason} ({decision.by})"
        )
        return 0
    if args.models_command == "approve":
        decision = registry.approve(
            symbol, args.cadence_arg, args.version, reason=args.reason, by=os.environ.get("USER") or getpass.getuser()
        )
        print(
            f"{symbol} {args.cadence_arg}: champion is now v{decision.version} "
            f"(was {f'v{decision.previous_champion}' if decision.previous_champion else 'none'}); "
            f"reason: {decision.reason} ({decision.by})"
        )
        return 0
    if args.models_command == "promote-shadow":
        return _promote_shadow(registry, symbol, args, by=os.environ.get("USER") or getpass.getuser())
    if args.models_command == "history":
        decisions = registry.history(symbol, args.cadence)
        if not decisions:
            print("no decisions recorded yet")
            return 0
        print_table(
            ("when (UTC)", "symbol", "cadence", "action", "version", "prev", "reason", "by"),
            [
                [
                    f"{d.at:%Y-%m-%d %H:%M:%S}",
                    d.symbol,
                    d.cadence,
                    d.action,
                    f"v{d.version}" if d.version else None,
                    f"v{d.previous_champion}" if d.previous_champion else None,
                    d.reason,
                    d.by,
                ]
                for d in decisions
            ],
            ("left", "left", "left", "left", "right", "right", "left", "left"),
        )
        return 0
    champion_table()
    return 0


def _promote_shadow(registry, symbol: str, args: argparse.Namespace, *, by: str) -> int:
    """Promote a shadow only if it beats the champion live; exit 1 with the figures if it does not."""
    from alphapulse_assets.market_data.storage import ParquetPartitionStore
    from alphapulse_assets.settings import get_settings
    from alphapulse_assets.training import live_assets, live_scoring
    from alphapulse_assets.training.assets import spec_for

    cadence, cfg, now = args.cadence_arg, live_assets.live_config(), datetime.now(timezone.utc)
    spec = spec_for(cadence)
    store = ParquetPartitionStore(get_settings().candle_store_url)
    candles = live_assets.read_candles(store, spec, registry, [symbol], cfg, now, shadows=[args.version])
    try:
        decision, _ = live_scoring.promote_on_live_evidence(
            registry, candles, spec, symbol, args.version, cfg, now, reason=args.reason, by=by
        )
    except live_scoring.NotPromoted as exc:  # a refusal, not a failure: the figures say why
        print(f"alphapulse: {symbol} {cadence}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{symbol} {cadence}: champion is now v{decision.version} (was v{decision.previous_champion}); "
        f"reason: {decision.reason} ({decision.by})"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate the pipeline on history a user brings (files source), any bar size, against the baselines.

    The same quality rules and gate settings as the cadences: a symbol whose bars fail a blocking rule is
    refused, not evaluated; a file that cannot be read is reported in its own row. Exit 0 when at least one
    symbol was evaluated, 1 when none could be, 2 on bad arguments or settings."""
    import json

    import pandas as pd

    from alphapulse_assets.config_check import check_configuration
    from alphapulse_assets.text_tables import print_table
    from alphapulse_assets.training.display import costs_text
    from alphapulse_assets.training.folder_evaluation import FolderEvaluation, evaluate_folder

    settings = check_configuration()
    request = FolderEvaluation(
        files=Path(args.files),
        timeframe=args.timeframe,
        start=pd.Timestamp(args.start or "1970-01-01", tz="UTC"),
        end=pd.Timestamp(args.end, tz="UTC") if args.end else pd.Timestamp.now(tz="UTC").normalize(),
        symbols=tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip()) if args.symbols else None,
        source_timezone=args.timezone,
        n_splits=args.splits,
        min_train_bars=args.min_train_bars,
        min_validation=args.min_validation,
        calendar=args.calendar,
        fee_bps=args.fee_bps,
        slippage_bps=args.slippage_bps,
    )
    doc = evaluate_folder(request, settings)
    evaluated = doc["summary"]["evaluated"]
    if args.json:
        print(json.dumps(doc, indent=2, allow_nan=False))
    else:
        costs = doc["costs"]
        print(
            f"sharpe: long/flat strategy {costs_text(costs['fee_bps'], costs['slippage_bps'])}; annualised per symbol"
        )
        rows = []
        for r in doc["symbols"]:
            m, b, p = r.get("metrics", {}), r.get("baselines", {}), r.get("p_values", {})
            annual = r.get("annualisation")
            rows.append(
                [
                    r["symbol"] or r["file"],
                    r.get("bars"),
                    r.get("n_validation"),
                    _num(m.get("log_loss"), ".4f"),
                    _num(b.get("base_rate", {}).get("log_loss"), ".4f"),
                    _num(b.get("persistence_calibrated", {}).get("log_loss"), ".4f"),
                    _num(p.get("base_rate"), ".3f"),
                    _num(m.get("auc"), ".3f"),
                    _num(m.get("sharpe"), ".2f"),
                    f"{annual['calendar']} {annual['bars_per_year']:g}" if annual else None,
                    r.get("verdict") or f"{r['status']}: {r['error']}",
                ]
            )
        print_table(
            ["symbol", "bars", "n_val", "logloss", "base", "persist", "p(base)", "auc", "sharpe", "bars/yr", "verdict"],
            rows,
            align=["left", *["right"] * 9, "left"],
        )
        for r in doc["symbols"]:
            for note in r.get("notes") or ():
                print(f"note: {r['symbol']}: {note}")
    problems = len(doc["errors"])
    if problems:
        print(
            f"alphapulse: {problems} symbol(s) or file(s) not evaluated (refused, unreadable or too short): "
            "see their rows",
            file=sys.stderr,
        )
    if not evaluated:
        print("alphapulse: nothing could be evaluated", file=sys.stderr)
        return 1
    return 0


def demo_window(end: date) -> date:
    """The first candle day that the newest partition of every cadence needs."""
    import pandas as pd

    from alphapulse_assets.training.assets import _training_window, partitions_for, spec_for
    from alphapulse_assets.training.schedules import CADENCES, latest_partition_key

    now = datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
    starts = []
    for name in CADENCES:
        key = latest_partition_key(name, now)
        window = partitions_for(name).time_window_for_partition_key(key)
        starts.append(_training_window(spec_for(name), pd.Timestamp(window.end))[0].date())
    return min(starts)


def cmd_demo(args: argparse.Namespace) -> int:
    home = _prepare_home()
    from alphapulse_assets.settings import get_settings
    from alphapulse_assets.training.schedules import CADENCES

    settings = get_settings()
    end = args.end or (datetime.now(timezone.utc).date() - timedelta(days=1))
    start = max(settings.start_date, demo_window(end) if args.days is None else end - timedelta(days=args.days - 1))
    print(
        f"AlphaPulse demo: {len(settings.symbols)} symbols ({', '.join(settings.symbols)}), "
        f"source chain {' -> '.join(settings.sources)}, {start}..{end}"
    )
    if "sample" in settings.sources:
        print("Note: the sample source is a SYNTHETIC market generated on this machine, not real prices.")
    print(f"Dagster instance: {home}/dagster.yaml (SQLite under {home}/.alphapulse)")
    t0 = time.perf_counter()
    totals = ingest(start, end, days_per_run=args.days_per_run)
    print()
    print("Summary")
    print(f"  candle partitions : {(end - start).days + 1} days x 3 assets (market_candles, candles_1h, candles_4h)")
    print(f"  base candles      : {totals['candles']:,} ({settings.base_timeframe} bars)")
    print(f"  runs              : {totals['runs']} in {time.perf_counter() - t0:.1f}s")
    print(f"  candle store      : {settings.candle_store_url}")
    print(f"  checks not passed : {', '.join(totals['failed_checks']) or 'none'}")
    print()
    print("Retraining cadences (the newest partition of each, as their schedules would run them):")
    now = datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
    from alphapulse_assets.training.schedules import latest_partition_key

    failed = []
    for name in reversed(CADENCES):  # monthly first: the slowest, and the others do not depend on it
        result, _ = run_cadence(name, latest_partition_key(name, now))
        failed += [] if result.success else [name]
    print()
    champion_table()
    print()
    print("Open the web UI on this instance:")
    print(f"  cd {home} && DAGSTER_HOME=$PWD .venv/bin/dagster dev -h 127.0.0.1 -p 3000")
    print("  then http://127.0.0.1:3000 (Assets -> market_candles for partitions, checks and metadata)")
    if failed:
        print(f"alphapulse: the {', '.join(failed)} cadence(s) failed; see the runs above", file=sys.stderr)
        return 1
    return 0


def cmd_symbols(args: argparse.Namespace) -> int:
    """Add, retire, list and seed the symbols (the instance's dynamic partitions ``symbols``): no redeploy."""
    _prepare_home()
    import getpass

    import dagster as dg

    from alphapulse_assets.market_data import symbols as sym

    instance = dg.DagsterInstance.get()
    by = getpass.getuser()
    if args.symbols_command == "add":
        until = args.until or (datetime.now(timezone.utc).date() - timedelta(days=1))  # the last complete day
        if (args.until is not None and args.backfill is None) or (args.backfill and until < args.backfill):
            print(f"alphapulse: --until {until} needs --backfill START on or before it", file=sys.stderr)
            return 2
        try:
            added, already = sym.add_symbols(instance, args.symbols, by=by, reason=args.reason)
        except ValueError as exc:
            print(f"alphapulse: {exc}", file=sys.stderr)
            return 2
        for symbol in already:
            print(f"{symbol}: already active")
        for symbol in added:
            print(f"{symbol}: added (trained from the next run of each cadence; no redeploy)")
        if args.backfill and added:
            return _backfill_symbols(added, args.backfill, until)
        return 0
    if args.symbols_command == "retire":
        try:
            symbol = sym.retire_symbol(instance, args.symbol, by=by, reason=args.reason)
        except ValueError as exc:
            print(f"alphapulse: {exc}", file=sys.stderr)
            return 2
        print(f"{symbol}: retired (no longer trained or served; its history stays readable)")
        return 0
    if args.symbols_command == "sync":
        added = sym.sync_seed(instance)
        print(f"added from ALPHAPULSE_SYMBOLS: {', '.join(added)}" if added else "nothing to add")
        return 0
    active = sym.active_symbols(instance)
    records = sym.ledger().records()
    rows = []
    for symbol in active:
        r = records.get(symbol)
        rows.append(
            [
                symbol,
                "active",
                f"{r.since:%Y-%m-%d %H:%M}" if r else "-",
                r.added_by if r else "-",
                r.reason or "" if r else "",
            ]
        )
    for symbol, r in records.items():
        if symbol not in active and r.status == "retired":
            rows.append([symbol, "retired", f"{r.since:%Y-%m-%d %H:%M}", r.retired_by or "-", r.reason or ""])
    print_table(["symbol", "status", "since (UTC)", "by", "reason"], rows, ["left"] * 5)
    if not active:
        from alphapulse_assets.settings import get_settings

        print(
            f"no active symbol yet: the seed ALPHAPULSE_SYMBOLS ({', '.join(get_settings().symbols)}) is added by the "
            "first run, ingest or demo, or by `alphapulse symbols sync`"
        )
    return 0


def backfill_keys(name: str, start: date, end: date) -> list[str]:
    """The cadence's partitions that the candle days [start, end] fully cover: complete by ``end`` and with their
    whole training window (feature warm-up included) on or after ``start``."""
    import dagster as dg
    import pandas as pd

    from alphapulse_assets.training.assets import _training_window, partitions_for, spec_for

    spec, partitions = spec_for(name), partitions_for(name)
    first, after_end = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end + timedelta(days=1), tz="UTC")
    with dg.partition_loading_context(effective_dt=after_end.to_pydatetime()):
        keys = partitions.get_partition_keys()
    out = []
    for key in keys:
        window_end = pd.Timestamp(partitions.time_window_for_partition_key(key).end)
        if window_end <= after_end and _training_window(spec, window_end)[0] >= first:
            out.append(key)
    return out


def _backfill_symbols(symbols: list[str], start: date, end: date) -> int:
    """Ingest the days [start, end] (every active symbol: a day's candles are one partition) and run, for the
    new symbols, each cadence's partitions that those days cover (their whole window), one run per cadence."""
    from alphapulse_assets.definitions import defs
    from alphapulse_assets.market_data.symbols import range_tags
    from alphapulse_assets.training.schedules import CADENCES

    ingest(start, end)
    failed = 0
    for name in CADENCES:
        keys = backfill_keys(name, start, end)
        if not keys:
            print(f"{name}: no partition whose whole window lies in {start}..{end}")
            continue
        t0 = time.perf_counter()
        print(f"{name} backfill {keys[0]}..{keys[-1]} for {', '.join(symbols)} ...", end=" ", flush=True)
        result = execute(
            defs.resolve_job_def(f"{name}_cadence"),
            tags={**range_tags(keys[0], keys[-1], symbols[0], symbols[-1]), "alphapulse/trigger": "cli-backfill"},
        )
        failed += not result.success
        status = "done" if result.success else "FAILED: " + ("; ".join(failure_lines(result)) or "see the UI")
        print(f"{status} in {time.perf_counter() - t0:.1f}s (run {result.run_id})")
    return 1 if failed else 0


def cmd_ingest(args: argparse.Namespace) -> int:
    _prepare_home()
    ingest(args.start, args.end or args.start, days_per_run=args.days_per_run)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def load_code_location():
    """(ok, text, check keys): import the definitions the daemon and web UI load."""
    try:
        # Imported here: a definitions module that fails to import is reported by `status`, not a crash.
        from alphapulse_assets.definitions import defs

        repo = defs.get_repository_def()
        keys = list(repo.asset_graph.asset_check_keys)
        return (
            True,
            f"loaded: {len(list(repo.asset_graph.get_all_asset_keys()))} assets, {len(repo.sensor_defs)} sensors",
            keys,
        )
    except Exception as exc:  # noqa: BLE001 - a broken code location is a finding, not a crash
        return False, f"cannot load alphapulse_assets.definitions: {type(exc).__name__}: {exc}"[:400], []


def cmd_status(args: argparse.Namespace) -> int:
    """Health, breakers, cadences, champions, alerts and resources; exit 2 when critical (a probe)."""
    _prepare_home()
    import json

    import dagster as dg

    from alphapulse_assets.monitoring.status import (
        collect_status,
        exit_code,
        render_status,
        unopenable_instance_status,
    )

    try:
        instance = dg.DagsterInstance.get()
    except Exception as exc:  # noqa: BLE001 - a full disk or a broken database is a finding, not a crash
        status = unopenable_instance_status(exc)
    else:
        status = collect_status(instance, load_code_location, check_sources=not args.no_sources)
    print(json.dumps(status, indent=2, default=str) if args.json else render_status(status))
    return exit_code(status)


def cmd_predict(args: argparse.Namespace) -> int:
    """The champion's up-probability for the bar after the newest stored bar: a table, or one JSON object."""
    _prepare_home()
    import json

    import dagster as dg

    from alphapulse_assets.market_data.assets import quality_verdicts
    from alphapulse_assets.serving import Predictor
    from alphapulse_assets.serving.predictor import duration_text
    from alphapulse_assets.text_tables import print_table
    from alphapulse_assets.training.assets import ModelRegistryResource

    if bool(args.symbol) == bool(args.all):
        print("alphapulse: predict needs a SYMBOL or --all", file=sys.stderr)
        return 2
    # The instance: a champion file refused while loading shows on its champion asset, as from the daemon; and
    # the candles' quality verdicts, so that no answer comes from a day the cadences would refuse to train on.
    instance = dg.DagsterInstance.get()
    predictor = Predictor(
        registry=ModelRegistryResource().get(instance), refused_days=lambda days: quality_verdicts(instance, days)
    )
    from alphapulse_assets.market_data.symbols import UnknownSymbol, active_symbols, require_active

    if args.all:  # the active symbols: a retired one is not served
        results = predictor.predict_all(args.cadence, active_symbols(instance))
    else:
        try:
            symbol = require_active(instance, args.symbol)
        except UnknownSymbol as exc:
            print(f"alphapulse: {exc}", file=sys.stderr)
            return 1
        results = {symbol: predictor.predict_all(args.cadence, [symbol])[symbol]}
    failed = {s: r for s, r in results.items() if isinstance(r, Exception)}
    served = {s: r for s, r in results.items() if not isinstance(r, Exception)}
    if args.json:
        if args.all:
            document = {
                "cadence": args.cadence,
                "predictions": [p.to_dict() for p in served.values()],
                "errors": {s: str(e) for s, e in failed.items()},
            }
            print(json.dumps(document))
        elif served:
            print(json.dumps(next(iter(served.values())).to_dict()))
    elif served:
        print_table(
            ["symbol", "cadence", "version", "prob_up", "bar_time (UTC)", "for_bar (UTC)", "data_age"],
            [
                [
                    p.symbol,
                    p.cadence,
                    f"v{p.version}",
                    f"{p.prob_up:.4f}",
                    f"{p.bar_time:%Y-%m-%d %H:%M}",
                    f"{p.for_bar:%Y-%m-%d %H:%M}",
                    duration_text(timedelta(seconds=p.data_age_seconds)),
                ]
                for p in served.values()
            ],
            align=["left", "left", "right", "right", "left", "left", "right"],
        )
    for exc in failed.values():  # each message names its symbol
        print(f"alphapulse: {exc}", file=sys.stderr)
    return 1 if failed else 0


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _timeframe_arg(text: str) -> str:
    from alphapulse_assets.settings import canonical_timeframe

    try:
        return canonical_timeframe(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _bps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of basis points: {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 1000):
        raise argparse.ArgumentTypeError(f"basis points must be between 0 and 1000, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alphapulse", description="AlphaPulse retraining platform")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the main job on the local instance and print a summary")
    demo.add_argument(
        "--days",
        type=_positive_int,
        default=None,
        help="days of market data to ingest (default: what the newest monthly partition needs)",
    )
    demo.add_argument("--end", type=_date, default=None, help="last day (default: yesterday, UTC)")
    demo.add_argument("--days-per-run", type=_positive_int, default=92)
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="run a retraining cadence now, without the daemon (for cron or CI)")
    run.add_argument("cadence", choices=["nightly", "weekly", "monthly", "all"])
    run.add_argument("--partition", default=None, help="partition key (default: the newest complete one)")
    run.set_defaults(func=cmd_run)

    models = sub.add_parser("models", help="champions, promotion history and rollback")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list", help="champion and latest challenger per symbol and cadence")
    hist = models_sub.add_parser("history", help="every promotion, rejection, hold, rollback and fallback")
    hist.add_argument("symbol", nargs="?")
    hist.add_argument("--cadence", choices=["nightly", "weekly", "monthly"])
    rb = models_sub.add_parser("rollback", help="make an earlier champion the champion again")
    rb.add_argument("symbol")
    rb.add_argument("cadence_arg", nargs="?", metavar="CADENCE", choices=["nightly", "weekly", "monthly"])
    rb.add_argument("--cadence", choices=["nightly", "weekly", "monthly"], help="same as CADENCE")
    rb.add_argument(
        "--to",
        type=int,
        default=None,
        help="version: an earlier champion never rejected by the gate (default: the champion before the current one)",
    )
    rb.add_argument(
        "--force",
        action="store_true",
        help="crown --to even if it was never champion or was rejected (recorded with --reason)",
    )
    rb.add_argument("--reason", required=True)
    ap = models_sub.add_parser(
        "approve", help="promote a challenger held for review (too good for its market) after checking it"
    )
    ap.add_argument("symbol")
    ap.add_argument("cadence_arg", metavar="CADENCE", choices=["nightly", "weekly", "monthly"])
    ap.add_argument("version", type=_positive_int, help="the held version (see models list / models history)")
    ap.add_argument("--reason", required=True, help="why it is sound (recorded with $USER)")
    ps = models_sub.add_parser(
        "promote-shadow",
        help="promote a rejected or newer challenger only if it beats the champion live (README, Live scores)",
    )
    ps.add_argument("symbol")
    ps.add_argument("cadence_arg", metavar="CADENCE", choices=["nightly", "weekly", "monthly"])
    ps.add_argument("version", type=_positive_int, help="a version registered since the champion took office")
    ps.add_argument("--reason", required=True, help="why (recorded with $USER and the live figures)")
    models.set_defaults(func=cmd_models)

    ev = sub.add_parser("evaluate", help="evaluate the pipeline on your own history (files source), any bar size")
    ev.add_argument("--files", required=True, help="folder in the files-source layout (see README)")
    ev.add_argument(
        "--timeframe",
        required=True,
        type=_timeframe_arg,
        help="bar size of the files: 1d, 1h, 15m (also 15min, 1H, 60T, daily, hourly)",
    )
    ev.add_argument("--symbols", default=None, help="comma-separated (default: every symbol in the folder)")
    ev.add_argument("--start", type=_date, default=None)
    ev.add_argument("--end", type=_date, default=None)
    ev.add_argument("--timezone", default=None, help="time zone of naive timestamps in the files (default UTC)")
    ev.add_argument("--splits", type=_positive_int, default=4)
    ev.add_argument("--min-train-bars", type=_positive_int, default=300)
    ev.add_argument("--min-validation", type=_positive_int, default=500)
    ev.add_argument(
        "--calendar",
        choices=["auto", "crypto", "fx", "exchange"],
        default=None,
        help="market calendar for coverage and Sharpe annualisation (default: ALPHAPULSE_CALENDAR__*, auto)",
    )
    ev.add_argument(
        "--fee-bps", type=_bps, default=None, help="fee per position change (default ALPHAPULSE_COSTS__FEE_BPS)"
    )
    ev.add_argument(
        "--slippage-bps",
        type=_bps,
        default=None,
        help="slippage per position change (default ALPHAPULSE_COSTS__SLIPPAGE_BPS)",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON document on stdout (nothing else)")
    ev.set_defaults(func=cmd_evaluate)

    ing = sub.add_parser("ingest", help="materialize market data for a range of days")
    ing.add_argument("--start", type=_date, required=True)
    ing.add_argument("--end", type=_date, default=None)
    ing.add_argument("--days-per-run", type=_positive_int, default=92)
    ing.set_defaults(func=cmd_ingest)

    st = sub.add_parser(
        "status", help="health, breakers, cadences, champions, open alerts, resources (exit 2 if critical)"
    )
    st.add_argument("--json", action="store_true", help="print the status as JSON for scripts")
    st.add_argument("--no-sources", action="store_true", help="skip the market-data source reachability check")
    st.set_defaults(func=cmd_status)

    sy = sub.add_parser("symbols", help="add, retire and list symbols (no redeploy)")
    sy_sub = sy.add_subparsers(dest="symbols_command", required=True)
    sy_add = sy_sub.add_parser("add", help="add symbols: trained and served from the next runs")
    sy_add.add_argument("symbols", nargs="+", metavar="SYMBOL")
    sy_add.add_argument("--reason", default=None, help="recorded with $USER")
    sy_add.add_argument(
        "--backfill",
        type=_date,
        default=None,
        metavar="START",
        help="ingest since START and train each cadence's partitions whose whole window lies in that history",
    )
    sy_add.add_argument(
        "--until", type=_date, default=None, metavar="END", help="with --backfill: the last day (default: yesterday)"
    )
    sy_ret = sy_sub.add_parser("retire", help="stop training and serving a symbol; its history stays")
    sy_ret.add_argument("symbol")
    sy_ret.add_argument("--reason", required=True, help="recorded with $USER")
    sy_sub.add_parser("list", help="active and retired symbols, since when, by whom, why")
    sy_sub.add_parser("sync", help="add the ALPHAPULSE_SYMBOLS seed symbols that are neither active nor retired")
    sy.set_defaults(func=cmd_symbols)

    pr = sub.add_parser("predict", help="the champion's up-probability for the bar after the newest stored bar")
    pr.add_argument("symbol", nargs="?", help="e.g. BTCUSDT")
    pr.add_argument("--cadence", choices=["nightly", "weekly", "monthly"], default="nightly")
    pr.add_argument("--all", action="store_true", help="every active symbol")
    pr.add_argument("--json", action="store_true", help="one JSON object on stdout (with --all: one document)")
    pr.set_defaults(func=cmd_predict)

    _add_breaker_parser(sub)
    return parser


def _add_breaker_parser(sub) -> None:
    """``alphapulse breaker list|history|force-open|disable|reset``; the commands are in recovery/cli.py."""
    brk = sub.add_parser("breaker", help="show and control the circuit breakers")
    brk_sub = brk.add_subparsers(dest="breaker_command", required=True)
    brk_sub.add_parser("list", help="every breaker with its state, since, retry_at and reason")
    hist = brk_sub.add_parser("history", help="recent breaker transitions")
    hist.add_argument("name", nargs="?", default=None)
    hist.add_argument("--limit", type=int, default=20)
    for action, text in (
        ("force-open", "hold a breaker open until reset: its schedules skip"),
        ("disable", "switch a breaker off (never trips) until reset"),
        ("reset", "close a breaker again"),
    ):
        p = brk_sub.add_parser(action, help=text)
        p.add_argument("name")
        p.add_argument("--reason", required=True, help="why (recorded with your user name)")
    brk.set_defaults(func=cmd_breaker)


def cmd_breaker(args: argparse.Namespace) -> int:
    from alphapulse_assets.recovery.cli import cmd_breaker as breaker_command

    return breaker_command(args, _prepare_home)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "end", None) and getattr(args, "start", None) and args.end < args.start:
        parser.error(f"--end {args.end} is before --start {args.start}")
    try:
        return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C outside a run (a run's own stop raises Stopped)
        print("alphapulse: interrupted", file=sys.stderr)
        return SIGNAL_EXIT[signal.SIGINT]
    except Exception as exc:  # an operator gets the classified message, not a traceback
        from alphapulse_assets.recovery.errors import describe

        print(f"alphapulse: {describe(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
