"""The one place where the platform's Dagster definitions are assembled."""

from __future__ import annotations

import warnings

import dagster as dg

# backfill_policy is marked beta; the platform relies on it knowingly (one run per range, not per day).
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from alphapulse_assets.market_data.assets import DAILY, candle_assets
from alphapulse_assets.market_data.resources import MarketDataResource, PartitionedParquetIOManager

ingest_market_data_job = dg.define_asset_job(
    "ingest_market_data",
    selection=dg.AssetSelection.groups("market_data"),
    partitions_def=DAILY,
    description="Fetch, validate and resample candles for every configured symbol over the selected days.",
)

defs = dg.Definitions(
    assets=[*candle_assets],
    jobs=[ingest_market_data_job],
    resources={
        "market_data": MarketDataResource(),
        "candle_io_manager": PartitionedParquetIOManager(),
    },
    # Steps are small: spawning a process per step (about 2 s here) would cost more than the work.
    executor=dg.in_process_executor,
)
