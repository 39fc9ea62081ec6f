"""Shared fixtures (the real-PostgreSQL ones; see ``pg_harness.py``) and the suite's tiers.

Tiers (README, "Tests"): a test is marked by what it starts and how long it takes. ``postgres``, ``browser``
and ``e2e`` are added here from what a test uses (``postgres_server`` directly or through another fixture,
the Chromium ``browser``, the session ``deployment`` or a test under ``e2e/``), so those marks cannot be
forgotten; ``slow`` is written on the test, and an unmarked test that runs longer than ``SLOW_SECONDS`` is
named at the end of the run. The suite writes nothing into the checkout: DAGSTER_HOME is a temporary
project folder for the session, and new or changed files in the checkout fail the run.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from alphapulse_assets_tests.pg_harness import PG_BIN_DIR, PostgresServer, end_on_sigterm, pg_binaries_present
from alphapulse_assets_tests.service_harness import S3Server

_db_counter = itertools.count(1)

REPO_ROOT = Path(__file__).resolve().parent.parent
E2E_DIR = Path(__file__).resolve().parent / "e2e"
#: An unmarked test slower than this is named at the end of the run (it should carry ``slow``).
SLOW_SECONDS = 5.0
#: Fixtures that make a test a tier: using the first (directly or through another fixture) adds the mark.
TIER_FIXTURES = {"postgres_server": "postgres", "browser": "browser", "deployment": "e2e"}
#: The xdist group of the end-to-end tier: under `-n 2` one worker runs all of it, in its order, while the other
#: runs the rest. Two workers each starting deployments (daemons, code servers, run workers) overloaded 2 cores.
E2E_GROUP = "e2e"
#: Not the suite's output: the venv, caches and build metadata that installing and importing create.
_NOT_OUTPUT = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}

# Code that falls back to DAGSTER_HOME (settings, the platform DB, the CLI) must not fall back to the checkout,
# which `make` exports as DAGSTER_HOME: the session gets a project folder of its own under the temp dir.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="alphapulse-test-home-"))
shutil.copyfile(REPO_ROOT / "dagster.yaml", _SESSION_HOME / "dagster.yaml")
os.environ["DAGSTER_HOME"] = str(_SESSION_HOME)
# Hypothesis keeps its example database and constants cache in ./.hypothesis unless told otherwise (read lazily).
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "alphapulse-hypothesis"))


def _checkout_files() -> dict[str, float]:
    """Every file in the checkout that is not a venv, cache or egg-info, with its modification time."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(REPO_ROOT):
        dirnames[:] = [d for d in dirnames if d not in _NOT_OUTPUT and not d.endswith(".egg-info")]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                files[os.path.relpath(path, REPO_ROOT)] = os.stat(path).st_mtime
            except FileNotFoundError:  # removed while walking
                pass
    return files


_checkout_key = pytest.StashKey[dict]()
_written_key = pytest.StashKey[list]()
_slow_unmarked: list[tuple[str, float]] = []


def pytest_configure(config):
    # A SIGTERM ends the session as Ctrl-C does: pytest then runs the fixtures' finalizers, which stop the
    # PostgreSQL servers, daemons, code servers and brokers the session started.
    end_on_sigterm()


def pytest_sessionstart(session):
    session.config.stash[_checkout_key] = _checkout_files()


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the xdist_group marks added here
def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, mark in TIER_FIXTURES.items():
            if fixture in used and item.get_closest_marker(mark) is None:
                item.add_marker(mark)
        if E2E_DIR in Path(str(item.fspath)).parents and item.get_closest_marker("e2e") is None:
            item.add_marker("e2e")
        # Under pytest-xdist (`-n 2 --dist loadgroup`), the whole e2e tier is one group: one worker runs it, so each
        # deployment starts once and only one is alive at a time; the other worker meanwhile runs the rest. Every
        # other module is a group of its own: its tests run in their order on one worker, as in one process (a
        # module's later tests may build on what its module-scoped fixture and earlier tests made; CI once ran
        # such a test on the other worker, without the champion it expected), and its module-scoped fixtures are
        # set up once, not once per worker.
        if item.get_closest_marker("xdist_group") is None:
            e2e = item.get_closest_marker("e2e") is not None
            item.add_marker(pytest.mark.xdist_group(E2E_GROUP if e2e else Path(str(item.fspath)).stem))


_ungrouped = pytest.StashKey[bool]()


def pytest_collection_finish(session):
    # xdist groups a test by a suffix it writes into the test's id; a pytest or xdist release that drops it leaves
    # the groups unenforced without a word (both workers then start deployments at once and overload 2 cores, and
    # a module's tests are split between workers).
    # Such a test fails at set-up, saying why. (On a worker `--dist loadgroup` is the `loadgroup` option: xdist
    # resets `dist` to "no" there.)
    if os.environ.get("PYTEST_XDIST_WORKER") and getattr(session.config.option, "loadgroup", False):
        for item in session.items:
            item.stash[_ungrouped] = bool(item.get_closest_marker("xdist_group")) and "@" not in item.nodeid


