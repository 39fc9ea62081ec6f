"""Monitoring in Dagster: resource metrics, health, failed-check and run-failure alerts, the daily report.

- ``resource_metrics_sensor`` (30 s): samples the host without blocking, stores the sample (pruned to 24 h),
  evaluates the threshold rules (their state rides in the cursor) and observes ``platform/host_resources``
  with numeric metadata, which the UI plots.
- ``health_check_sensor`` (60 s): storage, daemon heartbeats, disk, sources, cadence freshness, code
  location; observes ``platform/health`` and raises/resolves ``health:<check>`` alerts.
- ``check_failure_alert_sensor`` (30 s): reads asset check evaluations after its cursor (an event storage
  id); a failed check raises ``check:<asset>:<check>``, its next success resolves it.
- ``run_failure_alert_sensor`` / ``run_success_resolve_sensor``: a failed run raises ``run:<job>`` with the
  classified error; the job's next successful run resolves it.
- ``pipeline_report`` asset (daily partitions): the pipeline performance report, as tables and numeric
  metadata in the UI and as JSON on disk.

Every alert goes through the one ``AlertRouter`` (``build_router_from_env``), which de-duplicates, groups
(flushed at the end of each tick), inhibits and records history in the platform database.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import dagster as dg

from alphapulse_assets.alerting.alert_store import AlertStore
from alphapulse_assets.alerting.alerts import Alert, AlertRouter, build_router_from_env
from alphapulse_assets.atomic_files import atomic_write
from alphapulse_assets.market_data.symbols import active_symbols
from alphapulse_assets.monitoring import readers
from alphapulse_assets.monitoring.health import Status
from alphapulse_assets.monitoring.metrics import Counters, ResourceSampler, SampleStore
from alphapulse_assets.monitoring.report import build_report, render_markdown, report_alerts
from alphapulse_assets.monitoring.thresholds import DEFAULT_RULES, RuleState, evaluate
from alphapulse_assets.platform_db import platform_db_url
from alphapulse_assets.recovery.errors import Severity, classify_run
from alphapulse_assets.settings import get_settings, load_settings
from alphapulse_assets.training.promotion import GATE_CHECK

HOST_RESOURCES = dg.AssetKey(["platform", "host_resources"])
HEALTH = dg.AssetKey(["platform", "health"])
PIPELINE_REPORT = dg.AssetKey(["platform", "pipeline_report"])

SETTINGS = get_settings()
MSETTINGS = SETTINGS.monitoring

host_resources = dg.AssetSpec(
    HOST_RESOURCES,
    group_name="platform",
    kinds={"python"},
    description="Host CPU, memory, disk, network, load and Dagster process memory, observed every "
    f"{MSETTINGS.metrics_interval_seconds} s by resource_metrics_sensor (see the Plots tab).",
)
platform_health = dg.AssetSpec(
    HEALTH,
    group_name="platform",
    kinds={"python"},
    description="Overall platform health (healthy / warning / critical) with reasons, observed every "
    f"{MSETTINGS.health_interval_seconds} s by health_check_sensor.",
)

RouterFactory = Callable[[], AlertRouter]


def default_router() -> AlertRouter:
    return build_router_from_env(platform_db_url())


class _LazyRouter:
    """Builds the router only when a tick has something to say (most ticks do not)."""

    def __init__(self, factory: RouterFactory):
        self.factory, self.router = factory, None

    def get(self) -> AlertRouter:
        if self.router is None:
            self.router = self.factory()
        return self.router

    def flush(self) -> list:
        return self.router.flush() if self.router is not None else []


def _load_cursor(raw: str | None) -> dict:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}  # a damaged cursor restarts the rules rather than failing every tick
    return data if isinstance(data, dict) else {}


def _float_metadata(values: dict[str, float]) -> dict[str, dg.MetadataValue]:
    return {k: dg.MetadataValue.float(round(float(v), 4)) for k, v in values.items()}


# -- resource metrics ---------------------------------------------------------------------------------------


def resource_rule_values(sample) -> dict[str, float | None]:
    """Rule state key -> value: CPU, memory, and disk per mount point (``disk_percent:<mount>``)."""
    values = {"cpu_percent": sample.cpu_percent, "memory_percent": sample.memory_percent}
    values.update({f"disk_percent:{m}": p for m, p in sample.disk_percent.items()})
    return values


def build_resource_metrics_sensor(
    name: str = "resource_metrics_sensor",
    *,
    sampler_factory: Callable[[], ResourceSampler] | None = None,
    router_factory: RouterFactory = default_router,
    interval_seconds: int | None = None,
    retention_hours: float | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """The resource sensor; tests inject a sampler that replays a breach."""

    @dg.sensor(
        name=name,
        minimum_interval_seconds=interval_seconds or MSETTINGS.metrics_interval_seconds,
        default_status=default_status,
        description="Samples host resources, stores them, applies the CPU/memory/disk threshold rules and "
        "observes platform/host_resources.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        ms = get_settings().monitoring
        state = _load_cursor(context.cursor)
        sampler = (
            sampler_factory()
            if sampler_factory
            else ResourceSampler(ms.mount_points, ms.process_match, instance_home=context.instance.root_directory)
        )
        sample, counters = sampler.sample(Counters.from_dict(state.get("counters")))
        store = SampleStore(platform_db_url())
        store.add(sample)
        store.prune(sample.at - 3600.0 * (retention_hours or ms.retention_hours))

        rules = dict(state.get("rules") or {})
        router = _LazyRouter(router_factory)
        fired = []
        for rule_key, value in resource_rule_values(sample).items():
            rule = DEFAULT_RULES[rule_key.split(":", 1)[0]]
            new_state, events = evaluate(rule, RuleState.from_dict(rules.get(rule_key)), value, sample.at)
            rules[rule_key] = new_state.to_dict()
            for event in events:
                alert_key = f"resource:{rule_key}"
                fired.append(f"{alert_key} {event.status} {event.level.name.lower()}")
                if event.status == "firing":
                    router.get().raise_alert(
                        Alert.from_event(
                            event,
                            key=alert_key,
                            source=name,
                            labels={"host": sample.host, "group": "resources", "metric": rule_key},
                            body=f"{rule_key} = {event.value:.1f} on {sample.host} (threshold {event.threshold:g}); "
                            f"see docs/runbook.md#resource-alerts",
                        )
                    )
                else:
                    router.get().resolve(alert_key, at=event.at)
        router.flush()
        if fired:
            context.log.info("resource alerts: " + "; ".join(fired))
        metadata = {**_float_metadata(sample.metrics()), "host": dg.MetadataValue.text(sample.host)}
        return dg.SensorResult(
            asset_events=[dg.AssetObservation(asset_key=HOST_RESOURCES, metadata=metadata)],
            cursor=json.dumps({"counters": counters.to_dict(), "rules": rules}, sort_keys=True),
        )

    return _sensor


# -- health ---------------------------------------------------------------------------------------------


def _repeat_seconds() -> float:
    return load_settings().alerts.repeat_seconds


def build_health_check_sensor(
    name: str = "health_check_sensor",
    *,
    router_factory: RouterFactory = default_router,
    clock: Callable[[], float] = time.time,
    check_sources: bool = True,
    interval_seconds: int | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        minimum_interval_seconds=interval_seconds or MSETTINGS.health_interval_seconds,
        default_status=default_status,
        description="Checks storage, daemon heartbeats, disk, sources, cadence freshness and the code location; "
        "observes platform/health and alerts on what is not healthy.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        now = clock()
        location = context.repository_name or "definitions"
        report, facts = readers.collect_health(
            context.instance,
            now=now,
            code_location=(True, f"{location} loaded (this sensor runs in it)"),
            check_sources=check_sources,
        )
        open_by_key = {a["key"]: a for a in facts["open_alerts"]}
        router = _LazyRouter(router_factory)
        repeat = _repeat_seconds()
        for check in report.checks:
            if not readers.alerted(check):
                continue
            key = readers.health_alert_key(check.name)
            current = open_by_key.get(key)
            if check.status is Status.HEALTHY:
                if current is not None:
                    router.get().resolve(key, at=now)
                continue
            severity = check.status.severity
            # Raise on a change or when the repeat interval is due; not every minute (history stays small).
            if current is None or current["severity"] != severity.value or now - current["last_at"] >= repeat:
                router.get().raise_alert(
                    Alert(
                        key=key,
                        severity=severity,
                        title=f"health {check.name}: {check.reason}"[:300],
                        body=f"{check.name} is {check.status.label}: {check.reason}\nSee docs/runbook.md#health-alerts",
                        source=name,
                        labels={"group": "health", "check": check.name},
                        at=now,
                    )
                )
        router.flush()
        rows = "\n".join(f"| {c.name} | {c.status.label} | {c.reason.replace('|', '/')} |" for c in report.checks)
        metadata = {
            "status": dg.MetadataValue.text(report.status.label),
            "status_level": dg.MetadataValue.int(int(report.status)),
            "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in report.reasons) or "all checks healthy"),
            "checks": dg.MetadataValue.md("| check | status | detail |\n|---|---|---|\n" + rows),
            "not_healthy": dg.MetadataValue.int(sum(c.status is not Status.HEALTHY for c in report.checks)),
        }
        return dg.SensorResult(asset_events=[dg.AssetObservation(asset_key=HEALTH, metadata=metadata)])

    return _sensor


# -- failed asset checks ----------------------------------------------------------------------------------

GATE_ASSET_PREFIX = "models/"


def check_alert_severity(asset: str, check_name: str, check_severity: str) -> Severity:
    """A promotion gate rejecting a challenger is news, not a fault (the champion keeps serving): info.
    Other checks: their own severity (WARN -> warning, ERROR -> error)."""
    if asset.startswith(GATE_ASSET_PREFIX) and check_name == GATE_CHECK:
        return Severity.INFO
    return Severity.WARNING if check_severity.upper() == "WARN" else Severity.ERROR


def build_check_failure_alert_sensor(
    name: str = "check_failure_alert_sensor",
    *,
    router_factory: RouterFactory = default_router,
    interval_seconds: int | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """Alerts on failed asset checks, which run-failure sensors never see (a failed check does not fail
    its run unless it blocks).

    It reads the newest execution of every check in the code location in one query on the instance's
    check-execution table, whose ids are global on every storage (the SQLite event log is sharded per
    run, so event storage ids are not). The cursor maps each check to the (id, status) it last handled, so
    a check is handled once per new evaluation, and a planned execution once it completes.
    """

    @dg.sensor(
        name=name,
        minimum_interval_seconds=interval_seconds or MSETTINGS.check_alert_interval_seconds,
        default_status=default_status,
        description="Raises an alert for every failed asset check and resolves it when the check passes again.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        seen = _load_cursor(context.cursor)
        check_keys = list(context.repository_def.asset_graph.asset_check_keys) if context.repository_def else []
        latest = readers.latest_check_executions(context.instance, check_keys)
        router = _LazyRouter(router_factory)
        handled = 0
        for check_key, rec in latest.items():
            cursor_key = f"{check_key.asset_key.to_user_string()}:{check_key.name}"
            mark = [rec["id"], rec["status"]]
            previous = seen.get(cursor_key)
            if previous == mark:
                continue
            seen[cursor_key] = mark
            handled += 1
            for subject, verdict in _verdicts_to_handle(context.instance, check_key, rec, previous):
                _route_check_verdict(router, name, check_key, cursor_key, subject, verdict)
        router.flush()
        if not handled:
            return dg.SkipReason("no new check evaluations")
        return dg.SensorResult(cursor=json.dumps(seen, sort_keys=True))

    return _sensor


def _verdicts_to_handle(instance, check_key, latest: dict, previous) -> list[tuple[str | None, dict]]:
    """(symbol or None, verdict): the newest verdict per symbol since the last tick for a check on a
    symbol-partitioned asset (one alert per symbol), else the check's newest verdict."""
    if readers.symbol_of_partition(latest["partition"]) is None:
        return [(None, latest)]
    newest: dict[str, dict] = {}
    for rec in readers.check_executions_since(instance, check_key, previous[0] - 1 if previous else 0):
        newest.setdefault(readers.symbol_of_partition(rec["partition"]) or "", rec)
    return list(newest.items()) or [(readers.symbol_of_partition(latest["partition"]), latest)]


