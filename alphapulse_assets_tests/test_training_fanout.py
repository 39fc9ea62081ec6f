"""A cadence's per-symbol work over worker processes (``training/fanout.py``, ``cadence.train_symbols``).

Real worker processes, a real SQLite registry, the sample market; the cadence itself through Dagster, pooled
against in-process, must give the same models, metrics and verdicts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import psutil
import pytest
import sqlalchemy as sa

from alphapulse_assets.market_data.symbols import SYMBOLS_NAME, range_tags
from alphapulse_assets.recovery.errors import (
    DataValidationError,
    ErrorClass,
    PermanentError,
    TransientError,
    classify,
)
from alphapulse_assets.training import assets as training_assets
from alphapulse_assets.training.assets import ModelRegistryResource, cadence_assets, gate_config, spec_for
from alphapulse_assets.training.cadence import train_symbols
from alphapulse_assets.training.challenger import make_dataset
from alphapulse_assets.training.fanout import Pool
from alphapulse_assets.training.registry import ModelRegistry

REPO = Path(__file__).resolve().parent.parent


# -- calls run in worker processes: module-level, so they pickle by reference ------------------------------
def _nap(seconds: float) -> tuple[int, float]:
    time.sleep(seconds)
    return os.getpid(), seconds


def _wait_for(path: str) -> str:
    deadline = time.monotonic() + 120
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return path


def _refuse(symbol: str) -> None:
    raise PermanentError(f"no data for {symbol}", where=symbol)


class _Unpicklable(Exception):
    def __init__(self, message, handle):
        super().__init__(message)
        self.handle = handle


def _raise_unpicklable() -> None:
    raise _Unpicklable("socket went away", handle=lambda: None)  # a lambda does not pickle


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _what_a_worker_holds(db_path: str) -> dict:
    """The worker's open files that are the database, and its numeric libraries' thread counts."""
    import sklearn.ensemble  # noqa: F401 - loads OpenMP as a training would
    from threadpoolctl import threadpool_info

    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return {
        "pid": os.getpid(),
        "db_files": [t for t in targets if t.startswith(db_path)],
        "sockets": [t for t in targets if t.startswith("socket:")],
        "threads": {i["internal_api"]: i["num_threads"] for i in threadpool_info()},
    }


@pytest.mark.slow  # starts worker processes: a few seconds on a busy machine
def test_results_come_back_as_they_complete_and_a_failing_call_fails_alone(tmp_path):
    release = str(tmp_path / "release")
    done = []
    with Pool(2, expected=5, min_pool_seconds=0, help_while_starting=False) as pool:
        pool.submit("slow", _wait_for, release)  # ends only once the four others were read
        pool.submit("refused", _refuse, "DOTUSDT")
        pool.submit("fast", _nap, 0.0)
        pool.submit("unpicklable", _raise_unpicklable)
        pool.submit("last", _nap, 0.0)
        for d in pool.results():
            done.append(d)
            if len(done) == 4:
                Path(release).touch()
    assert [d.key for d in done][-1] == "slow" and len(done) == 5  # the slow call held back no other
    by_key = {d.key: d for d in done}
    assert by_key["refused"].in_worker and by_key["unpicklable"].in_worker and by_key["slow"].in_worker
    assert by_key["fast"].error is None and by_key["last"].error is None and by_key["slow"].value == release
    refused = by_key["refused"].error
    assert isinstance(refused, PermanentError) and "no data for DOTUSDT" in str(refused)
    assert any("in worker process" in note for note in refused.__notes__)  # where it broke, for the log
    # An exception that cannot travel between processes comes back as the platform error of its class.
    stand_in = by_key["unpicklable"].error
    assert "_Unpicklable: socket went away" in str(stand_in)
    assert classify(stand_in).error_class is ErrorClass.PERMANENT


@pytest.mark.slow  # starts worker processes: a few seconds on a busy machine
def test_a_worker_that_dies_fails_its_call_as_transient_and_the_pool_goes_on():
    with Pool(2, expected=3, min_pool_seconds=0, help_while_starting=False) as pool:
        pool.submit("killed", _die)
        done = {d.key: d for d in pool.results()}
        assert isinstance(done["killed"].error, TransientError)
        assert "killed or out of memory" in str(done["killed"].error)
        pool.submit("after", _nap, 0.0)  # fresh workers take the next calls
        after = list(pool.results())
    assert [d.key for d in after] == ["after"] and after[0].error is None and after[0].in_worker


def test_small_work_stays_in_this_process_and_one_worker_never_starts_a_pool():
    with Pool(2, expected=3, min_pool_seconds=60) as pool:  # three naps of nothing: not worth a worker
        for i in range(3):
            pool.submit(i, _nap, 0.0)
        done = list(pool.results())
    assert not pool.started_workers and {d.value[0] for d in done} == {os.getpid()}
    with Pool(1, expected=3, min_pool_seconds=0) as pool:
        for i in range(3):
            pool.submit(i, _nap, 0.0)
        done = list(pool.results())
    assert not pool.started_workers and [d.key for d in done] == [0, 1, 2]


@pytest.mark.slow  # starts worker processes: a few seconds on a busy machine
def test_workers_hold_no_database_connection_and_run_one_numeric_thread(tmp_path):
    db = tmp_path / "platform.db"
    registry = ModelRegistry(str(tmp_path / "models"), f"sqlite:///{db}")
    with registry.engine.connect() as conn:  # a connection open in this process while the workers start
        conn.execute(sa.text("select 1"))
        assert any(f.path == str(db) for f in psutil.Process().open_files())
        with Pool(2, expected=2, min_pool_seconds=0, help_while_starting=False) as pool:
            pool.submit(1, _what_a_worker_holds, str(db))
            pool.submit(2, _what_a_worker_holds, str(db))
            held = [d.value for d in pool.results()]
    assert all(h["pid"] != os.getpid() for h in held)
    assert all(h["db_files"] == [] for h in held)
    assert all(h["threads"] and set(h["threads"].values()) == {1} for h in held), held


STOPPED_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    sys.path.insert(0, {tests!r})
    from alphapulse_assets.training.fanout import Pool
    from test_training_fanout import _nap

    def stop(signum, frame):  # what Dagster does with a SIGTERM in a step: an interrupt in the main thread
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    try:
        with Pool(2, expected=4, min_pool_seconds=0, help_while_starting=False) as pool:
            for i in range(4):
                pool.submit(i, _nap, 600)
            print("started", flush=True)
            for done in pool.results():
                print("finished", done.key, flush=True)
    except KeyboardInterrupt:
        print("stopped", flush=True)
        sys.exit(3)
    """
)


