"""Helpers for the breaker sensor / gating tests: a real instance, real runs, a capturing alert channel."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from alphapulse_assets.alerting.alert_store import AlertStore
from alphapulse_assets.alerting.alerts import AlertRouter, Notification
from alphapulse_assets.alerting.channels import Channel
from alphapulse_assets.definitions import defs as platform_defs
from alphapulse_assets.definitions import ingest_market_data_job
from alphapulse_assets.market_data.assets import market_candles
from alphapulse_assets.market_data.resources import MarketDataResource, PartitionedParquetIOManager
from alphapulse_assets.market_data.sources import register_source
from alphapulse_assets.market_data.sources.base import CandleSource
from alphapulse_assets.market_data.sources.sample import SampleSource
from alphapulse_assets.recovery.errors import SystemResourceError, TransientError, UnknownSymbolError
from alphapulse_assets_tests.clock import FakeClock  # noqa: F401  (re-exported for the recovery tests)


class CaptureChannel(Channel):
    """Records every notification it is asked to send."""

    name = "capture"

    def __init__(self):
        super().__init__()
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.sent.append(notification)

    def count(self, key: str, status: str) -> int:
        return sum(1 for n in self.sent for a in n.alerts if a.key == key and a.status == status)


class SwitchableSource(CandleSource):
    """The sample market, until ``mode`` says the exchange is down (transient), full (system) or bad (permanent)."""

    name = "switchable"
    mode = "up"

    def fetch(self, symbols, start, end) -> pd.DataFrame:
        mode = SwitchableSource.mode
        if mode == "down":
            raise TransientError("exchange unreachable", where="switchable source")
        if mode == "full":
            raise SystemResourceError("no space left on device", where="switchable source")
        if mode == "bad":
            raise UnknownSymbolError(f"no such symbol {symbols[0]}", where="switchable source")
        return SampleSource().fetch(symbols, start, end)


register_source("switchable", lambda settings: SwitchableSource())


def router_with_capture(db_url: str, clock) -> tuple[AlertRouter, CaptureChannel]:
    capture = CaptureChannel()
    return AlertRouter([capture], AlertStore(db_url), clock=clock), capture


def ingestion_defs(tmp_path) -> dg.Definitions:
    """The platform's definitions with the candle job reading the switchable source into tmp_path."""
    return dg.Definitions(
        assets=platform_defs.assets,
        jobs=[ingest_market_data_job],
        schedules=platform_defs.schedules,
        resources={
            **platform_defs.resources,
            "market_data": MarketDataResource(sources=["switchable"], symbols=["BTCUSDT"]),
            "candle_io_manager": PartitionedParquetIOManager(base_url=str(tmp_path / "candles")),
        },
        executor=dg.in_process_executor,
    )


def fast_ingestion_retries(monkeypatch) -> None:
    """The ingestion step still retries once, without the 1-2-4 s backoff that would slow the tests."""
    monkeypatch.setattr(market_candles.op, "_retry_policy", dg.RetryPolicy(max_retries=1, delay=0))


def run_ingestion(defs: dg.Definitions, instance, partition_key: str, tags: dict | None = None):
    job = defs.resolve_job_def("ingest_market_data")
    return job.execute_in_process(instance=instance, partition_key=partition_key, tags=tags or {}, raise_on_error=False)


def tick(sensor, instance, defs, cursor):
    """Evaluate one sensor tick like the daemon does (asset events go into the instance)."""
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result
