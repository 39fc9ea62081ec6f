"""What the health checks, the report and ``alphapulse status`` read from Dagster and the platform database.

Thin readers: each returns plain values and leaves the judgement to ``health.py`` / ``report.py``.
Every probe catches its own failure and turns it into a finding, so one broken dependency shows up as a
reason instead of hiding all the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

import dagster as dg
import sqlalchemy as sa
from dagster import DagsterEventType

from alphapulse_assets.alerting.alert_store import AlertStore
from alphapulse_assets.market_data.sources import build_source
from alphapulse_assets.market_data.symbols import active_symbols, split_keys
from alphapulse_assets.monitoring import health as hl
from alphapulse_assets.monitoring.metrics import SampleStore
from alphapulse_assets.monitoring.report import DecisionRecord, RunRecord, StepRecord, TripRecord
from alphapulse_assets.monitoring.thresholds import DEFAULT_RULES
from alphapulse_assets.platform_db import engine_for, platform_db_url, redact
from alphapulse_assets.recovery.breaker_store import BreakerStore
from alphapulse_assets.recovery.errors import ErrorClass, FailureRecord, classify, classify_run
from alphapulse_assets.recovery.policies import step_failure_record
from alphapulse_assets.settings import AlphaPulseSettings, MonitoringSettings, get_settings
from alphapulse_assets.training.assets import ModelRegistryResource, partitions_for
from alphapulse_assets.training.registry import ArtifactIntegrityError

CADENCE_NAMES = ("nightly", "weekly", "monthly")
# Checks shown in the health status but alerted on elsewhere, so that one problem makes one alert:
# disk by the resource sensor's threshold rules, breakers by the breaker sensor, open alerts by whoever
# raised them, champion files by the model registry when it refuses one.
NOT_ALERTED_PREFIXES = ("disk", "resources", "breakers", "alerts", "champion_files")
# Alerts whose condition a health check of its own judges from fresher facts: they do not count again
# under "alerts" (a resource alert left open by a sensor that stopped would keep health critical forever).
JUDGED_ELSEWHERE_PREFIXES = ("health:", "resource:")


def cadence_job_name(cadence: str) -> str:
    return f"{cadence}_cadence"


def _with_timeout(fn: Callable[[], None], timeout: float) -> str | None:
    """Run ``fn`` in a daemon thread; None if it returned, else the error (or a timeout) as text."""
    box: dict[str, BaseException | None] = {}

    def work() -> None:
        try:
            fn()
            box["error"] = None
        except BaseException as exc:  # noqa: BLE001 - reported as a finding
            box["error"] = exc

    t = threading.Thread(target=work, daemon=True, name="alphapulse-probe")
    t.start()
    t.join(timeout)
    if "error" not in box:
        return f"no answer within {timeout:g} s"
    err = box["error"]
    return None if err is None else f"{type(err).__name__}: {str(err)[:300]}"


# -- individual readers -------------------------------------------------------------------------------------


def probe_failure(
    name: str, what: str, exc: Exception, status: hl.Status = hl.Status.WARNING, *, detail: bool = True
) -> hl.CheckResult:
    """A probe that raised, as a finding: classified by the platform's classifier, and critical when the host
    itself is in trouble (a full disk shows as SQLite's "database or disk is full" or "disk I/O error").
    ``detail=False`` leaves the message out (a database driver's message may name the server and user)."""
    c = classify(exc)
    if c.error_class is ErrorClass.SYSTEM:
        status = hl.Status.CRITICAL
    first = (str(exc).strip().splitlines() or [""])[0] if detail else ""
    return hl.CheckResult(
        name, status, (f"{what}: {c.error_class.value} error ({c.reason})" + (f": {first}" if first else ""))[:400]
    )


def storage_check(instance: dg.DagsterInstance) -> hl.CheckResult:
    try:
        instance.get_runs(limit=1)
        instance.get_daemon_heartbeats()
    except Exception as exc:  # noqa: BLE001
        return probe_failure("storage", "instance storage unreachable", exc, hl.Status.CRITICAL)
    return hl.CheckResult("storage", hl.Status.HEALTHY, "instance storage reachable")


def platform_db_check(url: str) -> hl.CheckResult:
    """Reachable and readable: a SQLite file is checked page by page (``SELECT 1`` succeeds on any file)."""
    try:
        with engine_for(url).connect() as conn:
            if url.startswith("sqlite"):
                problems = [row[0] for row in conn.execute(sa.text("PRAGMA quick_check"))]
                if problems != ["ok"]:
                    raise sa.exc.DatabaseError("PRAGMA quick_check", None, "; ".join(problems[:3]))
            else:
                conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        error = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return hl.CheckResult(
            "platform_db",
            hl.Status.CRITICAL,
            f"platform database {redact(url)} unreadable: {type(exc).__name__}: {error}"[:400],
        )
    return hl.CheckResult("platform_db", hl.Status.HEALTHY, "platform database reachable")


# uri -> (digest, file stamp) of champion files this process verified: unchanged since, not read again.
_verified_files: dict[str, tuple] = {}


def champion_files_check(url: str, registry=None) -> hl.CheckResult:
    """Every champion's model file against its recorded digest (read and hashed, never deserialised).

    One listing of the artifact store per call gives each file's size and change stamp (ETag or modification
    time); a file whose stamp and digest are those it had when this process last verified it is not read
    again, so a tick costs a listing, not a read of every champion of every symbol and cadence. A file that
    changed, appeared or went missing is read and hashed as before."""
    registry = registry or ModelRegistryResource(db_url=url).get()
    refused = []
    champions = registry.champions()
    stamps = registry.file_stamps()
    for uri in set(_verified_files) - {c.uri for c in champions}:
        del _verified_files[uri]
    read = 0
    for champion in champions:
        stamp = stamps.get(champion.uri)
        if stamp is not None and _verified_files.get(champion.uri) == (champion.sha256, stamp):
            continue
        _verified_files.pop(champion.uri, None)
        read += 1
        try:
            registry.verify(champion)
        except ArtifactIntegrityError as exc:
            refused.append(f"{champion.label}: {exc}")
            continue
        if stamp is not None:
            _verified_files[champion.uri] = (champion.sha256, stamp)
    if refused:
        return hl.CheckResult(
            "champion_files",
            hl.Status.CRITICAL,
            f"{len(refused)} champion file(s) refused (the next load falls back to the previous "
            f"verified champion): " + "; ".join(refused[:3]),
            float(len(refused)),
        )
    unchanged = len(champions) - read
    return hl.CheckResult(
        "champion_files",
        hl.Status.HEALTHY,
        f"{len(champions)} champion file(s) verified"
        + (f" ({read} read, {unchanged} unchanged since verified)" if unchanged else ""),
        0,
    )


def heartbeats(instance: dg.DagsterInstance) -> tuple[dict[str, float], list[str]]:
    beats = {k: float(v.timestamp) for k, v in instance.get_daemon_heartbeats().items()}
    return beats, list(instance.get_required_daemon_types())


def disk_checks(mount_points: Sequence[str], ps=None) -> list[hl.CheckResult]:
    if ps is None:
        import psutil as ps
    out = []
    for mount in mount_points:
        try:
            usage = ps.disk_usage(mount)
            out.append(hl.disk_check(mount, float(usage.percent), float(usage.free)))
        except OSError:
            out.append(hl.disk_check(mount, None, None))
    return out


def source_results(settings: AlphaPulseSettings, timeout: float) -> dict[str, str | None]:
    results: dict[str, str | None] = {}
    for name in settings.sources:
        results[name] = _with_timeout(lambda n=name: build_source(n, settings).check_reachable(), timeout)
    return results


def _partitions(cadence: str):
    return partitions_for(cadence)


def expected_partition(
    cadence: str, now: float, settings: AlphaPulseSettings, msettings: MonitoringSettings
) -> str | None:
    """The newest partition whose run should have finished by ``now``."""
    cfg = getattr(settings, cadence)
    grace = hl.freshness_grace(cfg.cron, cfg.budget_seconds, msettings.freshness_slack_seconds)
    with dg.partition_loading_context(effective_dt=datetime.fromtimestamp(now - grace, tz=timezone.utc)):
        return _partitions(cadence).get_last_partition_key()


def freshness(
    instance: dg.DagsterInstance, cadence: str, now: float, settings: AlphaPulseSettings, msettings: MonitoringSettings
) -> hl.CheckResult:
    expected = expected_partition(cadence, now, settings, msettings)
    if expected is None:
        return hl.freshness_check(cadence, None, {})
    pdef = _partitions(cadence)
    with dg.partition_loading_context(effective_dt=datetime.fromtimestamp(now, tz=timezone.utc)):
        keys = pdef.get_partition_keys()
    index = {k: i for i, k in enumerate(keys)}
    target = index[expected]
    # The active symbols (a retired one is not stale); on an instance not seeded yet, the seed it will train.
    symbols = active_symbols(instance) or list(settings.symbols)
    newest = newest_model_partitions(instance, cadence, symbols, index, target)
    behind = {s: None if n is None else max(0, target - n) for s, n in newest.items()}
    return hl.freshness_check(cadence, expected, behind)


def newest_model_partitions(
    instance: dg.DagsterInstance, cadence: str, symbols: Sequence[str], index: dict[str, int], target: int
) -> dict[str, int | None]:
    """Per symbol, the index (in ``index``) of the newest time partition of ``models/<cadence>`` materialized for
    it: None when none was. One query for every symbol and the whole grid: the asset's materialized (time, symbol)
    partitions (``target`` is kept for callers that stop looking once it is reached)."""
    newest: dict[str, int | None] = dict.fromkeys(symbols)
    for key in instance.get_materialized_partitions(dg.AssetKey(["models", cadence])):
        times, owners = split_keys([key])
        i, symbol = index.get(times[0]), owners[0]
        if i is not None and symbol in newest and (newest[symbol] is None or i > newest[symbol]):
            newest[symbol] = i
    return newest


def breaker_states(url: str) -> dict[str, dict]:
    out = {}
    for name, state in BreakerStore(url).all().items():
        out[name] = {
            "state": state.state.value,
            "since": state.since,
            "reason": state.forced_reason or state.reason,
            "consecutive_failures": state.consecutive_failures,
            "retry_at": state.retry_at,
        }
    return out


def resource_series(url: str, now: float, msettings: MonitoringSettings) -> tuple[dict, float]:
    """[(at, value)] per rule metric from the stored samples long enough to judge them; and the gap
    between samples beyond which they say nothing (three sampling intervals)."""

    max_gap = 3.0 * msettings.metrics_interval_seconds
    reach = max(DEFAULT_RULES[m].for_seconds for m in hl.RESOURCE_METRICS) + max_gap
    samples = SampleStore(url).since(now - reach)
    return {m: [(s.at, getattr(s, m)) for s in samples] for m in hl.RESOURCE_METRICS}, max_gap


def open_alerts(url: str) -> list[dict]:
    return [
        {
            "key": a.key,
            "severity": a.severity.value,
            "title": a.title,
            "source": a.source,
            "first_at": a.first_at,
            "last_at": a.last_at,
            "inhibited": a.inhibited,
        }
        for a in AlertStore(url).open_alerts()
    ]


def collect_health(
    instance: dg.DagsterInstance,
    *,
    now: float | None = None,
    code_location: tuple[bool, str] = (True, "loaded"),
    settings: AlphaPulseSettings | None = None,
    msettings: MonitoringSettings | None = None,
    db_url: str | None = None,
    check_sources: bool = True,
) -> tuple[hl.HealthReport, dict]:
    """Run every health probe; returns the report and the raw facts (breakers, alerts) it was built on."""
    now = time.time() if now is None else now
    settings = settings or get_settings()
    msettings = msettings or get_settings().monitoring
    url = db_url or platform_db_url()
    checks = [storage_check(instance), platform_db_check(url)]
    if checks[-1].status == hl.Status.HEALTHY:
        try:
            checks.append(champion_files_check(url))
        except Exception as exc:  # noqa: BLE001
            checks.append(
                hl.CheckResult(
                    "champion_files",
                    hl.Status.WARNING,
                    f"cannot verify champion files: {type(exc).__name__}: {exc}"[:300],
                )
            )
    try:
        beats, required = heartbeats(instance)
        checks.append(hl.heartbeat_check(beats, required, now, msettings.heartbeat_max_age_seconds))
    except Exception as exc:  # noqa: BLE001
        checks.append(probe_failure("daemon", "cannot read heartbeats", exc, hl.Status.CRITICAL))
    checks += disk_checks(msettings.mount_points)
    try:
        series, max_gap = resource_series(url, now, msettings)
        checks.append(hl.resources_check(series, now, max_gap))
    except Exception as exc:  # noqa: BLE001
        checks.append(probe_failure("resources", "cannot read resource samples", exc, detail=False))
    if check_sources:
        checks.append(hl.sources_check(source_results(settings, msettings.source_check_timeout_seconds)))
    for cadence in CADENCE_NAMES:
        try:
            checks.append(freshness(instance, cadence, now, settings, msettings))
        except Exception as exc:  # noqa: BLE001
            checks.append(probe_failure(f"freshness {cadence}", "cannot judge freshness", exc))
    ok, text = code_location
    checks.append(hl.CheckResult("code_location", hl.Status.HEALTHY if ok else hl.Status.CRITICAL, text))
    facts: dict = {"breakers": {}, "open_alerts": []}
    try:
        facts["breakers"] = breaker_states(url)
        checks.append(
            hl.breakers_check(
                {n: b["state"] for n, b in facts["breakers"].items()},
                {n: b["reason"] for n, b in facts["breakers"].items()},
            )
        )
    except Exception as exc:  # noqa: BLE001
        checks.append(probe_failure("breakers", "cannot read breakers", exc, detail=False))
    try:
        facts["open_alerts"] = open_alerts(url)
        checks.append(
            hl.alerts_check(
                {
                    a["key"]: a["severity"]
                    for a in facts["open_alerts"]
                    if not a["key"].startswith(JUDGED_ELSEWHERE_PREFIXES) and not a["inhibited"]
                }
            )
        )
    except Exception as exc:  # noqa: BLE001
        checks.append(probe_failure("alerts", "cannot read open alerts", exc, detail=False))
    return hl.overall(checks, now), facts


def health_alert_key(check_name: str) -> str:
    return "health:" + check_name.replace(" ", ":")


def alerted(check: hl.CheckResult) -> bool:
    return not check.name.startswith(NOT_ALERTED_PREFIXES)


# -- runs, steps, checks ---------------------------------------------------------------------------------


def step_failures(instance: dg.DagsterInstance, run_id: str) -> list[FailureRecord]:
    """The run's failed steps, as the platform's classifier reads them."""
    return [
        step_failure_record(entry.dagster_event)
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
    ]


_STATUS = {
    dg.DagsterRunStatus.SUCCESS: "success",
    dg.DagsterRunStatus.FAILURE: "failure",
    dg.DagsterRunStatus.CANCELED: "canceled",
}
_MODEL_EVENTS = {DagsterEventType.ASSET_MATERIALIZATION_PLANNED, DagsterEventType.ASSET_MATERIALIZATION}


def _model_symbols(instance: dg.DagsterInstance, run_id: str, cadence: str) -> tuple[frozenset[str], frozenset[str]]:
    """(planned, trained): symbols whose ``models/<cadence>`` partitions the run planned / materialized."""
    planned, trained = set(), set()
    model_asset = dg.AssetKey(["models", cadence])
    for record in instance.get_records_for_run(run_id, of_type=_MODEL_EVENTS, limit=100_000).records:
        event = record.event_log_entry.dagster_event
        if event is None or event.asset_key != model_asset:
            continue
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            partition = event.event_specific_data.materialization.partition
            trained.update(split_keys([partition])[1] if partition else ())
            continue
        data = event.event_specific_data  # a run over a range plans its partitions as one subset
        subset = getattr(data, "partitions_subset", None)
        keys = list(subset.get_partition_keys()) if subset is not None else [data.partition] if data.partition else []
        planned.update(split_keys(keys)[1])
    return frozenset(planned), frozenset(trained)


def cadence_runs(instance: dg.DagsterInstance, cadence: str, start: float, end: float) -> list[RunRecord]:
    """Finished runs of the cadence's job created in [start, end), with their steps and per-symbol models."""
    records = instance.get_run_records(
        dg.RunsFilter(
            job_name=cadence_job_name(cadence),
            created_after=datetime.fromtimestamp(start, tz=timezone.utc),
            created_before=datetime.fromtimestamp(end, tz=timezone.utc),
        )
    )
    out = []
    for rec in records:
        run = rec.dagster_run
        status = _STATUS.get(run.status, run.status.value.lower())
        error_class = None
        if run.status == dg.DagsterRunStatus.FAILURE:
            failed = classify_run(step_failures(instance, run.run_id), run.tags.get("dagster/failure_reason", ""))
            error_class = failed.error_class.value
        steps = tuple(
            StepRecord(
                step_key=s.step_key,
                status=(s.status.value.lower() if s.status else "in_progress"),
                start=s.start_time,
                end=s.end_time,
                attempts=int(s.attempts or 1),
            )
            for s in instance.get_run_step_stats(run.run_id)
        )
        planned, trained = _model_symbols(instance, run.run_id, cadence)
        is_retry = int(run.tags.get("dagster/retry_number", "0") or 0) > 0
        out.append(
            RunRecord(
                run.run_id,
                cadence,
                status,
                rec.start_time,
                rec.end_time,
                is_retry=is_retry,
                steps=steps,
                planned=planned,
                trained=trained,
                error_class=error_class,
            )
        )
    return out


def decisions(url: str, start: float, end: float) -> list[DecisionRecord]:
    lo, hi = datetime.fromtimestamp(start, tz=timezone.utc), datetime.fromtimestamp(end, tz=timezone.utc)
    return [
        DecisionRecord(d.cadence, d.symbol, d.action, d.at.timestamp())
        for d in ModelRegistryResource(db_url=url).get().decisions_between(lo, hi)
    ]


def breaker_trips(url: str, start: float, end: float) -> list[TripRecord]:
    events = BreakerStore(url).events(since=start, limit=100_000)
    return [
        TripRecord(e.name, e.at, e.reason) for e in events if e.at < end and e.to_state == "open"
    ]  # tripped by failures; a forced open is an operator's act


def last_runs(instance: dg.DagsterInstance) -> dict[str, dict | None]:
    out: dict[str, dict | None] = {}
    for cadence in CADENCE_NAMES:
        recs = instance.get_run_records(dg.RunsFilter(job_name=cadence_job_name(cadence)), limit=1)
        if not recs:
            out[cadence] = None
            continue
        rec = recs[0]
        run = rec.dagster_run
        out[cadence] = {
            "run_id": run.run_id,
            "status": run.status.value.lower(),
            "partition": run.tags.get("dagster/partition"),
            "start": rec.start_time,
            "end": rec.end_time,
            "duration_seconds": (rec.end_time - rec.start_time) if rec.start_time and rec.end_time else None,
        }
    return out


def latest_check_executions(instance: dg.DagsterInstance, check_keys) -> dict:
    """The newest *completed* evaluation of each check that has one: {check_key: facts}."""
    if not check_keys:
        return {}
    # One query for all keys: the instance's get_latest_asset_check_evaluation_record asks per key, 142 ms
    # for the 29 checks against 2 ms here (SQLite, empty instance), on every tick of the monitoring sensor.
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(check_keys))
    out = {}
    for key, rec in latest.items():
        verdict = _verdict(rec)
        if verdict is not None:  # planned or still running: handled when it completes
            out[key] = verdict
    return out


def _verdict(rec) -> dict | None:
    """A completed check record as a verdict, or None while it is planned or running (Dagster's statuses:
    PLANNED, SUCCEEDED, FAILED)."""
    if rec.status.value not in ("SUCCEEDED", "FAILED") or rec.event is None:
        return None
    ev = rec.event.dagster_event.event_specific_data
    return {
        "id": rec.id,
        "status": rec.status.value,
        "passed": rec.status.value == "SUCCEEDED",
        "severity": ev.severity.value,
        "description": ev.description or "",
        "at": rec.event.timestamp,
        "run_id": rec.run_id,
        "partition": rec.partition,
    }


def check_executions_since(instance: dg.DagsterInstance, check_key, after_id: int, limit: int = 100_000) -> list[dict]:
    """Completed evaluations of one check with a record id above ``after_id``, newest first, with their partition:
    each symbol of a symbol-partitioned check has its own verdict among them."""
    records = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=limit)
    out = []
    for rec in records:
        if rec.id <= after_id:
            break
        verdict = _verdict(rec)
        if verdict is not None:
            out.append(verdict)
    return out


def symbol_of_partition(partition: str | None) -> str | None:
    """The symbol of a (time, symbol) or symbol partition key; None for a time-only key."""
    if not partition:
        return None
    if "|" in partition:
        return split_keys([partition])[1][0]
    return None if partition[:1].isdigit() else partition


def latest_check_failures(instance: dg.DagsterInstance, check_keys) -> list[dict]:
    """Checks whose newest evaluation failed."""
    return [
        {"asset": k.asset_key.to_user_string(), "check": k.name, **v}
        for k, v in sorted(
            latest_check_executions(instance, check_keys).items(),
            key=lambda kv: (kv[0].asset_key.to_user_string(), kv[0].name),
        )
        if not v["passed"]
    ]


def day_window(partition_key: str, tz: str = "UTC") -> tuple[float, float]:
    from zoneinfo import ZoneInfo

    start = datetime.fromisoformat(partition_key).replace(tzinfo=ZoneInfo(tz))
    return start.timestamp(), (start + timedelta(days=1)).timestamp()