@pytest.mark.slow  # starts worker processes: a few seconds on a busy machine
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_step_leaves_no_worker_behind(tmp_path, stop):
    """SIGTERM: the pool is stopped and its workers killed at once. SIGKILL (or an out-of-memory kill): the
    step's process cannot do anything, and its workers notice that it is gone and exit."""
    script = tmp_path / "stopped.py"
    script.write_text(STOPPED_SCRIPT.format(tests=str(Path(__file__).parent)))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ}
    )
    try:
        assert proc.stdout.readline().strip() == "started"
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 120
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline:  # the workers are up and napping
            loky = [p for p in parent.children(recursive=True) if "loky" in " ".join(p.cmdline())]
            workers = [p for p in loky if "popen_loky" in " ".join(p.cmdline())]  # not its resource tracker
            if len(workers) == 2:
                break
            time.sleep(0.2)
        assert len(workers) == 2
        time.sleep(1.0)  # let them pick up their calls
        proc.send_signal(stop)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "finished" not in out  # no nap of 600 s ran to its end
    if stop == signal.SIGTERM:
        assert proc.returncode == 3 and "stopped" in out
    gone, alive = psutil.wait_procs(loky, timeout=15)
    try:
        assert not alive, [(p.pid, p.cmdline()) for p in alive]
    finally:
        for p in alive:
            p.kill()


@pytest.fixture(scope="module")
def weekly_data():
    from alphapulse_assets.market_data.sources.sample import SampleSource

    spec = spec_for("weekly")
    start, end = pd.Timestamp("2024-03-01", tz="UTC"), pd.Timestamp("2024-05-27", tz="UTC")
    candles = SampleSource("1h").fetch(["BTCUSDT", "ETHUSDT", "ADAUSDT"], start, end)
    return spec, make_dataset(candles, spec)


def test_a_training_set_splits_by_symbol_in_one_pass_into_the_same_rows(weekly_data):
    _spec, ds = weekly_data
    parts = ds.by_symbol(["ETHUSDT", "BTCUSDT"])
    for symbol, rows in parts.items():
        alone = ds.for_symbol(symbol)
        assert rows.X.equals(alone.X) and rows.timestamps.equals(alone.timestamps)
        assert (rows.y == alone.y).all() and (rows.symbols == symbol).all()
        assert np.array_equal(rows.forward, alone.forward, equal_nan=True)
    with pytest.raises(DataValidationError, match="no training rows for XRPUSDT"):
        ds.by_symbol(["BTCUSDT", "XRPUSDT"])