def _route_check_verdict(router, name: str, check_key, cursor_key: str, subject: str | None, rec: dict) -> None:
    key = f"check:{cursor_key}" + (f":{subject}" if subject else "")
    if rec["passed"]:
        router.get().resolve(key, at=rec["at"])
        return
    asset = check_key.asset_key.to_user_string()
    where = asset + (f" partition {rec['partition']}" if rec["partition"] else "")
    router.get().raise_alert(
        Alert(
            key=key,
            severity=check_alert_severity(asset, check_key.name, rec["severity"]),
            title=f"check {check_key.name} failed on {where}",
            body=(rec["description"] or "no description") + f"\nrun {rec['run_id']}"
            "\nSee docs/runbook.md#failed-asset-checks",
            source=name,
            labels={"group": "checks", "asset": asset, "check": check_key.name, "symbol": subject or ""},
            at=rec["at"],
        )
    )


# -- runs -----------------------------------------------------------------------------------------------


#: Set on a run once its failure alert was raised (by the CLI that ran it, or by the sensor): never twice.
ALERTED_TAG = "alphapulse/alerted"


def run_alert_key(job_name: str) -> str:
    return f"run:{job_name}"


def run_failure_alert(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    router: AlertRouter,
    by: str = "run_failure_alert_sensor",
    limit: int = 5,
) -> str:
    """Raise the job's run alert, once per run, classified by the platform's one classifier; returns what it
    did.

    Once per run even when the CLI that ran it and the daemon's sensor look at the same moment: the claim is
    one INSERT in the platform database, taken before raising. The run tag only shows the operator who raised
    it (and spares a database round trip to a caller that already sees it)."""
    if run.tags.get(ALERTED_TAG):
        return f"already alerted by {run.tags[ALERTED_TAG]}"
    holder = router.store.claim_run(run.run_id, by, time.time())
    if holder is not None:
        return f"already alerted by {holder}"
    instance.add_run_tags(run.run_id, {ALERTED_TAG: by})
    failures = readers.step_failures(instance, run.run_id)
    c = classify_run(failures, run.tags.get("dagster/failure_reason", ""))
    key = run_alert_key(run.job_name)
    partition = run.tags.get("dagster/partition")
    title = f"run of {run.job_name}{' (' + partition + ')' if partition else ''} failed: {c.error_class.value} error"
    lines = [f"- {f.step_key}: {f.describe()}" for f in failures[:limit]]
    if len(failures) > limit:
        lines.append(f"- ... and {len(failures) - limit} more failed steps")
    body = (
        "\n".join(lines) or _no_step_failure(instance, run)
    ) + f"\nrun {run.run_id}\nSee docs/runbook.md#run-failures"
    router.raise_alert(
        Alert(
            key=key,
            severity=c.severity,
            title=title,
            body=body,
            source=by,
            labels={"job": run.job_name, "run_id": run.run_id, "error_class": c.error_class.value},
        )
    )
    router.flush()
    # The job may already have succeeded again: a killed run is only found dead (and alerted) after the next run
    # started, and that success's resolve came before this alert existed. The failure stays in the history,
    # but an alert the job has already recovered from must not stay open.
    recovered = _later_success(instance, run)
    if recovered is not None:
        router.resolve(key)
        router.flush()
        return f"raised {key} ({c.severity.value}) and resolved it: run {recovered} of the job has succeeded since"
    return f"raised {key} ({c.severity.value})"


