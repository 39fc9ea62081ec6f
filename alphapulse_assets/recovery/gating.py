"""Schedules ask the circuit breakers before they launch anything.

``gate_run_request(dependencies, run_request, now)`` returns what the schedule should return:

- every breaker CLOSED (or DISABLED by an operator): the request unchanged;
- a breaker OPEN: a ``SkipReason`` naming the breaker, since when it is open and why, and when it will
  probe; FORCED_OPEN: who forced it and how to reset it;
- a breaker HALF_OPEN with a free probe slot: the request tagged ``alphapulse/probe=true`` (and
  ``alphapulse/probe_breakers``), the slot taken in the store so that no other tick or process sends a
  second probe; with the slot taken: a ``SkipReason`` saying a probe is in flight.

All breakers are read first and written only when the request will go out, so a skip never leaves a
probe slot taken. A *heavy* cadence (``RecoveryConfig.heavy_cadences``) also skips while the host is
critically short of memory or disk (the guide's 95 % / 95 %): a monthly retrain started on a full host
would fail or take the host down with it, and the next tick tries again.

Schedules read the clock through :data:`clock` so that tests can inject one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import dagster as dg

from alphapulse_assets.alerting.alerts import iso_utc
from alphapulse_assets.platform_db import platform_db_url
from alphapulse_assets.recovery.breaker import BreakerState, CircuitState
from alphapulse_assets.recovery.breaker_store import BreakerStore
from alphapulse_assets.recovery.config import (
    PROBE_BREAKERS_TAG,
    PROBE_TAG,
    RecoveryConfig,
    host_pressure,
    load_recovery_config,
)
from alphapulse_assets.settings import get_settings

#: The wall clock the schedules use; tests replace it.
clock: Callable[[], float] = time.time


@lru_cache(maxsize=8)
def _store_for(url: str) -> BreakerStore:
    return BreakerStore(url)


def default_store() -> BreakerStore:
    """The breakers in the platform database of the current instance (one store per URL per process)."""
    return _store_for(platform_db_url())


def host_usage() -> tuple[float, float]:
    """(memory %, disk %) of this host; disk is the volume holding the platform's data."""
    import psutil

    path = Path(get_settings().home)
    while not path.exists() and path != path.parent:
        path = path.parent
    return float(psutil.virtual_memory().percent), float(psutil.disk_usage(str(path)).percent)


def _seconds(delta: float) -> str:
    return f"{max(delta, 0.0):.0f}s"


def describe_block(name: str, state: BreakerState, probe_timeout: float | None, now: float) -> str | None:
    """Why breaker ``name`` in ``state`` stops a launch now, or None when it does not."""
    since = iso_utc(state.since)
    if state.state is CircuitState.OPEN:
        retry_at = state.retry_at or now
        return (
            f"circuit breaker {name!r} is OPEN since {since} ({state.reason}); "
            f"it will probe at {iso_utc(retry_at)} (in {_seconds(retry_at - now)})"
        )
    if state.state is CircuitState.FORCED_OPEN:
        return (
            f"circuit breaker {name!r} is FORCED_OPEN since {since} by {state.forced_by}: {state.forced_reason}; "
            f"it will not probe until an operator runs `alphapulse breaker reset {name} --reason ...`"
        )
    return None


def _probe_busy(name: str, state: BreakerState, max_probes: int, probe_timeout: float | None) -> str | None:
    if state.state is not CircuitState.HALF_OPEN or state.half_open_probes_in_flight < max_probes:
        return None
    text = f"circuit breaker {name!r} is HALF_OPEN since {iso_utc(state.since)} and its probe run is in flight"
    if probe_timeout is not None and state.probe_started_at is not None:
        text += f"; the next probe is possible once it reports, or at {iso_utc(state.probe_started_at + probe_timeout)}"
    return text


def gate_run_request(
    dependencies: Sequence[str],
    run_request: dg.RunRequest,
    now: float,
    *,
    heavy: bool = False,
    store: BreakerStore | None = None,
    config: RecoveryConfig | None = None,
    usage: Callable[[], tuple[float, float]] | None = None,
) -> dg.RunRequest | dg.SkipReason:
    """The request, the request tagged as a probe, or a SkipReason (see the module docstring)."""
    config = config or load_recovery_config()
    if heavy:
        memory, disk = (usage or host_usage)()
        pressure = host_pressure(memory, disk, config.host)
        if pressure:
            return dg.SkipReason(f"heavy cadence not started: {pressure}; the next tick tries again")
    if not dependencies:
        return run_request
    store = store or default_store()
    states = {name: store.current(name, config.breaker(name), now) for name in dependencies}
    blocks = []
    for name, state in states.items():
        cfg = config.breaker(name)
        why = describe_block(name, state, cfg.probe_timeout, now) or _probe_busy(
            name, state, cfg.half_open_max_probes, cfg.probe_timeout
        )
        if why:
            blocks.append(why)
    if blocks:
        return dg.SkipReason("; ".join(blocks))
    probing = []
    for name, state in states.items():
        if state.state is not CircuitState.HALF_OPEN:
            continue
        decision = store.allow(name, config.breaker(name), now)
        if not decision.allowed:  # another tick or process took the slot between our read and write
            return dg.SkipReason(f"circuit breaker {name!r}: {decision.reason}")
        probing.append(name)
    if not probing:
        return run_request
    tags = {**(run_request.tags or {}), PROBE_TAG: "true", PROBE_BREAKERS_TAG: ",".join(probing)}
    return run_request.with_replaced_attrs(tags=tags)


def gate_schedule(
    dependencies: Sequence[str], run_request: dg.RunRequest, *, heavy: bool = False
) -> dg.RunRequest | dg.SkipReason:
    """What a schedule calls: :func:`gate_run_request` at :data:`clock`'s ``now`` with the default store."""
    return gate_run_request(dependencies, run_request, clock(), heavy=heavy)


__all__ = ["clock", "default_store", "describe_block", "gate_run_request", "gate_schedule", "host_usage"]
