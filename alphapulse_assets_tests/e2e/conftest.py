"""Fixtures for the end-to-end tests: one production-shaped deployment for the whole session.

The deployment (``dagster_harness.DagsterDeployment``) runs ``deploy/dagster.yaml`` unchanged on the test
PostgreSQL server, with AlphaPulse settings scaled down for speed (the env vars below): two symbols, four
months of sample candles, small training windows, every cadence's cron set to every minute so that a
started schedule ticks within a minute, and the weekly gate asking for more validation rows than exist,
so that a failed blocking check is always there to look at.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from alphapulse_assets_tests.dagster_harness import DagsterDeployment
from alphapulse_assets_tests.fake_exchange import FakeBinance

SYMBOLS = ("BTCUSDT", "ETHUSDT")
TODAY = datetime.now(timezone.utc).date()
YESTERDAY = TODAY - timedelta(days=1)
# Long enough for the newest complete monthly partition of every e2e deployment: the operator's day trains monthly
# on 60 days, and a cadence's first partition starts one window after START; on a month's last day the newest
# complete month began about 60 days ago, so START must be 120 days back (90 left it without one: tried).
START = TODAY - timedelta(days=120)
# Screenshots and logs for a failed run to look at: outside the checkout (the suite writes nothing into it).
ARTIFACTS = Path(
    os.environ.get("ALPHAPULSE_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "alphapulse-test-artifacts"
)


def cadence_setting(cron: str, timeframe: str, window_days: int, min_validation_samples: int) -> str:
    return json.dumps(
        {
            "cron": cron,
            "timeframe": timeframe,
            "window_days": window_days,
            "budget_seconds": 3600,
            "min_rows": 100,
            "min_validation_samples": min_validation_samples,
        }
    )


def e2e_settings(exchange_url: str) -> dict[str, str]:
    return {
        "ALPHAPULSE_SYMBOLS": json.dumps(list(SYMBOLS)),
        "ALPHAPULSE_START_DATE": START.isoformat(),
        "ALPHAPULSE_SOURCES": '["sample"]',
        "ALPHAPULSE_NIGHTLY": cadence_setting("* * * * *", "15m", 6, 100),
        "ALPHAPULSE_WEEKLY": cadence_setting("* * * * *", "1h", 28, 1_000_000),
        # 1h bars instead of 4h: the walk-forward needs ~620 bars, which 4h bars reach only after 100+ days.
        "ALPHAPULSE_MONTHLY": cadence_setting("* * * * *", "1h", 35, 100),
        "ALPHAPULSE_SOURCE_TIMEOUT_SECONDS": "2",
        "ALPHAPULSE_RETRY__MAX_RETRIES": "1",
        "ALPHAPULSE_RETRY__BASE_DELAY_SECONDS": "0.2",
        "ALPHAPULSE_EXCHANGE_API_URL": exchange_url,
        # The run-failure/-success and dead-run sensors look every 5 s instead of 30 s: tests that wait for
        # an alert, its resolution or a dead run's end wait less; what they check is unchanged.
        "ALPHAPULSE_MONITORING__RUN_STATUS_INTERVAL_SECONDS": "5",
        "ALPHAPULSE_MONITORING__DEAD_RUN_INTERVAL_SECONDS": "5",
    }


@pytest.fixture(scope="session")
def fake_exchange():
    """A Binance-shaped loopback API the run workers can be pointed at (sources=["exchange"] in run config)."""
    with FakeBinance(SYMBOLS, now=pd_timestamp(TODAY)) as server:
        yield server


def pd_timestamp(day: date):
    import pandas as pd

    return pd.Timestamp(day.isoformat(), tz="UTC")


@pytest.fixture(scope="session")
def candle_seed(postgres_server, fake_exchange):
    """START..YESTERDAY ingested by the CLI once, into a database and home that no process holds open. Each
    seeded deployment starts as a copy of them (PostgreSQL's CREATE DATABASE ... TEMPLATE and a copied
    directory) instead of ingesting the same candles again: about 90 s each. Only the candles' settings
    (symbols, start date, sources) must match; the deployments' cadence settings may differ."""
    seed = DagsterDeployment(
        postgres_server, settings_env=e2e_settings(fake_exchange.url), database=f"dagster_seed_{os.getpid()}"
    )
    try:
        seed.prepare()
        proc = seed.cli("ingest", "--start", START.isoformat(), "--end", YESTERDAY.isoformat(), timeout=600)
        assert proc.returncode == 0, f"seeding candles failed:\n{proc.stdout}\n{proc.stderr}"
        yield seed
    finally:
        seed.stop()


