"""The breaker store: persistence across processes and no lost update under concurrent writers.

Every test runs on SQLite (a file under tmp_path) and on a real PostgreSQL (``postgres_url`` fixture).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from alphapulse_assets.recovery.breaker import BreakerConfig, CircuitState
from alphapulse_assets.recovery.breaker_store import BreakerStore
from alphapulse_assets.recovery.errors import DataValidationError, ErrorClass

REPO = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000.0
PROCESS_TIMEOUT = 120

# Each child waits for the go-file so that all of them really write at the same time, then runs a job.
CHILD = r"""
import json, os, sys, time
args = json.loads(sys.argv[1])
from alphapulse_assets.recovery.breaker import BreakerConfig
from alphapulse_assets.recovery.breaker_store import BreakerStore
from alphapulse_assets.recovery.errors import ErrorClass
store = BreakerStore(args["url"])
cfg = BreakerConfig(**args["cfg"])
deadline = time.monotonic() + 60
while args.get("go") and not os.path.exists(args["go"]):
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.005)
out = {"probes": 0, "allowed": 0}
for i in range(args.get("n", 0)):
    ok = args["pattern"][i % len(args["pattern"])] == "s"
    store.record(args["name"], cfg, ok, None if ok else ErrorClass.TRANSIENT, now=args.get("now"))
if args.get("allow"):
    d = store.allow(args["name"], cfg, now=args["now"])
    out = {"probes": int(d.is_probe), "allowed": int(d.allowed)}
print(json.dumps(out))
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'platform.db'}"
    return request.getfixturevalue("postgres_url")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_children(tmp_path: Path, jobs: list[dict]) -> list[dict]:
    """Start one process per job, release them together, and return what each printed."""
    go = tmp_path / f"go-{time.monotonic_ns()}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps({**job, "go": str(go)})],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=REPO,
        )
        for job in jobs
    ]
    try:
        time.sleep(0.5)  # let them import and connect
        go.touch()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=PROCESS_TIMEOUT)
            assert proc.returncode == 0, f"child failed:\n{err}"
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_missing_breaker_reads_closed_and_is_not_created(db_url):
    store = BreakerStore(db_url, clock=lambda: T0)
    state = store.get("nobody")
    assert state.state is CircuitState.CLOSED and state.since == T0
    assert store.all() == {}


def test_full_cycle_is_stored_with_one_event_per_transition(db_url):
    store = BreakerStore(db_url, clock=lambda: T0)
    cfg = BreakerConfig()
    for i in range(5):
        store.record("binance", cfg, False, ErrorClass.TRANSIENT, now=T0 + i, detail="HTTP 503")
    assert store.get("binance").state is CircuitState.OPEN
    assert not store.allow("binance", cfg, now=T0 + 30).allowed
    # Nobody calls; past the timeout the stored OPEN reads as HALF_OPEN.
    assert store.current("binance", cfg, now=T0 + 63.9).state is CircuitState.OPEN
    assert store.current("binance", cfg, now=T0 + 64).state is CircuitState.HALF_OPEN
    assert store.get("binance").state is CircuitState.OPEN  # reading wrote nothing
    probe = store.allow("binance", cfg, now=T0 + 70)
    assert probe.allowed and probe.is_probe
    assert not store.allow("binance", cfg, now=T0 + 71).allowed  # the probe slot is taken, and stored
    store.record("binance", cfg, True, now=T0 + 72)
    store.force_open("binance", "alice", "maintenance", now=T0 + 80)
    store.record("binance", cfg, True, now=T0 + 81)
    assert store.get("binance").state is CircuitState.FORCED_OPEN
    store.disable("binance", "alice", "flaky breaker", now=T0 + 90)
    store.reset("binance", "alice", "done", now=T0 + 100)

    events = store.events("binance")
    assert [(e.from_state, e.to_state) for e in events] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("closed", "forced_open"),
        ("forced_open", "disabled"),
        ("disabled", "closed"),
    ]
    assert all(e.reason for e in events)
    assert [e.at for e in events] == [T0 + 4, T0 + 64, T0 + 72, T0 + 80, T0 + 90, T0 + 100]
    assert "HTTP 503" in events[0].reason and "alice" in events[3].reason
    # Filters and cursors.
    assert [e.to_state for e in store.events("binance", since=T0 + 80)] == ["forced_open", "disabled", "closed"]
    assert [e.to_state for e in store.events("binance", limit=2)] == ["disabled", "closed"]
    first_two = store.events("binance", after_id=0, limit=2)
    assert [e.to_state for e in first_two] == ["open", "half_open"]
    assert [e.to_state for e in store.events(after_id=first_two[-1].id, limit=1)] == ["closed"]
    assert store.events("other") == []
    state = store.get("binance")
    assert (state.successes, state.failures) == (2, 5)
    assert set(store.all()) == {"binance"}


def test_failure_without_a_class_is_refused(db_url):
    store = BreakerStore(db_url)
    with pytest.raises(DataValidationError) as info:
        store.record("x", BreakerConfig(), False)
    assert "ErrorClass" in str(info.value) and "alphapulse_breakers[x]" in info.value.where
    assert store.all() == {}


