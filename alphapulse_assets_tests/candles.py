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


def symbol_tags(instance: dg.DagsterInstance, time_key: str, symbols=None, *, last_key: str | None = None) -> dict:
    """The tags of a cadence run over [time_key, last_key] x ``symbols`` (default: the seed), as the schedules and
    the CLI make them; the symbols are added to the instance's dynamic partitions first when missing."""
    from alphapulse_assets.market_data.symbols import SYMBOLS_NAME, range_tags
    from alphapulse_assets.settings import get_settings

    symbols = [s.upper() for s in (symbols or get_settings().symbols)]
    known = set(instance.get_dynamic_partitions(SYMBOLS_NAME))
    missing = [s for s in symbols if s not in known]
    if missing:
        instance.add_dynamic_partitions(SYMBOLS_NAME, missing)
    active = instance.get_dynamic_partitions(SYMBOLS_NAME)
    ordered = [s for s in active if s in symbols]
    if ordered != active[active.index(ordered[0]) : active.index(ordered[0]) + len(ordered)]:
        raise ValueError(f"symbols {symbols} are not a contiguous range of the instance's {active}")
    return range_tags(time_key, last_key or time_key, ordered[0], ordered[-1])
