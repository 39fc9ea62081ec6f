"""The one place where the platform's Dagster definitions are assembled."""

from __future__ import annotations

import dagster as dg

from alphapulse_assets.config_check import check_configuration
from alphapulse_assets.executors import executor_for
from alphapulse_assets.market_data.assets import DAILY, candle_assets
from alphapulse_assets.market_data.resources import CandleStoreResource, MarketDataResource, PartitionedParquetIOManager
from alphapulse_assets.monitoring.sensors import (
    MONITORING_ASSETS,
    MONITORING_JOBS,
    MONITORING_SCHEDULES,
    MONITORING_SENSORS,
)
from alphapulse_assets.recovery.gating import gate_schedule
from alphapulse_assets.recovery.runs import dead_run_sensor
from alphapulse_assets.recovery.sensors import breaker_sensor, breakers_asset
from alphapulse_assets.serving.assets import SignalStoreResource, signals_assets, signals_automation_sensor
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training.assets import ModelRegistryResource, cadence_assets
from alphapulse_assets.training.drift_assets import (
    drift_assets,
    drift_monitoring_job,
    drift_monitoring_schedule,
    drift_retrain_sensor,
)
from alphapulse_assets.training.live_assets import live_scores, live_scoring_job, live_scoring_schedule
from alphapulse_assets.training.schedules import JOBS as CADENCE_JOBS
from alphapulse_assets.training.schedules import SCHEDULES as CADENCE_SCHEDULES

# Every setting is checked here, so a bad one fails `dagster definitions validate`, the web UI's code location
# and the daemon at load, naming the variable, instead of failing runs or sensor ticks later.
check_configuration()

ingest_market_data_job = dg.define_asset_job(
    "ingest_market_data",
    selection=dg.AssetSelection.groups("market_data"),
    partitions_def=DAILY,
    description="Fetch, validate and resample candles for every configured symbol over the selected days.",
)


@dg.schedule(
    name="ingest_market_data_schedule",
    job=ingest_market_data_job,
    cron_schedule="30 1 * * *",
    execution_timezone="UTC",  # a UTC day's candles, once it has ended, whatever ALPHAPULSE_TIMEZONE says
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Ingests yesterday's (UTC) candles at 01:30 UTC, ahead of the nightly cadence at 02:00.",
)
def ingest_market_data_schedule(context: dg.ScheduleEvaluationContext):
    with dg.partition_loading_context(effective_dt=context.scheduled_execution_time):
        key = DAILY.get_last_partition_key()
    request = dg.RunRequest(run_key=f"ingest:{key}", partition_key=key, tags={"alphapulse/trigger": "schedule"})
    return gate_schedule(("market_data",), request)  # skips while the market-data breaker is open


defs = dg.Definitions(
    assets=[
        *candle_assets,
        *(a for assets in cadence_assets.values() for a in assets),
        *drift_assets,
        *signals_assets,
        live_scores,
        breakers_asset,
        *MONITORING_ASSETS,
    ],
    jobs=[ingest_market_data_job, *CADENCE_JOBS.values(), drift_monitoring_job, live_scoring_job, *MONITORING_JOBS],
    schedules=[
        ingest_market_data_schedule,
        *CADENCE_SCHEDULES,
        drift_monitoring_schedule,
        live_scoring_schedule,
        *MONITORING_SCHEDULES,
    ],
    sensors=[drift_retrain_sensor, breaker_sensor, dead_run_sensor, signals_automation_sensor, *MONITORING_SENSORS],
    resources={
        "market_data": MarketDataResource(),
        "candle_io_manager": PartitionedParquetIOManager(),
        "candle_store": CandleStoreResource(),
        # Training sets live in the shared store (ALPHAPULSE_STORE__URL): a later run, maybe on another
        # machine, reads what this one wrote.
        "training_set_io_manager": PartitionedParquetIOManager(
            base_url=get_settings().store_url("training_sets"), layout="keys"
        ),
        "model_registry": ModelRegistryResource(),
        "signal_store": SignalStoreResource(),
    },
    # ALPHAPULSE_EXECUTOR (executors.py): in the run's process by default (steps are small: a process per step,
    # about 2 s here, would cost more than the work); Celery workers or Kubernetes Jobs across machines.
    executor=executor_for(get_settings()),
)