def test_corrupt_row_is_reported_with_its_place(db_url):
    import sqlalchemy as sa

    store = BreakerStore(db_url)
    store.record("x", BreakerConfig(), True, now=T0)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alphapulse_breakers SET state_json = '{not json' WHERE name = 'x'"))
    with pytest.raises(DataValidationError) as info:
        store.get("x")
    assert "alphapulse_breakers[x]" in info.value.where


def test_a_lost_race_is_retried_on_the_fresh_state(db_url):
    """Force the race deterministically: another writer commits between our read and our write."""
    store = BreakerStore(db_url)
    cfg = BreakerConfig(failure_rate_threshold=None, failure_threshold=100)
    store.record("r", cfg, True, now=T0)
    calls = []

    def fn(state):
        calls.append(state.successes)
        if len(calls) == 1:
            # A second writer on its own connection, in another thread, commits first.
            t = threading.Thread(target=lambda: BreakerStore(db_url).record("r", cfg, True, now=T0 + 1))
            t.start()
            t.join(timeout=30)
            assert not t.is_alive()
        from alphapulse_assets.recovery import breaker as bk

        return bk.record_success(state, cfg, T0 + 2)

    state, _ = store.update("r", fn)
    assert calls == [1, 2], "the first attempt must lose and the second must see the other writer's success"
    assert state.successes == 3 and store.get("r").successes == 3


def test_state_survives_a_new_process(db_url, tmp_path):
    # Written in a child process ...
    run_children(tmp_path, [{"url": db_url, "name": "kraken", "cfg": {}, "n": 5, "pattern": "f", "now": T0}])
    # ... read here, by a store that has never seen it.
    store = BreakerStore(db_url)
    state = store.get("kraken")
    assert state.state is CircuitState.OPEN and state.failures == 5 and state.since == T0
    assert [(e.from_state, e.to_state) for e in store.events("kraken")] == [("closed", "open")]
    # And the other way round: written here, read (and acted on) by a child.
    store.force_open("kraken", "ops", "hold", now=T0 + 1)
    (out,) = run_children(tmp_path, [{"url": db_url, "name": "kraken", "cfg": {}, "allow": True, "now": T0 + 10**6}])
    assert out == {"probes": 0, "allowed": 0}


@pytest.mark.slow
def test_four_processes_lose_no_update(db_url, tmp_path):
    cfg = {"failure_threshold": 10**6, "failure_rate_threshold": None}
    n = 200
    BreakerStore(db_url)  # tables exist before the race; creation races are covered by the next test
    jobs = [{"url": db_url, "name": "shared", "cfg": cfg, "n": n, "pattern": "sf"} for _ in range(4)]
    run_children(tmp_path, jobs)
    store = BreakerStore(db_url)
    state = store.get("shared")
    assert state.state is CircuitState.CLOSED
    assert (state.successes, state.failures) == (4 * n // 2, 4 * n // 2)
    assert store.events("shared") == []


def test_concurrent_failures_streak_and_a_single_trip(db_url, tmp_path):
    # Nobody created the tables or the row: creation races too.
    n = 200
    streak_cfg = {"failure_threshold": 10**6, "failure_rate_threshold": None}
    trip_cfg = {"failure_threshold": 5, "recovery_timeout": 3600, "max_recovery_timeout": 3600}
    jobs = [{"url": db_url, "name": "streak", "cfg": streak_cfg, "n": n, "pattern": "f"} for _ in range(2)]
    jobs += [{"url": db_url, "name": "trip", "cfg": trip_cfg, "n": 50, "pattern": "f"} for _ in range(2)]
    run_children(tmp_path, jobs)
    store = BreakerStore(db_url)
    streak = store.get("streak")
    assert streak.consecutive_failures == 2 * n and streak.failures == 2 * n
    trip = store.get("trip")
    assert trip.state is CircuitState.OPEN and trip.failures == 100
    # However the writers interleaved, the breaker opened exactly once.
    assert [(e.from_state, e.to_state) for e in store.events("trip")] == [("closed", "open")]


def test_only_one_of_four_processes_gets_the_half_open_probe(db_url, tmp_path):
    store = BreakerStore(db_url)
    cfg = BreakerConfig()
    for _ in range(5):
        store.record("probe", cfg, False, ErrorClass.SYSTEM, now=T0)
    jobs = [{"url": db_url, "name": "probe", "cfg": {}, "allow": True, "now": T0 + 61} for _ in range(4)]
    results = run_children(tmp_path, jobs)
    assert sum(r["probes"] for r in results) == 1
    assert sum(r["allowed"] for r in results) == 1
    state = store.get("probe")
    assert state.state is CircuitState.HALF_OPEN and state.half_open_probes_in_flight == 1
    assert [(e.from_state, e.to_state) for e in store.events("probe")] == [
        ("closed", "open"),
        ("open", "half_open"),
    ]
