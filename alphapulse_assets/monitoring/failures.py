"""Classify a failed run from its step failures, for the run-failure alert. Pure; no Dagster import.

A step failure arrives as the error's class names (the exception and its causes), its message and the
``error_class`` metadata that ``recovery.policies.classified_failures`` attaches to a ``Failure``. The
class decides the severity: a system error (disk full, out of memory) is critical, anything else error.
A blocking asset check that fails (a promotion gate rejecting a challenger) fails its step too, but that
is the platform working, not a fault: such failures are set apart and do not alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alphapulse_assets.recovery.errors import ErrorClass, Severity

CHECK_FAILURE_CLASS = "DagsterAssetCheckFailedError"

_SYSTEM_NAMES = {"MemoryError", "SystemResourceError", "DagsterExecutionInterruptedError"}
_TRANSIENT_NAMES = {"TransientError", "TimeoutError", "ConnectionError", "OperationalError", "NetworkError",
                    "RequestTimeout", "ExchangeNotAvailable", "RateLimitExceeded", "ConnectTimeout", "ReadTimeout"}


@dataclass(frozen=True)
class StepFailure:
    step_key: str
    class_names: tuple[str, ...]  # the error, then its causes
    message: str
    error_class: str | None = None  # from Failure metadata, when the step classified it itself

    @property
    def is_check_failure(self) -> bool:
        return CHECK_FAILURE_CLASS in self.class_names[:1]

    def classify(self) -> ErrorClass:
        if self.error_class:
            try:
                return ErrorClass(self.error_class)
            except ValueError:
                pass
        names = set(self.class_names)
        text = self.message.lower()
        if names & _SYSTEM_NAMES or "no space left" in text or "out of memory" in text:
            return ErrorClass.SYSTEM
        if names & _TRANSIENT_NAMES:
            return ErrorClass.TRANSIENT
        return ErrorClass.PERMANENT


@dataclass(frozen=True)
class RunFailureSummary:
    error_class: ErrorClass | None  # None: only check failures (not a fault)
    severity: Severity
    faults: tuple[StepFailure, ...]
    check_failures: tuple[StepFailure, ...]

    @property
    def is_fault(self) -> bool:
        return bool(self.faults) or not self.check_failures

    def describe(self, limit: int = 5) -> str:
        lines = []
        for f in self.faults[:limit]:
            first = (f.message.strip().splitlines() or [""])[0][:300]
            cls = next((n for n in f.class_names if not n.startswith("DagsterExecution")), "?")
            lines.append(f"- {f.step_key}: {f.classify().value} error ({cls}): {first}")
        if len(self.faults) > limit:
            lines.append(f"- ... and {len(self.faults) - limit} more failed steps")
        if self.check_failures:
            lines.append(f"({len(self.check_failures)} step(s) stopped by blocking checks, e.g. a rejected challenger)")
        return "\n".join(lines)


_RANK = {ErrorClass.TRANSIENT: 0, ErrorClass.PERMANENT: 1, ErrorClass.SYSTEM: 2}


def summarize(failures: Sequence[StepFailure]) -> RunFailureSummary:
    """The run's class is its worst step's: system > permanent > transient. A run that failed without any
    step failure (the run worker crashed, the run was stopped) is a fault of unknown class: permanent."""
    faults = tuple(f for f in failures if not f.is_check_failure)
    checks = tuple(f for f in failures if f.is_check_failure)
    if faults:
        worst = max((f.classify() for f in faults), key=_RANK.__getitem__)
    elif checks:
        return RunFailureSummary(None, Severity.INFO, faults, checks)
    else:
        worst = ErrorClass.PERMANENT
    severity = Severity.CRITICAL if worst is ErrorClass.SYSTEM else Severity.ERROR
    return RunFailureSummary(worst, severity, faults, checks)


__all__ = ["CHECK_FAILURE_CLASS", "RunFailureSummary", "StepFailure", "summarize"]