def pytest_runtest_setup(item):
    # The check behind the automatic marks: a test that reaches the server some other way must say so.
    if "postgres_server" in getattr(item, "fixturenames", ()) and item.get_closest_marker("postgres") is None:
        pytest.fail(f"{item.nodeid} uses PostgreSQL but is not marked postgres", pytrace=False)
    if item.stash.get(_ungrouped, False):
        pytest.fail(
            "pytest-xdist ignored this test's xdist_group (`--dist loadgroup`): pytest and pytest-xdist disagree on "
            "where a test's id is kept, so the e2e tier and each module's tests would be spread over both workers; see "
            "pyproject.toml's pin "
            "of pytest, or run `make test XDIST=`",
            pytrace=False,
        )


#: Per xdist worker (seen by the controller): tests run, and seconds since the session began at its last report.
#: CI's wall time is the busiest worker's; this shows how far apart the two end.
_worker_load: dict[str, list[float]] = {}
_session_began = time.monotonic()


def pytest_runtest_logreport(report):
    if report.when == "call" and report.duration > SLOW_SECONDS and "slow" not in report.keywords:
        _slow_unmarked.append((report.nodeid, report.duration))
    node = getattr(report, "node", None)  # set by xdist on the controller's copy of a worker's report
    if node is not None and report.when == "teardown":
        load = _worker_load.setdefault(node.gateway.id, [0, 0.0])
        load[0] += 1
        load[1] = time.monotonic() - _session_began


def pytest_sessionfinish(session, exitstatus):
    before = session.config.stash.get(_checkout_key, None)
    if before is None:
        return
    after = _checkout_files()
    written = sorted(p for p, mtime in after.items() if before.get(p) != mtime)
    removed = sorted(set(before) - set(after))
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)
    if written or removed:
        # A failure: the files are named, and the first test after which a new entry appeared at the top of the
        # checkout (e.g. .alphapulse/ from a dagster.yaml opened with the checkout as working directory).
        session.config.stash[_written_key] = written + [f"{p} (removed)" for p in removed]
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_first_writer: list[str] = []
_TOP_AT_START = set(os.listdir(REPO_ROOT))


def pytest_runtest_teardown(item):
    if not _first_writer:
        new = set(os.listdir(REPO_ROOT)) - _TOP_AT_START - _NOT_OUTPUT
        if new:
            _first_writer.append(f"{', '.join(sorted(new))} appeared after {item.nodeid}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _worker_load:
        terminalreporter.section("xdist workers: tests run, and when each finished its last")
        for worker, (count, last) in sorted(_worker_load.items()):
            terminalreporter.write_line(f"{worker}: {count:.0f} tests, last done {last:.0f} s into the session")
    if _slow_unmarked:
        terminalreporter.section(f"unmarked tests slower than {SLOW_SECONDS:.0f} s (mark them slow)")
        for nodeid, seconds in sorted(_slow_unmarked, key=lambda x: -x[1]):
            terminalreporter.write_line(f"{seconds:7.1f}s {nodeid}")
    written = config.stash.get(_written_key, [])
    if written:
        terminalreporter.section(
            "the suite wrote into the checkout (tests must use tmp dirs; files edited during the run show too)"
        )
        for path in written:
            terminalreporter.write_line(path)
        if _first_writer:
            terminalreporter.write_line(_first_writer[0])


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL 15 server on 127.0.0.1 for the whole test session, removed at the end."""
    if not pg_binaries_present():
        message = f"PostgreSQL binaries not found in {PG_BIN_DIR}: install postgresql-15"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)  # CI must never pass by skipping the database tests
        pytest.skip(message)
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:  # also runs on test failure and on KeyboardInterrupt
        server.stop()


@pytest.fixture
def postgres_url(request, postgres_server: PostgresServer) -> str:
    """A fresh, empty database for this test; its URL uses the password role ``alphapulse``."""
    if request.node.get_closest_marker("postgres") is None:  # requested with getfixturevalue: mark the param
        pytest.fail(
            f"{request.node.nodeid} uses PostgreSQL but is not marked postgres "
            '(parametrize with pytest.param("postgres", marks=pytest.mark.postgres))',
            pytrace=False,
        )
    if not postgres_server.running:  # a fault-injection test left it stopped
        postgres_server.start()
    name = f"t{os.getpid()}_{next(_db_counter)}"
    postgres_server.create_database(name)
    return postgres_server.password_url(name)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on loopback with an empty bucket (``service_harness.BUCKET``) for the session: its endpoint
    URL. Stopped (by its own process group) at the end."""
    with S3Server() as server:
        yield server.endpoint
