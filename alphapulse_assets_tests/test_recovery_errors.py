"""Error classification, and what Dagster does with each class: transient retried, permanent not."""

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from alphapulse_assets.market_data.sources import register_source
from alphapulse_assets.market_data.sources.base import CandleSource
from alphapulse_assets.market_data.sources.sample import SampleSource
from alphapulse_assets.recovery.errors import (
    AuthenticationError,
    DataValidationError,
    ErrorClass,
    FailureRecord,
    Severity,
    TransientError,
    UnknownSymbolError,
    classify,
    classify_run,
    failure_record,
)


class FakeHTTPError(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status = status


@pytest.mark.parametrize(
    "exc, expected",
    [
        (TimeoutError("read timed out"), ErrorClass.TRANSIENT),
        (TimeoutError("timed out"), ErrorClass.TRANSIENT),
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
            resources={
                "market_data": MarketDataResource(sources=["flaky"], symbols=["BTCUSDT"]),
                "candle_io_manager": dg.mem_io_manager,
            },
            raise_on_error=False,
        )
        retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        return result, retries, failure


@pytest.mark.slow
def test_transient_fault_is_retried_with_backoff_and_recovers(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)  # keep the test quick; the policy's delays are asserted below
    result, retries, _ = _materialize(TimeoutError("exchange timed out"), failures=2)
    assert result.success
    assert FlakySource.calls == 3 and len(retries) == 2
    from alphapulse_assets.market_data.assets import market_candles

    policy = market_candles.op.retry_policy
    assert (
        policy.backoff is dg.Backoff.EXPONENTIAL and policy.jitter is dg.Jitter.PLUS_MINUS and policy.max_retries == 3
    )


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


# -- one classifier, for live exceptions and for failures read back from Dagster's event log -----------------


def _as_recorded(exc: BaseException, retried: bool = True) -> FailureRecord:
    """``exc`` as Dagster stores a failed step's error after its retries (Dagster's "Exceeded max_retries"
    wrapper around the user's error), read back the way the breakers, alerts, report and CLI read it."""
    # Internal: how Dagster serialises a step's error; the test builds one exactly as the event log stores it.
    from dagster._utils.error import SerializableErrorInfo, serializable_error_info_from_exc_info

    try:
        raise exc
    except BaseException:
        info = serializable_error_info_from_exc_info(sys.exc_info())
    if retried:
        info = SerializableErrorInfo("Exceeded max_retries of 3\n", [], "RetryRequestedFromPolicy", cause=info)
    return failure_record(info)


def _sqlalchemy_disk_full():
    import sqlalchemy.exc

    return sqlalchemy.exc.OperationalError(
        "INSERT INTO alerts ...", {}, sqlite3.OperationalError("database or disk is full")
    )


CLASSIFIER_TABLE = [
    # error, class, severity
    (OSError(errno.ENOSPC, "No space left on device"), ErrorClass.SYSTEM, Severity.CRITICAL),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), ErrorClass.SYSTEM, Severity.CRITICAL),
    (sqlite3.OperationalError("database or disk is full"), ErrorClass.SYSTEM, Severity.CRITICAL),
    (_sqlalchemy_disk_full(), ErrorClass.SYSTEM, Severity.CRITICAL),
    (MemoryError(), ErrorClass.SYSTEM, Severity.CRITICAL),
    (PermissionError(errno.EACCES, "Permission denied"), ErrorClass.PERMANENT, Severity.ERROR),
    (ValueError("Protocol not known: nosuch"), ErrorClass.PERMANENT, Severity.ERROR),  # unknown URL scheme
    (dg.DagsterUnknownPartitionError("no partition 1999-01-01"), ErrorClass.PERMANENT, Severity.ERROR),
    (
        DataValidationError("partition 2024-03-01 of candles_1h has not been written"),
        ErrorClass.PERMANENT,
        Severity.ERROR,
    ),
    (sqlite3.OperationalError("database is locked"), ErrorClass.TRANSIENT, Severity.ERROR),
    (TimeoutError("read timed out"), ErrorClass.TRANSIENT, Severity.ERROR),
    (TransientError("the market-data folder does not exist"), ErrorClass.TRANSIENT, Severity.ERROR),
]


@pytest.mark.parametrize("exc, error_class, severity", CLASSIFIER_TABLE, ids=lambda v: type(v).__name__)
def test_one_classifier_live_and_recorded(exc, error_class, severity):
    live = classify(exc)
    assert (live.error_class, live.severity) == (error_class, severity)
    for recorded in (_as_recorded(exc), _as_recorded(exc, retried=False)):
        assert (recorded.classify().error_class, recorded.classify().severity) == (error_class, severity), recorded
        assert "Exceeded max_retries" not in recorded.message  # the real cause, not Dagster's wrapper