@pytest.mark.slow
def test_a_symbol_whose_training_raises_keeps_its_champion_and_the_others_are_trained(tmp_path, weekly_data):
    spec, ds = weekly_data
    # ADAUSDT gets three days of rows: too few to train on, its walk-forward split refuses them.
    too_old = (ds.symbols == "ADAUSDT") & (ds.timestamps < pd.Timestamp("2024-05-24", tz="UTC")).to_numpy()
    short = ds._rows(~too_old)
    registry = ModelRegistry(str(tmp_path / "models"), f"sqlite:///{tmp_path}/p.db")
    window = {"2024-05-26": (pd.Timestamp("2024-03-18", tz="UTC"), pd.Timestamp("2024-05-27", tz="UTC"))}
    runs = {
        r.symbol: r
        for r in train_symbols(
            registry,
            short,
            spec,
            gate_config("weekly"),
            ["BTCUSDT", "ETHUSDT", "ADAUSDT"],
            window,
            code_version="test",
            workers=2,
            min_pool_seconds=0,
        )
    }
    assert [k for k, _ in runs["ADAUSDT"].errors] == ["2024-05-26"] and not runs["ADAUSDT"].outcomes
    assert [d.action for d in registry.history("ADAUSDT", "weekly")] == ["kept"]
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert not runs[symbol].errors and len(runs[symbol].outcomes) == 1
        assert [v.info["partition"] for v in registry.versions(symbol, "weekly")] == ["2024-05-26"]


def _cadence_run(instance, root: Path, name: str, **partition) -> tuple[dg.ExecuteInProcessResult, ModelRegistry]:
    resource = ModelRegistryResource(artifact_root=str(root / "models"), db_url=f"sqlite:///{root}/p.db")
    result = dg.materialize(
        cadence_assets[name],
        instance=instance,
        resources={**_shared_resources(root.parent), "model_registry": resource},
        raise_on_error=False,
        **partition,
    )
    return result, resource.get()


def _shared_resources(root: Path) -> dict:
    from alphapulse_assets.market_data.resources import CandleStoreResource, PartitionedParquetIOManager

    return {
        "candle_store": CandleStoreResource(base_url=str(root / "candles")),
        "training_set_io_manager": PartitionedParquetIOManager(base_url=str(root / "ts"), layout="keys"),
    }


def _answers(registry: ModelRegistry, version) -> list[float]:
    rows = np.random.default_rng(0).normal(size=(20, len(version.info["features"])))
    return registry.load(version).predict_proba(rows)[:, 1].tolist()


def _what_the_registry_says(registry: ModelRegistry, symbols, cadence: str) -> dict:
    """Per symbol: each version's partition, metrics, gate verdict and warm start; the decisions; the champion."""
    out = {}
    for symbol in symbols:
        out[symbol] = {
            "versions": [
                (v.version, v.info["partition"], v.info["metrics"], v.info["gate_verdict"], v.info["warm_started_from"])
                for v in registry.versions(symbol, cadence)
            ],
            "decisions": [(d.version, d.action, d.previous_champion) for d in registry.history(symbol, cadence)],
            "champion": registry.champion_version(symbol, cadence),
            # The models themselves (a file's digest also covers its zip entries' times): their answers.
            "answers": [_answers(registry, v) for v in registry.versions(symbol, cadence)],
        }
    return out


@pytest.mark.slow
def test_a_cadence_over_worker_processes_gives_exactly_the_in_process_results(tmp_path, monkeypatch):
    """The weekly cadence and a three-day nightly backfill (warm-started day after day), in the step's own
    process and over two worker processes: same versions, metrics, verdicts, champions, model files."""
    from alphapulse_assets_tests.candles import ingest

    symbols = training_assets.SETTINGS.symbols
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SYMBOLS_NAME, list(symbols))
    ingest(instance, str(tmp_path / "candles"), "2024-03-01", "2024-06-09", symbols=symbols)
    seen = {}
    for mode, workers, min_seconds in (("here", 1, 0.0), ("pool", 2, 0.0)):
        monkeypatch.setattr(training_assets.SETTINGS.scale, "workers", workers)
        monkeypatch.setattr(training_assets.SETTINGS.scale, "min_pool_seconds", min_seconds)
        root = tmp_path / mode
        root.mkdir()
        weekly, registry = _cadence_run(
            instance, root, "weekly", tags=range_tags("2024-05-26", "2024-05-26", symbols[0], symbols[-1])
        )
        nightly, _ = _cadence_run(
            instance, root, "nightly", tags=range_tags("2024-06-01", "2024-06-03", symbols[0], symbols[-1])
        )
        assert weekly.success and nightly.success
        messages = [e.message for e in instance.all_logs(weekly.run_id) if e.message]
        assert any("worker processes" in m for m in messages) == (mode == "pool"), messages
        seen[mode] = {
            "weekly": _what_the_registry_says(registry, symbols, "weekly"),
            "nightly": _what_the_registry_says(registry, symbols, "nightly"),
            "checks": sorted(
                (c.asset_key.to_user_string(), str(c.partition), c.passed, c.description)
                for r in (weekly, nightly)
                for c in r.get_asset_check_evaluations()
            ),
            "materialized": sorted(
                (m.asset_key.to_user_string(), str(m.partition))
                for r in (weekly, nightly)
                for m in r.get_asset_materialization_events()
            ),
        }
    assert seen["pool"] == seen["here"]
    for per_symbol in seen["here"]["nightly"].values():  # each symbol's days, one after another
        assert [v[1] for v in per_symbol["versions"]] == ["2024-06-01", "2024-06-02", "2024-06-03"]