@contextmanager
def seeded_deployment(postgres_server, seed, settings: dict[str, str] | None = None, **kwargs):
    """A started deployment (e2e settings, ``settings`` on top) holding a copy of ``seed``'s candles
    (START..YESTERDAY, ingested by the CLI); stopped on exit."""
    exchange_url = seed.settings_env["ALPHAPULSE_EXCHANGE_API_URL"]
    d = DagsterDeployment(
        postgres_server, settings_env={**e2e_settings(exchange_url), **(settings or {})}, seed=seed, **kwargs
    )
    try:
        d.start()
        yield d
    finally:
        d.stop()


#: How many of the selected tests still need the session deployment, and the deployment itself: it is stopped
#: after the last of them rather than at the end of the session. Idle, it still takes CPU from every later test
#: (its daemon ticks the sensors every 5 s through the code server; the webserver).
_users_left = pytest.StashKey[int]()
_session_deployment = pytest.StashKey[DagsterDeployment]()


def _uses_session_deployment(item) -> bool:
    return "deployment" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: count only the tests that will run
def pytest_collection_modifyitems(config, items):
    # The tests using the session deployment run first among the end-to-end tests (otherwise in their order), so
    # that it is stopped before the tests that start deployments of their own.
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if here in Path(str(item.fspath)).parents]
    ordered = sorted((items[i] for i in slots), key=lambda item: not _uses_session_deployment(item))
    for i, item in zip(slots, ordered, strict=True):
        items[i] = item
    config.stash[_users_left] = sum(_uses_session_deployment(item) for item in items)


def pytest_runtest_teardown(item, nextitem):
    # Under xdist every worker counts all users, and the one that runs the e2e group (all of them) reaches 0; the
    # other never starts the deployment.
    if not _uses_session_deployment(item) or _users_left not in item.config.stash:
        return
    item.config.stash[_users_left] -= 1
    shared = item.config.stash.get(_session_deployment, None)
    if item.config.stash[_users_left] == 0 and shared is not None:
        shared.stop()  # idempotent: the fixture's own stop at the end of the session finds nothing left


@pytest.fixture(scope="session")
def deployment(request, postgres_server, candle_seed):
    """Daemon + web UI on deploy/dagster.yaml and PostgreSQL, with START..YESTERDAY ingested by the CLI; stopped
    after the last selected test that uses it."""
    with seeded_deployment(postgres_server, candle_seed) as d:
        request.config.stash[_session_deployment] = d
        yield d


@pytest.fixture
def live_deployment(deployment, postgres_server):
    """The session deployment, with PostgreSQL running and the daemon healthy (a fault test may have
    stopped either)."""
    if not postgres_server.running:
        postgres_server.start()
    import time

    deployment.wait_ready(time.monotonic() + 120)
    return deployment


@pytest.fixture(scope="module")
def quiet_deployment(postgres_server, candle_seed):
    """A deployment of its own (fresh database and home) for a module whose tests count alerts, decisions or
    events exactly: the session deployment carries whatever the tests before them did. Shared by the module's
    tests, each counting only keys the others never touch; stopped when the module ends."""
    if not postgres_server.running:
        postgres_server.start()
    with seeded_deployment(postgres_server, candle_seed, database=f"dagster_quiet_{os.getpid()}") as d:
        yield d


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