def test_run_level_classification_interruptions_and_order():
    # A stopped step (SIGTERM, Ctrl-C) is no fault of a dependency and nothing critical about the host.
    stopped = FailureRecord(("DagsterExecutionInterruptedError",), "Execution was interrupted").classify()
    assert (stopped.error_class, stopped.severity) == (ErrorClass.TRANSIENT, Severity.ERROR)
    # A failed run without a failed step (a crashed or lost worker): transient, with the run's reason.
    lost = classify_run([], "UNEXPECTED_TERMINATION")
    assert lost.error_class is ErrorClass.TRANSIENT and "UNEXPECTED_TERMINATION" in lost.reason
    # The worst step decides, in one order everywhere: system > transient > permanent.
    bad, down, full = (
        FailureRecord(("UnknownSymbolError",)),
        FailureRecord(("TimeoutError",)),
        FailureRecord(("OSError",), "[Errno 28] No space left on device"),
    )
    assert classify_run([bad, down]).error_class is ErrorClass.TRANSIENT
    assert classify_run([bad, full, down]).error_class is ErrorClass.SYSTEM


def test_a_permanent_error_in_the_io_manager_is_not_retried(tmp_path):
    """Storing the candles under an unknown URL scheme cannot work on a retry: one attempt, the real cause."""
    from alphapulse_assets.market_data.assets import market_candles
    from alphapulse_assets.market_data.resources import MarketDataResource, PartitionedParquetIOManager

    assert market_candles.op.retry_policy.max_retries == 3
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [market_candles],
            partition_key="2024-03-01",
            instance=instance,
            raise_on_error=False,
            resources={
                "market_data": MarketDataResource(sources=["sample"], symbols=["BTCUSDT"]),
                "candle_io_manager": PartitionedParquetIOManager(base_url="nosuch://bucket/candles"),
            },
        )
        events = [e.event_type_value for e in result.all_events]
    assert not result.success
    assert events.count("STEP_START") == 1 and "STEP_UP_FOR_RETRY" not in events  # one attempt
    failure = next(e for e in result.all_events if e.is_step_failure)
    record = failure_record(failure.step_failure_data.error, failure.step_failure_data.user_failure_data.metadata)
    assert record.classify().error_class is ErrorClass.PERMANENT
    assert (
        "nosuch" in failure.step_failure_data.error.message
        and "permanent error" in failure.step_failure_data.error.message
    )


def test_a_missing_input_partition_fails_the_models_step_at_once(tmp_path):
    """The models step reads its training set through the IO manager: a partition that was never written is
    permanent, so the step (retry policy: 1) fails at once instead of training twice on nothing."""
    from alphapulse_assets.market_data.resources import CandleStoreResource, PartitionedParquetIOManager
    from alphapulse_assets.training.assets import ModelRegistryResource, cadence_assets
    from alphapulse_assets_tests.candles import symbol_tags

    training_set, models = cadence_assets["weekly"]
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [training_set, models],
            selection=[k for k in models.keys],
            tags=symbol_tags(instance, "2024-05-26"),
            instance=instance,
            raise_on_error=False,
            resources={
                "candle_store": CandleStoreResource(base_url=str(tmp_path / "candles")),
                "training_set_io_manager": PartitionedParquetIOManager(base_url=str(tmp_path / "ts"), layout="keys"),
                "model_registry": ModelRegistryResource(
                    artifact_root=str(tmp_path / "models"), db_url=f"sqlite:///{tmp_path}/p.db"
                ),
            },
        )
        events = [e.event_type_value for e in result.all_events]
    assert not result.success and "STEP_UP_FOR_RETRY" not in events
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "has not been written" in failure.step_failure_data.error.message
    assert failure.step_failure_data.user_failure_data.metadata["error_class"].value == "permanent"


def test_cli_ingest_prints_the_real_cause_not_the_retry_count(tmp_path):
    """``alphapulse ingest`` (as cron runs it) whose store cannot be written: exit 1 and the cause."""
    shutil.copy(Path(__file__).resolve().parent.parent / "dagster.yaml", tmp_path / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHAPULSE_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(tmp_path),
        ALPHAPULSE_SOURCES="sample",
        ALPHAPULSE_SYMBOLS="BTCUSDT",
        ALPHAPULSE_STORAGE_URL="nosuch://bucket/candles",
    )
    alphapulse = Path(sys.executable).parent / "alphapulse"
    out = subprocess.run(
        [str(alphapulse), "ingest", "--start", "2024-03-01", "--end", "2024-03-01"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert "nosuch" in out.stderr and "Exceeded max_retries" not in text, text
