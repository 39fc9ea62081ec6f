"""Cadence jobs and schedules: nightly 02:00, weekly Sunday 03:00, monthly on the 1st at 03:00 (UTC default).

The crons run in ``ALPHAPULSE_TIMEZONE`` (an IANA name, UTC by default); partitions are always UTC days, weeks
and months. Each schedule asks for the newest partition that was complete ``INGESTION_LAG`` before its tick:
a UTC day's candles are ingested at 01:30 UTC, and a tick in another time zone may come before that. When the daemon was down over one or
more scheduled times, it evaluates only the newest of them when it returns, so a cadence catches up once
rather than once per missed tick: a missed nightly run is superseded by the next night's anyway. A tick asks for a
partition once: when an earlier tick's run of it is going or has succeeded, it skips and names that run.
"""

from datetime import timedelta

import dagster as dg

from alphapulse_assets.market_data.symbols import ensure_seeded, range_tags, symbol_ranges
from alphapulse_assets.recovery.config import SCHEDULE_DEPENDENCIES, load_recovery_config
from alphapulse_assets.recovery.gating import gate_schedule
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training.assets import CADENCES, cadence_assets, cadence_partitions, partitions_for

SETTINGS = get_settings()
# The ingestion schedule runs at 01:30 UTC; with 30 minutes for it to finish, a UTC day is usable from 02:00 UTC.
INGESTION_LAG = timedelta(hours=2)


def cadence_job(name: str):
    return dg.define_asset_job(
        f"{name}_cadence",
        selection=dg.AssetSelection.assets(*cadence_assets[name]),
        partitions_def=cadence_partitions(name),
        tags={"alphapulse/cadence": name},
        description=f"The {name} retraining cadence: training set, challengers, gate, champions, for every symbol.",
    )


JOBS = {name: cadence_job(name) for name in CADENCES}


def latest_partition_key(name: str, now) -> str | None:
    """The newest partition whose window has ended at ``now``."""
    with dg.partition_loading_context(effective_dt=now):
        return partitions_for(name).get_last_partition_key()


def cadence_run_tags(name: str, key: str, symbols: list[str], per_run: int | None = None) -> list[dict[str, str]]:
    """The runs of one cadence partition: its time key x contiguous ranges of the active symbols, one run for all of
    them unless ALPHAPULSE_SCALE__SYMBOLS_PER_RUN says how many per run."""
    per_run = get_settings().scale.symbols_per_run if per_run is None else per_run
    return [range_tags(key, key, first, last) for first, last in symbol_ranges(symbols, per_run)]


#: A scheduled run in one of these asks nothing more of its partition; after a failure or a cancel, a later tick
#: may ask again. A retry Dagster has already made of a failed run counts as going (it carries the run's tags); a
#: tick between the failure and the retry's creation may still ask for the partition once more.
_SETTLED_OR_GOING = [
    s for s in dg.DagsterRunStatus if s not in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
]


def _scheduled_run(instance: dg.DagsterInstance, name: str, request: dg.RunRequest) -> dg.DagsterRun | None:
    """A run an earlier tick of the ``name`` schedule made for the same partition and symbols, still going or
    succeeded (a retry of it included: it carries its tags)."""
    keys = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end", "alphapulse/trigger")
    runs = instance.get_runs(
        dg.RunsFilter(job_name=JOBS[name].name, tags={k: request.tags[k] for k in keys}, statuses=_SETTLED_OR_GOING),
        limit=1,
    )
    return runs[0] if runs else None


def cadence_schedule(name: str) -> dg.ScheduleDefinition:
    settings = getattr(SETTINGS, name)

    @dg.schedule(
        name=f"{name}_schedule",
        job=JOBS[name],
        cron_schedule=settings.cron,
        execution_timezone=SETTINGS.timezone,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Runs the {name} cadence for its newest complete partition ({settings.cron}, {SETTINGS.timezone}).",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        key = latest_partition_key(name, context.scheduled_execution_time - INGESTION_LAG)
        if key is None:
            return dg.SkipReason(f"no complete {name} partition yet")
        symbols = ensure_seeded(context.instance)  # the active symbols now, not those known at import
        if not symbols:
            return dg.SkipReason("no active symbol: add one with `alphapulse symbols add SYMBOL`")
        runs = cadence_run_tags(name, key, symbols)
        deps = SCHEDULE_DEPENDENCIES.get(f"{name}_schedule", ("training",))
        heavy = name in load_recovery_config().heavy_cadences
        requests = [
            dg.RunRequest(
                run_key=f"{name}:{key}" if len(runs) == 1 else f"{name}:{key}:{i + 1}/{len(runs)}",
                tags={**tags, "alphapulse/trigger": "schedule"},
            )
            for i, tags in enumerate(runs)
        ]
        # A run key makes a schedule's run once per tick, not once per partition: a later tick that finds the same
        # newest partition (a cron more frequent than the partitions) would train it again.
        done = {r.run_key: run for r in requests if (run := _scheduled_run(context.instance, name, r)) is not None}
        requests = [r for r in requests if r.run_key not in done]
        if not requests:
            held = ", ".join(f"{run.run_id} ({run.status.value})" for run in done.values())
            return dg.SkipReason(f"{name} partition {key} was already asked for by an earlier tick: run {held}")
        # The circuit breakers decide: the requests, the first as a probe (alone), or a skip with the reason.
        gated = gate_schedule(deps, requests[0], heavy=heavy)
        if isinstance(gated, dg.SkipReason) or gated.tags != requests[0].tags or len(requests) == 1:
            return gated
        return requests

    return _schedule


SCHEDULES = [cadence_schedule(name) for name in CADENCES]
