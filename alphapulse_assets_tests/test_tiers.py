"""The suite's tiers are honest: what a selected test starts is what its marks say (README, "Tests")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alphapulse_assets_tests.conftest import REPO_ROOT, TIER_FIXTURES


def test_tests_using_a_tier_fixture_carry_its_mark(request):
    unmarked = [
        (item.nodeid, mark)
        for item in request.session.items
        for fixture, mark in TIER_FIXTURES.items()
        if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(mark) is None
    ]
    assert unmarked == []


def _inner_session(tmp_path) -> list[str]:
    """A pytest session of its own over ``tmp_path/test_inner.py``, with this suite's conftest (its fixtures and
    guards) loaded as a plugin."""
    plugin = ["-p", "no:cacheprovider", "-p", "alphapulse_assets_tests.conftest"]
    return [sys.executable, "-m", "pytest", "-q", *plugin, "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")]


INNER_TEST = """
from pathlib import Path


def test_writes_into_the_checkout():
    Path({path!r}).write_text("left behind")
"""


def test_a_test_that_writes_into_the_checkout_fails_the_run_and_is_named(tmp_path):
    """The suite's own guard, run on a one-test suite whose test leaves a file in the checkout."""
    stray = REPO_ROOT / f"stray-output-{os.getpid()}.txt"
    (tmp_path / "test_inner.py").write_text(INNER_TEST.format(path=str(stray)))
    try:
        done = subprocess.run(
            _inner_session(tmp_path),
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stray.unlink(missing_ok=True)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert "1 passed" in done.stdout  # the test itself passed: the run fails on what it left behind
    assert "the suite wrote into the checkout" in done.stdout and stray.name in done.stdout, done.stdout
    assert f"{stray.name} appeared after test_inner.py::test_writes_into_the_checkout" in done.stdout, done.stdout


HOLDING_TEST = """
import time
from pathlib import Path


def test_holds_the_session_server(postgres_server):
    Path({mark!r}).write_text(str(postgres_server.data_dir))
    time.sleep(600)
"""


@pytest.mark.postgres
@pytest.mark.slow  # a second pytest session and its PostgreSQL server
def test_a_sigterm_to_the_test_session_stops_the_servers_it_started(tmp_path):
    """pytest killed with SIGTERM mid-test (a CI timeout, `kill`) still stops its session's PostgreSQL server:
    nothing it started outlives it."""
    mark = tmp_path / "server-data-dir"
    (tmp_path / "test_inner.py").write_text(HOLDING_TEST.format(mark=str(mark)))
    inner = subprocess.Popen(
        _inner_session(tmp_path),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not mark.exists() and inner.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert mark.exists(), "the inner session never started its server"
        pid_file = Path(mark.read_text()) / "postmaster.pid"
        server_pid = int(pid_file.read_text().splitlines()[0])
        inner.send_signal(signal.SIGTERM)
        out, _ = inner.communicate(timeout=60)
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.communicate()
    assert inner.returncode == pytest.ExitCode.INTERRUPTED, out
    assert _ends_within(server_pid, 10.0), out  # the server is gone, not orphaned
    assert not pid_file.parent.exists(), out  # and its data directory removed


def _ends_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` has ended within ``seconds``: PostgreSQL removes its pid file, which ``pg_ctl stop``
    waits for, a moment before its postmaster exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


# Two modules, each with six e2e tests and six tests that build on the one before (as a module whose fixture and
# earlier tests make what its later tests read). Each test records its worker (the e2e files: the last to write).
GROUPED_TESTS = """
import os
import time
from pathlib import Path

import pytest

MADE = []


@pytest.mark.parametrize("n", range(6))
@pytest.mark.e2e
def test_end_to_end(n):
    time.sleep(0.3)
    Path({out!r}, f"e2e-{{n}}").write_text(os.environ["PYTEST_XDIST_WORKER"])


@pytest.mark.parametrize("n", range(6))
def test_builds_on_the_one_before(n):
    assert len(MADE) == n, f"test {{n}} ran without the {{n}} before it on its worker"
    MADE.append(n)
    time.sleep(0.3)
    Path({out!r}, f"{{Path(__file__).stem}}-{{n}}").write_text(os.environ["PYTEST_XDIST_WORKER"])
"""


def _make_test_xdist_args() -> list[str]:
    """The pytest-xdist arguments `make test` passes (the Makefile's XDIST default)."""
    for line in (REPO_ROOT / "Makefile").read_text().splitlines():
        if line.startswith("XDIST ?="):
            return line.split("?=", 1)[1].split()
    raise AssertionError("the Makefile sets no XDIST default")


def _grouped_modules(tmp_path: Path, out: Path) -> list[str]:
    modules = []
    for name in ("test_inner", "test_inner_other"):
        (tmp_path / f"{name}.py").write_text(GROUPED_TESTS.format(out=str(out)))
        modules.append(str(tmp_path / f"{name}.py"))
    return modules


@pytest.mark.slow  # a second pytest session on two xdist workers
def test_under_two_workers_one_runs_every_end_to_end_test_and_each_module_runs_whole_on_one(tmp_path):
    """`make test`'s xdist arguments: the e2e tier is one group, so one deployment is alive at a time, and every
    other module runs whole, in order, on one worker."""
    out = tmp_path / "workers"
    out.mkdir()
    modules = _grouped_modules(tmp_path, out)
    done = subprocess.run(
        [*_inner_session(tmp_path)[:-1], *modules, *_make_test_xdist_args()],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
    worker = {p.name: p.read_text() for p in out.iterdir()}
    assert len(worker) == 18, worker
    ran_on = {
        group: {w for name, w in worker.items() if name.startswith(group + "-")}
        for group in ("e2e", "test_inner", "test_inner_other")
    }
    assert all(len(workers) == 1 for workers in ran_on.values()), ran_on
    assert len(set().union(*ran_on.values())) == 2, f"one worker ran every test: {ran_on}"


# What a pytest / pytest-xdist pair that disagree on where a test's id is kept does: the group suffix is gone.
LOST_GROUPS_PLUGIN = """
import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    for item in items:
        item._nodeid = item.nodeid.split("@")[0]
"""


@pytest.mark.slow  # a second pytest session on two xdist workers
def test_a_test_whose_xdist_group_is_lost_fails_saying_why(tmp_path):
    (tmp_path / "lost_groups.py").write_text(LOST_GROUPS_PLUGIN)
    modules = _grouped_modules(tmp_path, tmp_path)
    done = subprocess.run(
        [*_inner_session(tmp_path)[:-1], *modules, "-p", "lost_groups", *_make_test_xdist_args()],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join((str(REPO_ROOT), str(tmp_path)))},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert "passed" not in summary and "24 errors" in summary, done.stdout  # every grouped test refused
    assert "pytest-xdist ignored this test's xdist_group" in done.stdout, done.stdout
