"""Runs that this machine's processes own: stop them cleanly, end them when their process died, say what
they wait for.

Dagster's run monitoring watches the run workers that its run launcher started; a run executed in-process
by ``alphapulse run`` / ``ingest`` (cron, CI) has no such worker. So every CLI run carries its owner as run
tags (``alphapulse/pid``, ``alphapulse/host``, ``alphapulse/pid_started``), and:

- ``stop_on_interrupt``: a stop (SIGTERM, Ctrl-C) inside a step is not retried. Dagster turns an interrupt
  inside a step that has a ``RetryPolicy`` into a retry; this turns it into a failure that is not retried,
  and, when this process owns the run, marks the run CANCELING first, so that it ends CANCELED.
- ``end_dead_runs``: a run still STARTING/STARTED/CANCELING whose owner process on this host no longer
  exists (SIGKILL, out of memory, power cut) is marked FAILURE ("worker process <pid> on <host> died") and
  its concurrency-pool slots are freed. The CLI does this before every run, ``dead_run_sensor`` every 30 s
  (``ALPHAPULSE_MONITORING__DEAD_RUN_INTERVAL_SECONDS``).
- ``pool_waits``: what a run waits for: which pool, its limit, which runs hold its slots.
"""

from __future__ import annotations

import functools
import inspect
import os
import socket
from collections.abc import Callable

import dagster as dg
import psutil

from alphapulse_assets.settings import get_settings

PID_TAG = "alphapulse/pid"
HOST_TAG = "alphapulse/host"
PID_STARTED_TAG = "alphapulse/pid_started"  # the process's start time: a reused pid is not the owner

#: Statuses of a run that is still going (or claims to be); a dead owner's run stays in one of them forever.
ACTIVE = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
INTERRUPTS = (KeyboardInterrupt, dg.DagsterExecutionInterruptedError)


def hostname() -> str:
    return socket.gethostname()


def owner_tags() -> dict[str, str]:
    """Run tags naming this process as the run's owner."""
    pid = os.getpid()
    return {PID_TAG: str(pid), HOST_TAG: hostname(), PID_STARTED_TAG: f"{psutil.Process(pid).create_time():.2f}"}


def owned_here(run: dg.DagsterRun) -> bool:
    """This very process executes the run (an in-process CLI run)."""
    return run.tags.get(PID_TAG) == str(os.getpid()) and run.tags.get(HOST_TAG) == hostname()


def owner_alive(tags: dict[str, str]) -> bool | None:
    """Whether the run's owner process still exists; None when it cannot be told from here (no owner tags,
    or another host)."""
    pid, host = tags.get(PID_TAG), tags.get(HOST_TAG)
    if not pid or host != hostname():
        return None
    try:
        proc = psutil.Process(int(pid))
        started = tags.get(PID_STARTED_TAG)
        if started and abs(proc.create_time() - float(started)) > 1.0:
            return False  # the pid was reused by another process
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError):
        return False
    except psutil.AccessDenied:
        return True


def free_pool_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        storage.free_concurrency_slots_for_run(run_id)


def end_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark FAILURE every active run whose owner process on this host died, free its pool slots; return one
    line per run ended."""
    ended = []
    for run in instance.get_runs(dg.RunsFilter(statuses=ACTIVE, tags={HOST_TAG: hostname()})):
        if owner_alive(run.tags) is not False:
            continue
        pid, host = run.tags[PID_TAG], run.tags[HOST_TAG]
        reason = (
            f"worker process {pid} on {host} died (killed or crashed) while the run was "
            f"{run.status.value}; run ended and its pool slots freed"
        )
        # Slots first: whoever sees the run ended must find its slots free (the owner is dead; nothing
        # re-claims them, and a failed report is retried on the next pass, freeing again harmlessly).
        free_pool_slots(instance, run.run_id)
        # Read again just before: a CLI starting and the daemon's sensor may find the same dead run; the one that
        # comes second sees it ended and does not end it twice (the run's alert is once per run in any case).
        now = instance.get_run_by_id(run.run_id)
        if now is None or now.status not in ACTIVE:
            continue
        instance.report_run_failed(now, message=reason)
        ended.append(f"run {run.run_id} ({run.job_name}): {reason}")
    return ended


def request_stop(instance: dg.DagsterInstance, run_id: str, why: str) -> bool:
    """Mark an active run CANCELING (once), so that its interrupted execution ends CANCELED."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.status not in (
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    ):
        return False
    instance.report_run_canceling(run, message=why)
    return True


def _stopped(context, exc: BaseException) -> dg.Failure:
    run = context.dagster_run
    if owned_here(run):
        request_stop(context.instance, run.run_id, f"stop requested: process {os.getpid()} was interrupted")
    return dg.Failure(
        description=f"stopped: the step was interrupted ({type(exc).__name__}); not retried", allow_retries=False
    )


def stop_on_interrupt(fn: Callable) -> Callable:
    """Decorate a step's function (below ``@dg.asset``): an interrupt ends the step at once, unretried (see the
    module docstring). The step's first parameter is its context."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_step(context, *args, **kwargs):
            try:
                yield from fn(context, *args, **kwargs)
            except INTERRUPTS as exc:
                raise _stopped(context, exc) from exc

        return gen_step

    @functools.wraps(fn)
    def step(context, *args, **kwargs):
        try:
            return fn(context, *args, **kwargs)
        except INTERRUPTS as exc:
            raise _stopped(context, exc) from exc

    return step


def pool_waits(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """One line per pool in which the run has steps waiting for a slot, naming the runs that hold them."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    lines = []
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        waiting = [s.step_key for s in info.pending_steps if s.run_id == run_id and s.assigned_timestamp is None]
        if not waiting:
            continue
        holders = sorted({s.run_id for s in info.claimed_slots if s.run_id != run_id})
        described = []
        for holder_id in holders:
            holder = instance.get_run_by_id(holder_id)
            if holder is None:
                described.append(f"{holder_id} (deleted)")
                continue
            owner = f", pid {holder.tags[PID_TAG]} on {holder.tags.get(HOST_TAG)}" if PID_TAG in holder.tags else ""
            described.append(f"{holder_id} ({holder.job_name}, {holder.status.value}{owner})")
        lines.append(
            f"waiting for a slot in pool '{pool}' (limit {info.slot_count}) for {', '.join(waiting)}; "
            f"held by run {', '.join(described) or 'none (slots being assigned)'}"
        )
    return lines


@dg.sensor(
    name="dead_run_sensor",
    minimum_interval_seconds=get_settings().monitoring.dead_run_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ends runs whose owner process on this host died (a SIGKILLed `alphapulse run`): marks them "
    "FAILURE with the reason and frees their concurrency-pool slots.",
)
def dead_run_sensor(context: dg.SensorEvaluationContext):
    ended = end_dead_runs(context.instance)
    for line in ended:
        context.log.warning(line)
    return dg.SkipReason("; ".join(ended) if ended else "no dead run")


__all__ = [
    "HOST_TAG",
    "PID_STARTED_TAG",
    "PID_TAG",
    "dead_run_sensor",
    "end_dead_runs",
    "owner_alive",
    "owner_tags",
    "pool_waits",
    "request_stop",
    "stop_on_interrupt",
]
