"""Retry policies per kind of work, in one place, and the bridge from error classes to Dagster.

- ingestion: exponential backoff with jitter (transient source faults are common and short);
- training: one retry (expensive; a second failure is rarely transient);
- checks: none (a check re-reads stored data: retrying cannot change its answer).

Run retries (``dagster.yaml``) cover crashed run workers only (``retry_on_asset_or_op_failure: false``),
so they never multiply with these step retries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from alphapulse_assets.recovery.errors import Classification, ErrorClass, FailureRecord, classify, failure_record
from alphapulse_assets.settings import RetrySettings, get_settings


def ingestion_retry_policy(settings: RetrySettings | None = None) -> dg.RetryPolicy:
    s = settings or get_settings().retry
    return dg.RetryPolicy(
        max_retries=s.max_retries,
        delay=s.base_delay_seconds,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


def training_retry_policy() -> dg.RetryPolicy:
    return dg.RetryPolicy(max_retries=1, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


@contextmanager
def classified_failures(what: str) -> Iterator[None]:
    """Turn permanent and system errors into a Dagster ``Failure`` that is not retried.

    Transient errors pass through unchanged so that the step's ``RetryPolicy`` retries them.
    The failure's metadata carries the class and severity, which the breaker and alerting read.
    """
    try:
        yield
    except dg.Failure:
        raise
    except Exception as exc:
        failure = failure_for(what, exc)
        if failure is None:
            raise
        raise failure from exc


def failure_for(what: str, exc: BaseException) -> dg.Failure | None:
    """The ``Failure`` (not retried) that a permanent or system error of ``what`` becomes; None for a
    transient error, which the step's ``RetryPolicy`` retries."""
    if isinstance(exc, dg.Failure):
        return exc
    c = classify(exc)
    if c.error_class is ErrorClass.TRANSIENT:
        return None
    return dg.Failure(
        description=f"{what} failed, {c.error_class.value} error ({c.reason}): {exc}",
        metadata=classification_metadata(c),
        allow_retries=False,
    )


def classification_metadata(c: Classification) -> dict[str, str]:
    """What a ``Failure`` carries for the breakers, the alerts and the report (``errors.FailureRecord``)."""
    return {"error_class": c.error_class.value, "severity": c.severity.value, "reason": c.reason}


def step_failure_record(event: dg.DagsterEvent) -> FailureRecord:
    """A failed step's event as the platform's classifier reads it: the error's class names along its
    causes, the real cause's message (not Dagster's "Exceeded max_retries"), a ``Failure``'s metadata."""
    data = event.step_failure_data
    user = data.user_failure_data if data is not None else None
    return failure_record(
        data.error if data is not None else None,
        user.metadata if user is not None else None,
        description=user.description if user is not None else None,
        step_key=event.step_key or "",
    )