def _later_success(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """The id of a successful run of the same job created after ``run``, if any."""
    record = instance.get_run_record_by_id(run.run_id)
    if record is None:
        return None
    later = instance.get_run_records(
        dg.RunsFilter(
            job_name=run.job_name, statuses=[dg.DagsterRunStatus.SUCCESS], created_after=record.create_timestamp
        ),
        limit=1,
    )
    return later[0].dagster_run.run_id if later else None


def _no_step_failure(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """The run's own failure message (e.g. "worker process 123 on host died") when no step failed."""
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE, limit=1, ascending=False
    ).records
    message = records[0].event_log_entry.message if records else ""
    return message or "the run failed without a step failure (worker crashed or run stopped)"


def resolve_run_alert(job_name: str, router_factory: RouterFactory = default_router) -> bool:
    """A job's success resolves its open run-failure alert; True when there was one."""
    key = run_alert_key(job_name)
    if AlertStore(platform_db_url()).open_alert(key) is None:
        return False
    router = router_factory()
    router.resolve(key)
    router.flush()
    return True


def alert_run_outcome(
    instance: dg.DagsterInstance, run: dg.DagsterRun | None, router_factory: RouterFactory = default_router
) -> str:
    """What the run-status sensors do for one finished run, for a process that ran it itself (the CLI), so that
    a cron user without the daemon is alerted too; the sensors then find the run handled."""
    if run is None:
        return "run not found"
    if run.status == dg.DagsterRunStatus.FAILURE:
        return run_failure_alert(instance, run, router_factory(), by=f"alphapulse cli (pid {os.getpid()})")
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return "resolved" if resolve_run_alert(run.job_name, router_factory) else "nothing open"
    return f"{run.status.value}: no alert"


def build_run_failure_sensors(
    router_factory: RouterFactory = default_router,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> list[dg.SensorDefinition]:
    """Both sensors watch every run of the instance (``monitor_all_code_locations``), not only runs launched
    from this code location: runs executed in-process (``alphapulse run`` / ``ingest``) have no code-location
    origin and would be skipped."""

    @dg.run_failure_sensor(
        name="run_failure_alert_sensor",
        minimum_interval_seconds=MSETTINGS.run_status_interval_seconds,
        default_status=default_status,
        monitor_all_code_locations=True,
        description="Alerts once on every failed run of the instance (schedule, sensor, UI, CLI, "
        "backfill) with its classified error.",
    )
    def run_failure_alert_sensor(context: dg.RunFailureSensorContext):
        context.log.info(run_failure_alert(context.instance, context.dagster_run, router_factory()))

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="run_success_resolve_sensor",
        minimum_interval_seconds=MSETTINGS.run_status_interval_seconds,
        default_status=default_status,
        monitor_all_code_locations=True,
        description="Resolves a job's run-failure alert when the job succeeds again.",
    )
    def run_success_resolve_sensor(context: dg.RunStatusSensorContext):
        resolve_run_alert(context.dagster_run.job_name, router_factory)

    return [run_failure_alert_sensor, run_success_resolve_sensor]


# -- daily pipeline report --------------------------------------------------------------------------------

# end_offset=1: today's partition exists too, so an operator can build "today so far"; the schedule
# builds yesterday's.
REPORT_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=SETTINGS.start_date.isoformat(), timezone="UTC", end_offset=1
)


