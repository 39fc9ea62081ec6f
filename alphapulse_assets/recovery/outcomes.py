"""What a finished run says about each protected dependency: pure decisions over plain values.

The breaker sensor turns Dagster's run and step events into the inputs here (each failed step as an
``errors.FailureRecord`` with the dependencies of its assets, the dependencies of the steps that
succeeded), and turns the answer into ``BreakerStore.record`` calls. Keeping the rules here lets them be
tested without an instance and read in one place:

- each failed step is classified by the platform's one classifier (``errors.FailureRecord.classify``);
- a dependency takes its worst step's class (``errors.worst``: system over transient over permanent);
- a failed run with no failed step (a crashed or lost run worker) is classified by ``errors.classify_run``;
- one run is one call per dependency: a run with three failed steps of one dependency is one failure.

A promotion-gate rejection is not a failure at all (the gate check does not fail its run), so nothing
here needs to recognise it. This module does not import Dagster.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from alphapulse_assets.recovery.errors import ErrorClass, FailureRecord, Severity, classify_run, worst


@dataclass(frozen=True)
class StepFailure:
    """One failed step: the protected dependencies of its assets and what failed."""

    dependencies: tuple[str, ...]
    record: FailureRecord


@dataclass(frozen=True)
class Outcome:
    """What to record for one dependency after one run."""

    dependency: str
    ok: bool
    error_class: ErrorClass | None = None
    severity: Severity = Severity.INFO
    detail: str = ""

    @property
    def critical(self) -> bool:
        return not self.ok and self.severity is Severity.CRITICAL


def run_outcomes(
    run_succeeded: bool,
    run_dependencies: Iterable[str],
    succeeded_step_dependencies: Iterable[str],
    failures: Sequence[StepFailure],
    run_failure_reason: str = "",
) -> list[Outcome]:
    """One outcome per dependency the run exercised.

    A dependency fails when one of its steps failed (its worst step's class counts); it succeeds when its
    steps ran and none failed. A failed run with no failed step at all fails every dependency of its job.
    """
    deps = list(dict.fromkeys(run_dependencies))
    if run_succeeded:
        return [Outcome(d, True) for d in deps]
    if not failures:
        c = classify_run([], run_failure_reason)
        return [Outcome(d, False, c.error_class, c.severity, c.reason) for d in deps]
    by_dep: dict[str, list[FailureRecord]] = {}
    for failure in failures:
        for dep in failure.dependencies:
            by_dep.setdefault(dep, []).append(failure.record)
            if dep not in deps:
                deps.append(dep)
    touched = set(succeeded_step_dependencies) | set(by_dep)
    out = []
    for dep in deps:
        if dep in by_dep:
            records = by_dep[dep]
            c = worst(r.classify() for r in records)
            record = next(r for r in records if r.classify() == c)
            detail = f"{c.reason}: {record.message}" if record.message else c.reason
            out.append(Outcome(dep, False, c.error_class, c.severity, detail[:300]))
        elif dep in touched:
            out.append(Outcome(dep, True))
    return out


__all__ = ["Outcome", "StepFailure", "run_outcomes"]
