"""The breaker sensor: feeds the circuit breakers from run outcomes, alerts on transitions, shows the state.

Every tick (30 s):

1. reads the run successes and failures that happened since its cursor (``fetch_run_status_changes``
   from a storage id: an indexed range scan, so a tick costs what is new, not the whole history; a run
   failure also reads its own step events);
2. maps each finished run to the protected dependencies it exercised (the ``alphapulse/dependency``
   tag of the assets whose steps ran or failed; the job's assets when no step ran) and records one
   success or classified failure per dependency (``recovery.outcomes``, with the platform's one classifier
   in ``recovery.errors``): permanent errors are tallied but do not trip;
3. makes the lazy OPEN -> HALF_OPEN transition durable for breakers whose timeout passed, so it shows
   even when no schedule asks;
4. turns every new breaker event (from the sensor, the schedules' probes or the operator CLI) into
   alerts through the ``AlertRouter``: one alert when a breaker opens (re-opens after a failed probe
   are de-duplicated by the router), a resolve when it closes; FORCED_OPEN raises a warning;
5. escalates: ``threshold`` critical errors within the window raise one escalated alert
   (``recovery.escalation``);
6. reports: the tick message lists every breaker's state, and an ``AssetObservation`` of the external
   asset ``platform/breakers`` carries each breaker's state, since (the time of its last transition),
   retry_at, reason and counters whenever any of them changed (and at least hourly). A configured
   breaker that has never seen an outcome shows as closed with no "since".

On its very first tick (no cursor) the sensor starts from the newest run event: history from before
it was turned on is not replayed into the breakers.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import dagster as dg
from dagster import DagsterEventType

from alphapulse_assets.alerting.alerts import Alert, AlertRouter, build_router_from_env, iso_utc
from alphapulse_assets.platform_db import platform_db_url
from alphapulse_assets.recovery import breaker as bk
from alphapulse_assets.recovery.breaker import BreakerState, CircuitState
from alphapulse_assets.recovery.breaker_store import BreakerEvent, BreakerStore
from alphapulse_assets.recovery.config import (
    CADENCE_TAG,
    DEPENDENCY_TAG,
    JOB_DEPENDENCIES,
    RecoveryConfig,
    load_recovery_config,
)
from alphapulse_assets.recovery.errors import DataValidationError, Severity
from alphapulse_assets.recovery.escalation import EscalationState, observe
from alphapulse_assets.recovery.gating import default_store
from alphapulse_assets.recovery.outcomes import Outcome, StepFailure, run_outcomes
from alphapulse_assets.recovery.policies import step_failure_record

BREAKERS_ASSET_KEY = dg.AssetKey(["platform", "breakers"])
ESCALATION_KEY = "escalation:critical_errors"
CURSOR_VERSION = 1
#: Run events read per tick at most; the rest wait for the next tick (the cursor stops before them).
BATCH_LIMIT = 200
OBSERVE_EVERY_SECONDS = 3600.0

breakers_asset = dg.AssetSpec(
    BREAKERS_ASSET_KEY,
    group_name="platform",
    description="The circuit breakers of the protected dependencies. Observed by the breaker sensor whenever a "
    "breaker changes state: the metadata carries each breaker's state, since, retry_at and reason.",
)


def breaker_alert_key(name: str) -> str:
    return f"breaker:{name}"


# -- cursor ----------------------------------------------------------------------------------------


@dataclass
class Cursor:
    runs_after: int
    events_after: int
    escalation: EscalationState = field(default_factory=EscalationState)
    observed_at: float | None = None
    #: A digest of what the last observation showed: a new one goes out as soon as anything shown changes.
    observed: str | None = None

    def dumps(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "runs": self.runs_after,
                "events": self.events_after,
                "esc": self.escalation.to_dict(),
                "observed_at": self.observed_at,
                "observed": self.observed,
            },
            sort_keys=True,
        )

    @classmethod
    def loads(cls, text: str) -> Cursor:
        try:
            data = json.loads(text)
            if data.get("v") != CURSOR_VERSION:
                raise ValueError(f"cursor version {data.get('v')!r}")
            observed = data.get("observed_at")
            return cls(
                int(data["runs"]),
                int(data["events"]),
                EscalationState.from_dict(data.get("esc")),
                None if observed is None else float(observed),
                data.get("observed"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataValidationError(
                f"unreadable breaker sensor cursor {text[:80]!r}: {exc}", where="breaker_sensor cursor"
            ) from exc


def _latest_run_storage_id(instance: dg.DagsterInstance) -> int:
    latest = 0
    for kind in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
        records = instance.fetch_run_status_changes(kind, limit=1, ascending=False).records
        if records:
            latest = max(latest, records[0].storage_id)
    return latest


def initial_cursor(instance: dg.DagsterInstance, store: BreakerStore) -> Cursor:
    """Start from now: the newest run event and the newest breaker event."""
    events = store.events(limit=1)
    return Cursor(_latest_run_storage_id(instance), events[-1].id if events else 0)


# -- dependencies of steps and jobs ----------------------------------------------------------------


@dataclass(frozen=True)
class DependencyMap:
    """Which protected dependencies each step (node) and each job exercises."""

    by_node: Mapping[str, tuple[str, ...]]
    by_job: Mapping[str, tuple[str, ...]]

    def for_step(self, step_key: str) -> tuple[str, ...]:
        return self.by_node.get(step_key.split("[", 1)[0], ())

    def for_run(self, run: dg.DagsterRun) -> tuple[str, ...]:
        if run.step_keys_to_execute:
            deps = [d for key in run.step_keys_to_execute for d in self.for_step(key)]
            return tuple(dict.fromkeys(deps))
        if run.job_name in self.by_job:
            return self.by_job[run.job_name]
        if run.job_name in JOB_DEPENDENCIES:
            return JOB_DEPENDENCIES[run.job_name]
        return ("training",) if run.tags.get(CADENCE_TAG) else ()


def dependency_map(repository_def: dg.RepositoryDefinition | None) -> DependencyMap:
    if repository_def is None:
        return DependencyMap({}, {})
    return _dependency_map(repository_def)


@lru_cache(maxsize=4)
def _dependency_map(repository_def: dg.RepositoryDefinition) -> DependencyMap:
    by_node: dict[str, list[str]] = {}
    for assets_def in set(repository_def.assets_defs_by_key.values()):
        if not assets_def.is_executable:
            continue
        deps = [spec.tags[DEPENDENCY_TAG] for spec in assets_def.specs if spec.tags.get(DEPENDENCY_TAG)]
        if deps:
            by_node.setdefault(assets_def.node_def.name, []).extend(deps)
    nodes = {k: tuple(dict.fromkeys(v)) for k, v in by_node.items()}
    by_job: dict[str, tuple[str, ...]] = {}
    for job in repository_def.get_all_jobs():
        deps = [d for node in job.graph.nodes for d in nodes.get(node.name, ())]
        if deps:
            by_job[job.name] = tuple(dict.fromkeys(deps))
    return DependencyMap(nodes, by_job)


# -- one tick ----------------------------------------------------------------------------------------


@dataclass
class TickReport:
    cursor: str
    message: str
    asset_events: list[dg.AssetObservation]
    runs_seen: int
    outcomes: list[tuple[str, Outcome]]
    events: list[BreakerEvent]
    states: dict[str, BreakerState]
    alerts_raised: list[str]
    alerts_resolved: list[str]


def _run_step_outcome(instance: dg.DagsterInstance, run: dg.DagsterRun, deps: DependencyMap):
    """(dependencies of steps that succeeded, step failures) of one failed run, from its own events."""
    records = instance.get_records_for_run(
        run.run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.STEP_SUCCESS}
    ).records
    succeeded: list[str] = []
    failures: list[StepFailure] = []
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None or event.step_key is None:
            continue
        step_deps = deps.for_step(event.step_key)
        if event.event_type is DagsterEventType.STEP_SUCCESS:
            succeeded.extend(step_deps)
            continue
        if not step_deps:  # a failed step of no protected dependency (e.g. a resample) says nothing
            continue
        failures.append(StepFailure(step_deps, step_failure_record(event)))
    return succeeded, failures


def _new_run_records(instance: dg.DagsterInstance, after: int, limit: int):
    """Run successes and failures after storage id ``after``, oldest first, never skipping any."""
    merged, cutoff = [], None
    for kind in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
        records = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(kind, after_storage_id=after), limit=limit, ascending=True
        ).records
        merged.extend(records)
        if len(records) == limit:  # more of this kind wait: stop before anything past what we hold
            last = records[-1].storage_id
            cutoff = last if cutoff is None else min(cutoff, last)
    merged.sort(key=lambda r: r.storage_id)
    if cutoff is not None:
        merged = [r for r in merged if r.storage_id <= cutoff]
    return merged


NEVER_FED = "no run recorded yet"


def _state_line(name: str, state: BreakerState | None, cfg: bk.BreakerConfig) -> str:
    if state is None:
        return f"{name} CLOSED ({NEVER_FED})"
    s = state.state
    head = f"{name} {s.value.upper()} since {iso_utc(state.since)}"
    if s is CircuitState.OPEN and state.retry_at is not None:
        return f"{head}, probe at {iso_utc(state.retry_at)} ({state.reason})"
    if s is CircuitState.HALF_OPEN:
        return f"{head}, {state.half_open_probes_in_flight} probe(s) in flight"
    if s in (CircuitState.FORCED_OPEN, CircuitState.DISABLED):
        return f"{head} by {state.forced_by}: {state.forced_reason}"
    return head + (f", {state.consecutive_failures} consecutive failure(s)" if state.consecutive_failures else "")


def _breaker_entry(state: BreakerState | None) -> dict[str, object]:
    """What the UI shows of one breaker; ``None`` is a configured breaker that never saw an outcome."""
    if state is None:
        return {
            "state": CircuitState.CLOSED.value,
            "since": None,
            "retry_at": None,
            "reason": NEVER_FED,
            "consecutive_failures": 0,
            "successes": 0,
            "failures": 0,
            "permanent_failures": 0,
            "forced_by": None,
        }
    retry_at = state.retry_at
    return {
        "state": state.state.value,
        "since": iso_utc(state.since),
        "retry_at": iso_utc(retry_at) if retry_at is not None else None,
        "reason": state.reason,
        "consecutive_failures": state.consecutive_failures,
        "successes": state.successes,
        "failures": state.failures,
        "permanent_failures": state.permanent_failures,
        "forced_by": state.forced_by,
    }


def _shown_digest(states: Mapping[str, BreakerState | None]) -> str:
    shown = {name: _breaker_entry(state) for name, state in sorted(states.items())}
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()[:16]


def breakers_observation(
    states: Mapping[str, BreakerState | None], configs: RecoveryConfig, now: float
) -> dg.AssetObservation:
    """The observation of ``platform/breakers``: one JSON entry and a state text per breaker, and a table."""
    metadata: dict[str, object] = {}
    rows = ["| breaker | state | since | retry_at | reason |", "|---|---|---|---|---|"]
    for name, state in sorted(states.items()):
        entry = _breaker_entry(state)
        metadata[name] = dg.MetadataValue.json(entry)
        metadata[f"{name}/state"] = entry["state"]
        rows.append(
            f"| {name} | {entry['state']} | {entry['since'] or '-'} | {entry['retry_at'] or '-'} | "
            f"{str(entry['reason']).replace('|', '/')} |"
        )
    metadata["breakers"] = dg.MetadataValue.md("\n".join(rows))
    metadata["observed_at"] = iso_utc(now)
    return dg.AssetObservation(asset_key=BREAKERS_ASSET_KEY, metadata=metadata)


def _alerts_for_events(
    events: Iterable[BreakerEvent],
    states: Mapping[str, BreakerState],
    router: AlertRouter,
    raised: list[str],
    resolved: list[str],
) -> None:
    for ev in events:
        key = breaker_alert_key(ev.name)
        labels = {"breaker": ev.name, "state": ev.to_state}
        if ev.to_state == CircuitState.OPEN.value:
            state = states.get(ev.name)
            retry = f" It will probe at {iso_utc(state.retry_at)}." if state and state.retry_at else ""
            router.raise_alert(
                Alert(
                    key=key,
                    severity=Severity.ERROR,
                    title=f"Circuit breaker {ev.name} is OPEN",
                    body=f"Since {iso_utc(ev.at)}: {ev.reason}.{retry} Schedules gated by it skip until a probe succeeds.",
                    source="breaker_sensor",
                    labels=labels,
                    at=ev.at,
                )
            )
            raised.append(key)
        elif ev.to_state == CircuitState.FORCED_OPEN.value:
            router.raise_alert(
                Alert(
                    key=key,
                    severity=Severity.WARNING,
                    title=f"Circuit breaker {ev.name} is FORCED_OPEN",
                    body=f"Since {iso_utc(ev.at)}: {ev.reason}. Schedules gated by it skip until it is reset.",
                    source="breaker_sensor",
                    labels=labels,
                    at=ev.at,
                )
            )
            raised.append(key)
        elif ev.to_state in (CircuitState.CLOSED.value, CircuitState.DISABLED.value) and ev.from_state != ev.to_state:
            router.resolve(key, at=ev.at)
            resolved.append(key)


def evaluate_tick(
    instance: dg.DagsterInstance,
    repository_def: dg.RepositoryDefinition | None,
    cursor: str | None,
    *,
    store: BreakerStore,
    router: AlertRouter,
    config: RecoveryConfig,
    now: float,
    batch_limit: int = BATCH_LIMIT,
) -> TickReport:
    """One tick of the breaker sensor (see the module docstring); the Dagster wrapper only adapts it."""
    first = cursor is None
    cur = initial_cursor(instance, store) if first else Cursor.loads(cursor)
    deps = dependency_map(repository_def)

    # 1-2: new run outcomes -> breakers.
    records = _new_run_records(instance, cur.runs_after, batch_limit)
    runs = {}
    if records:
        ids = list(dict.fromkeys(r.run_id for r in records))
        runs = {run.run_id: run for run in instance.get_runs(dg.RunsFilter(run_ids=ids))}
    recorded: list[tuple[str, Outcome]] = []
    critical_times: list[float] = []
    for record in records:
        run = runs.get(record.run_id)
        if run is None:  # deleted since
            continue
        ok = record.event_log_entry.dagster_event_type == DagsterEventType.RUN_SUCCESS
        run_deps = deps.for_run(run)
        succeeded, failures = ([], []) if ok else _run_step_outcome(instance, run, deps)
        reason = run.tags.get("dagster/failure_reason", "")
        outcomes = run_outcomes(ok, run_deps, succeeded, failures, reason)
        for outcome in outcomes:
            cfg = config.breaker(outcome.dependency)
            store.record(outcome.dependency, cfg, outcome.ok, outcome.error_class, now=now, detail=outcome.detail)
            recorded.append((run.run_id, outcome))
        if any(o.critical for o in outcomes):
            critical_times.append(now)
    if records:
        cur.runs_after = records[-1].storage_id

    # 3: durable OPEN -> HALF_OPEN (and freed lost probes) for every breaker whose time has come.
    for name, stored in store.all().items():
        cfg = config.breaker(name)
        if bk.current(stored, cfg, now)[0] != stored:
            store.update(name, lambda s, cfg=cfg: bk.current(s, cfg, now), now)
    states = {name: bk.current(s, config.breaker(name), now)[0] for name, s in store.all().items()}
    shown: dict[str, BreakerState | None] = dict(states)
    for name in config.dependencies:  # configured but never fed: closed, and no transition to date it
        shown.setdefault(name, None)

    # 4: alerts for every breaker event since the last tick, whoever caused it.
    events = store.events(after_id=cur.events_after, limit=1000)
    raised: list[str] = []
    resolved: list[str] = []
    _alerts_for_events(events, states, router, raised, resolved)
    if events:
        cur.events_after = events[-1].id

    # 5: escalation.
    step = observe(cur.escalation, config.escalation, now, critical_times)
    cur.escalation = step.state
    if step.action == "raise":
        router.raise_alert(
            Alert(
                key=ESCALATION_KEY,
                severity=Severity.CRITICAL,
                title=f"Escalation: {step.message}",
                body="Critical errors (host resources, system failures) keep recurring; see the failed runs.",
                source="breaker_sensor",
                labels={"escalation": "critical_errors"},
                at=now,
            )
        )
        raised.append(ESCALATION_KEY)
    elif step.action == "resolve":
        router.resolve(ESCALATION_KEY, at=now)
        resolved.append(ESCALATION_KEY)
    router.flush()

    # 6: what the UI shows.
    asset_events: list[dg.AssetObservation] = []
    stale = cur.observed_at is None or now - cur.observed_at >= OBSERVE_EVERY_SECONDS
    digest = _shown_digest(shown)
    if first or events or stale or digest != cur.observed:
        asset_events.append(breakers_observation(shown, config, now))
        cur.observed_at, cur.observed = now, digest
    parts = []
    if recorded:
        parts.append(f"{len(recorded)} outcome(s) from {len({r for r, _ in recorded})} run(s)")
    for ev in events:
        parts.append(f"{ev.name}: {ev.from_state} -> {ev.to_state} ({ev.reason})")
    if step.action:
        parts.append(f"escalation {step.action}: {step.message}")
    lines = [_state_line(n, s, config.breaker(n)) for n, s in sorted(shown.items())] or [
        "no breaker has seen a run yet"
    ]
    message = ("; ".join(parts) + " | " if parts else "") + "breakers: " + "; ".join(lines)
    return TickReport(
        cur.dumps(), message[:4000], asset_events, len(records), recorded, events, states, raised, resolved
    )


# -- the Dagster sensor --------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _router_for(url: str) -> AlertRouter:
    return build_router_from_env(url)


def build_breaker_sensor(
    *,
    name: str = "breaker_sensor",
    store: Callable[[], BreakerStore] | None = None,
    router: Callable[[], AlertRouter] | None = None,
    config: Callable[[], RecoveryConfig] = load_recovery_config,
    clock: Callable[[], float] = time.time,
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """The breaker sensor; tests inject the store, router, configuration and clock."""

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Feeds the circuit breakers from new run outcomes, alerts on their transitions, escalates "
        "recurring critical errors and observes platform/breakers with every breaker's state.",
    )
    def _breaker_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        report = evaluate_tick(
            context.instance,
            context.repository_def,
            context.cursor,
            store=(store or default_store)(),
            router=(router or (lambda: _router_for(platform_db_url())))(),
            config=config(),
            now=clock(),
        )
        return dg.SensorResult(skip_reason=report.message, cursor=report.cursor, asset_events=report.asset_events)

    return _breaker_sensor


breaker_sensor = build_breaker_sensor()

__all__ = [
    "BREAKERS_ASSET_KEY",
    "ESCALATION_KEY",
    "Cursor",
    "DependencyMap",
    "TickReport",
    "breaker_alert_key",
    "breaker_sensor",
    "breakers_asset",
    "breakers_observation",
    "build_breaker_sensor",
    "dependency_map",
    "evaluate_tick",
    "initial_cursor",
]