def report_dir() -> Path:
    return get_settings().monitoring.report_dir or (get_settings().home / "reports")


def compute_report(
    instance: dg.DagsterInstance,
    partition_key: str,
    start: float,
    end: float,
    *,
    db_url: str | None = None,
    now: float | None = None,
) -> dict:
    url = db_url or platform_db_url()
    runs = [r for c in readers.CADENCE_NAMES for r in readers.cadence_runs(instance, c, start, end)]
    symbols = active_symbols(instance)  # the active symbols now, then any a run of the day trained
    symbols += sorted({s for r in runs for s in r.planned | r.trained if s not in symbols})
    return build_report(
        partition_key,
        (start, end),
        readers.CADENCE_NAMES,
        symbols,
        runs,
        readers.decisions(url, start, end),
        readers.breaker_trips(url, start, end),
        generated_at=time.time() if now is None else now,
    )


@dg.asset(
    key=PIPELINE_REPORT,
    partitions_def=REPORT_PARTITIONS,
    group_name="platform",
    kinds={"json"},
    description="Daily pipeline performance: per cadence and symbol success/failure rate, p50/p95 durations, "
    "retries, breaker trips, promotions and rejections. Also written as JSON for other tools.",
)
def pipeline_report(context) -> dg.MaterializeResult:
    window = context.partition_time_window
    start, end = window.start.timestamp(), window.end.timestamp()
    now = time.time()
    report = compute_report(context.instance, context.partition_key, start, end, now=now)
    path = report_dir() / f"pipeline_report_{context.partition_key}.json"
    atomic_write(
        None,
        True,
        str(path),
        lambda fh: fh.write(json.dumps(report, indent=2, sort_keys=True).encode()),
        what="the daily report",
    )

    alerts = []
    if end >= now - 2 * 86400:  # a backfill of old days reports, but does not page anyone
        router = default_router()
        for key, metric, event in report_alerts(report):
            if event is not None:
                router.raise_alert(
                    Alert.from_event(
                        event,
                        key=key,
                        source="pipeline_report",
                        labels={"group": "report", "metric": metric},
                        body=f"{event.title} on {context.partition_key}. See docs/runbook.md#pipeline-report-alerts",
                    )
                )
                alerts.append(f"{key}: {event.level.name.lower()}")
            else:
                router.resolve(key)
        router.flush()

    tables = render_markdown(report)
    t = report["totals"]
    numeric = {
        "runs": t["runs"],
        "failed_runs": t["failed"],
        "breaker_trips": t["breaker_trips"],
        "promotions": t["promotions"],
        "rejections": t["rejections"],
    }
    for row in report["cadences"]:
        c = row["cadence"]
        numeric[f"{c}_runs"] = row["runs"]
        for field_name in ("success_rate", "failure_rate", "p50_seconds", "p95_seconds"):
            if row[field_name] is not None:
                numeric[f"{c}_{field_name}"] = row[field_name]
        numeric[f"{c}_retries"] = row["step_retries"] + row["run_retries"]
    metadata = {
        **{
            k: (dg.MetadataValue.int(v) if isinstance(v, int) else dg.MetadataValue.float(float(v)))
            for k, v in numeric.items()
        },
        "cadences": dg.MetadataValue.md(tables["cadences"]),
        "symbols": dg.MetadataValue.md(tables["symbols"]),
        "breaker_trips_table": dg.MetadataValue.md(tables["breaker_trips"]),
        "json": dg.MetadataValue.path(str(path)),
        "alerts": dg.MetadataValue.text(", ".join(alerts) or "none"),
    }
    return dg.MaterializeResult(metadata=metadata)


pipeline_report_job = dg.define_asset_job(
    "pipeline_report",
    selection=[PIPELINE_REPORT],
    partitions_def=REPORT_PARTITIONS,
    description="Builds the daily pipeline performance report.",
)


@dg.schedule(
    name="pipeline_report_schedule",
    job=pipeline_report_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,  # reports are per UTC day
    description="Builds yesterday's pipeline report at 00:30.",
)
def pipeline_report_schedule(context: dg.ScheduleEvaluationContext):
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"pipeline_report:{day}", partition_key=day)


resource_metrics_sensor = build_resource_metrics_sensor()
health_check_sensor = build_health_check_sensor()
check_failure_alert_sensor = build_check_failure_alert_sensor()
run_failure_alert_sensor, run_success_resolve_sensor = build_run_failure_sensors()

MONITORING_ASSETS = [host_resources, platform_health, pipeline_report]
MONITORING_JOBS = [pipeline_report_job]
MONITORING_SCHEDULES = [pipeline_report_schedule]
MONITORING_SENSORS = [
    resource_metrics_sensor,
    health_check_sensor,
    check_failure_alert_sensor,
    run_failure_alert_sensor,
    run_success_resolve_sensor,
]
