"""The suite's tiers are honest: what a selected test starts is what its marks say (README, "Tests")."""

from __future__ import annotations

import os
import subprocess
import sys

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
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "alphapulse_assets_tests.conftest"]
            + ["--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
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
