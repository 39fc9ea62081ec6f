"""Candles for tests that run cadences: ingested through the market-data assets, as `alphapulse ingest` does.

A training set reads only days whose blocking quality checks passed on the instance it runs on, so candles
written straight into a store would be refused ("never checked").
"""

from __future__ import annotations

import dagster as dg

from alphapulse_assets.market_data.assets import candle_assets
from alphapulse_assets.market_data.resources import MarketDataResource, PartitionedParquetIOManager


def ingest(
    instance: dg.DagsterInstance,
    candles_url: str,
    first: str,
    last: str,
    *,
    symbols=None,
    market_data: MarketDataResource | None = None,
    raise_on_error: bool = True,
):
    """The candle assets over the days [first, last] in one run (sample source unless ``market_data`` says)."""
    market_data = market_data or MarketDataResource(
        sources=["sample"], **({"symbols": list(symbols)} if symbols else {})
    )
    return dg.materialize(
        candle_assets,
        instance=instance,
        raise_on_error=raise_on_error,
        resources={"market_data": market_data, "candle_io_manager": PartitionedParquetIOManager(base_url=candles_url)},
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )
