"""Error classification, and what Dagster does with each class: transient retried, permanent not."""

import errno
import socket

import dagster as dg
import pandas as pd
import pytest

from alphapulse_assets.market_data.sources import register_source
from alphapulse_assets.market_data.sources.base import CandleSource
from alphapulse_assets.market_data.sources.sample import SampleSource
from alphapulse_assets.recovery.errors import (
    AuthenticationError,
    DataValidationError,
    ErrorClass,
    TransientError,
    UnknownSymbolError,
    classify,
)


class FakeHTTPError(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status = status


@pytest.mark.parametrize(
    "exc, expected",
    [
        (TimeoutError("read timed out"), ErrorClass.TRANSIENT),
        (socket.timeout("timed out"), ErrorClass.TRANSIENT),
        (ConnectionResetError(errno.ECONNRESET, "reset by peer"), ErrorClass.TRANSIENT),
        (OSError(errno.ECONNREFUSED, "refused"), ErrorClass.TRANSIENT),
        (FakeHTTPError(429), ErrorClass.TRANSIENT),
        (FakeHTTPError(503), ErrorClass.TRANSIENT),
        (FakeHTTPError(401), ErrorClass.PERMANENT),
        (FakeHTTPError(404), ErrorClass.PERMANENT),
        (AuthenticationError("bad key"), ErrorClass.PERMANENT),
        (UnknownSymbolError("no FOO"), ErrorClass.PERMANENT),
        (DataValidationError("schema mismatch"), ErrorClass.PERMANENT),
        (MemoryError(), ErrorClass.SYSTEM),
        (OSError(errno.ENOSPC, "No space left on device"), ErrorClass.SYSTEM),
        (KeyError("a bug"), ErrorClass.PERMANENT),
    ],
)
def test_classification(exc, expected):
    assert classify(exc).error_class is expected


def test_library_exceptions_are_classified_by_name():
    import ccxt

    assert classify(ccxt.RequestTimeout("slow")).error_class is ErrorClass.TRANSIENT
    assert classify(ccxt.RateLimitExceeded("429")).error_class is ErrorClass.TRANSIENT
    assert classify(ccxt.BadSymbol("no such market")).error_class is ErrorClass.PERMANENT
    assert classify(ccxt.AuthenticationError("key")).error_class is ErrorClass.PERMANENT


class FlakySource(CandleSource):
    """Fails with a given error for the first ``failures`` calls, then serves sample data."""

    name = "flaky"
    calls = 0

    def __init__(self, error, failures):
        self.error, self.failures = error, failures

    def fetch(self, symbols, start, end):
        type(self).calls += 1
        if type(self).calls <= self.failures:
            raise self.error
        return SampleSource().fetch(symbols, start, end)


def _materialize(error, failures):
    from alphapulse_assets.market_data.assets import market_candles
    from alphapulse_assets.market_data.resources import MarketDataResource

    FlakySource.calls = 0
    register_source("flaky", lambda settings: FlakySource(error, failures))
    assets = [market_candles]
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            assets,
            partition_key="2024-03-01",
            instance=instance,
            resources={"market_data": MarketDataResource(sources=["flaky"], symbols=["BTCUSDT"]),
                       "candle_io_manager": dg.mem_io_manager},
            raise_on_error=False,
        )
        retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        return result, retries, failure


def test_transient_fault_is_retried_with_backoff_and_recovers(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)  # keep the test quick; the policy's delays are asserted below
    result, retries, _ = _materialize(TimeoutError("exchange timed out"), failures=2)
    assert result.success
    assert FlakySource.calls == 3 and len(retries) == 2
    from alphapulse_assets.market_data.assets import market_candles
    policy = market_candles.op.retry_policy
    assert policy.backoff is dg.Backoff.EXPONENTIAL and policy.jitter is dg.Jitter.PLUS_MINUS and policy.max_retries == 3


def test_permanent_fault_fails_at_once_without_retries():
    result, retries, failure = _materialize(AuthenticationError("API key refused", where="exchange"), failures=99)
    assert not result.success
    assert FlakySource.calls == 1 and retries == []
    message = failure.step_failure_data.error.message
    assert "permanent error" in message and "API key refused (in exchange)" in message
    assert failure.step_failure_data.user_failure_data.metadata["error_class"].value == "permanent"


def test_system_fault_fails_at_once_marked_critical():
    result, retries, failure = _materialize(OSError(errno.ENOSPC, "No space left on device"), failures=99)
    assert not result.success and retries == []
    assert failure.step_failure_data.user_failure_data.metadata["severity"].value == "critical"
