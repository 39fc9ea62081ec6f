"""Cadence jobs and schedules: nightly 02:00, weekly Sunday 03:00, monthly on the 1st at 03:00 (UTC default).

The crons run in ``ALPHAPULSE_TIMEZONE`` (an IANA name, UTC by default); partitions are always UTC days, weeks
and months. Each schedule asks for the newest partition that was complete ``INGESTION_LAG`` before its tick:
a UTC day's candles are ingested at 01:30 UTC, and a tick in another time zone may come before that. When the daemon was down over one or
more scheduled times, it evaluates only the newest of them when it returns, so a cadence catches up once
rather than once per missed tick: a missed nightly run is superseded by the next night's anyway.
"""

from datetime import timedelta

import dagster as dg

from alphapulse_assets.recovery.config import SCHEDULE_DEPENDENCIES, load_recovery_config
from alphapulse_assets.recovery.gating import gate_schedule
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training.assets import CADENCES, cadence_assets, partitions_for

SETTINGS = get_settings()
# The ingestion schedule runs at 01:30 UTC; with 30 minutes for it to finish, a UTC day is usable from 02:00 UTC.
INGESTION_LAG = timedelta(hours=2)


def cadence_job(name: str):
    return dg.define_asset_job(
        f"{name}_cadence",
        selection=dg.AssetSelection.assets(*cadence_assets[name]),
        partitions_def=partitions_for(name),
        tags={"alphapulse/cadence": name},
        description=f"The {name} retraining cadence: training set, challengers, gate, champions, for every symbol.",
    )


JOBS = {name: cadence_job(name) for name in CADENCES}


def latest_partition_key(name: str, now) -> str | None:
    """The newest partition whose window has ended at ``now``."""
    with dg.partition_loading_context(effective_dt=now):
        return partitions_for(name).get_last_partition_key()


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
        request = dg.RunRequest(run_key=f"{name}:{key}", partition_key=key, tags={"alphapulse/trigger": "schedule"})
        # The circuit breakers decide: the request, the request as a probe, or a skip with the reason.
        deps = SCHEDULE_DEPENDENCIES.get(f"{name}_schedule", ("training",))
        return gate_schedule(deps, request, heavy=name in load_recovery_config().heavy_cadences)

    return _schedule


SCHEDULES = [cadence_schedule(name) for name in CADENCES]
