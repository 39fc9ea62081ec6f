"""Missed runs: after the daemon was down over several scheduled times, each cadence catches up once.

The daemon passes the instance scheduler's max_catchup_runs (1 in every shipped config: test_deploy_promises.py).
"""

import logging
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

# Internal: the scheduler's tick function under a frozen clock; no public API runs a schedule tick at a chosen time.
import dagster._daemon  # noqa: F401  (import order: the scheduler module needs the daemon package first)
import pytest
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus, ScheduleInstigatorData
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.workspace.load_target import ModuleTarget
from dagster._scheduler.scheduler import launch_scheduled_runs

ROOT = Path(__file__).resolve().parent.parent


def _start_schedule(workspace_context, name: str, start: datetime) -> None:
    request_context = workspace_context.create_request_context()
    location = next(iter(request_context.get_code_location_entries().values())).code_location
    repo = next(iter(location.get_repositories().values()))
    schedule = repo.get_schedule(name)
    workspace_context.instance.add_instigator_state(
        InstigatorState(
            schedule.get_remote_origin(),
            InstigatorType.SCHEDULE,
            InstigatorStatus.RUNNING,
            ScheduleInstigatorData(schedule.cron_schedule, start_timestamp=start.timestamp()),
        )
    )


def _tick(workspace_context, now: datetime) -> None:
    with freeze_time(now):
        list(launch_scheduled_runs(workspace_context, logging.getLogger("test"), now, {}, max_catchup_runs=1))


def _time_key(run) -> str:
    """The time partition a cadence run trains: its range covers one time key x a range of symbols."""
    start = run.tags["dagster/asset_partition_range_start"].split("|")[0]
    end = run.tags["dagster/asset_partition_range_end"].split("|")[0]
    assert start == end, run.tags
    return start


@pytest.mark.slow
def test_nightly_catches_up_once_after_three_missed_nights():
    with dg.instance_for_test(synchronous_run_launcher=False) as instance:
        target = ModuleTarget(
            module_name="alphapulse_assets.definitions",
            attribute="defs",
            working_directory=str(ROOT),
            location_name="alphapulse",
        )
        with create_test_daemon_workspace_context(target, instance) as context:
            start = datetime(2026, 11, 20, 1, 0, tzinfo=timezone.utc)
            _start_schedule(context, "nightly_schedule", start)
            _tick(context, datetime(2026, 11, 20, 2, 0, 30, tzinfo=timezone.utc))  # on time
            first = instance.get_runs()
            assert [_time_key(r) for r in first] == ["2026-11-19"]
            # the daemon is down for three nights, and comes back on the 24th at 10:00
            _tick(context, datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc))
            runs = instance.get_runs()
            assert len(runs) == 2  # one catch-up run, not three
            assert _time_key(runs[0]) == "2026-11-23"  # and it trains on the newest day
