"""What a finished run says about each protected dependency: pure decisions over plain values.

The breaker sensor turns Dagster's run and step events into the inputs here (class names along an
error's cause chain, a ``Failure``'s metadata, the dependencies of the failed and succeeded steps), and
turns the answer into ``BreakerStore.record`` calls. Keeping the rules here lets them be tested without
an instance and read in one place:

- a blocking asset check that fails (``DagsterAssetCheckFailedError``) is the promotion gate rejecting a
  challenger: the work ran fine, so it is *not* a failure of anything (it counts as a success of the
  dependency when nothing else in the run failed);
- a ``Failure`` raised by ``recovery.policies.classified_failures`` carries ``error_class`` and
  ``severity`` in its metadata: that is the answer;
- otherwise the cause chain is walked past Dagster's wrappers (retry requests, step errors) and the
  first class name that the platform knows decides; unknown errors are permanent, as in
  ``errors.classify`` (retrying, or tripping a breaker on, a bug only hides it);
- one run is one call per dependency: a run with three failed steps of one dependency is one failure.

This module does not import Dagster.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from alphapulse_assets.recovery import errors as er
from alphapulse_assets.recovery.errors import AlphaPulseError, ErrorClass, Severity

GATE_REJECTION = "DagsterAssetCheckFailedError"
# Dagster's own wrappers around the user's exception: look through them to their cause.
WRAPPERS = frozenset({
    "RetryRequestedFromPolicy",
    "RetryRequested",
    "DagsterExecutionStepExecutionError",
    "DagsterUserCodeExecutionError",
    "DagsterExecutionInterruptedError",
    "Failure",
})


def _alphapulse_classes() -> dict[str, ErrorClass]:
    found: dict[str, ErrorClass] = {}
    todo = [AlphaPulseError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.__name__, cls.error_class)
        todo.extend(cls.__subclasses__())
    return found


def class_of_name(name: str) -> ErrorClass | None:
    """The class of an exception known only by its class name, or None when the name says nothing."""
    if name in WRAPPERS:
        return None
    known = _alphapulse_classes()  # walked per call: subclasses defined after import are found too
    if name in known:
        return known[name]
    builtin = getattr(builtins, name, None)
    if isinstance(builtin, type) and issubclass(builtin, BaseException):
        try:
            return er.classify(builtin()).error_class
        except Exception:  # pragma: no cover - a builtin that needs arguments
            return None
    if name in er._PERMANENT_NAMES:
        return ErrorClass.PERMANENT
    if name in er._TRANSIENT_NAMES:
        return ErrorClass.TRANSIENT
    return None


@dataclass(frozen=True)
class StepFailure:
    """One failed step, reduced to what classification needs."""

    dependencies: tuple[str, ...]
    #: Class names from the outermost error inwards along ``cause`` (Dagster's ``SerializableErrorInfo``).
    chain: tuple[str, ...]
    #: A ``Failure``'s metadata, as text (``error_class``, ``severity``, ``reason``).
    metadata: Mapping[str, str] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class Classified:
    #: None: not a failure of the dependency at all (a promotion-gate rejection).
    error_class: ErrorClass | None
    severity: Severity
    reason: str


def classify_step_failure(failure: StepFailure) -> Classified:
    if GATE_REJECTION in failure.chain:
        return Classified(None, Severity.INFO, "promotion gate rejected the challenger (blocking check)")
    meta_class = failure.metadata.get("error_class")
    if meta_class:
        try:
            cls = ErrorClass(str(meta_class).lower())
        except ValueError:
            cls = None
        if cls is not None:
            severity = _severity(failure.metadata.get("severity"), cls)
            return Classified(cls, severity, str(failure.metadata.get("reason") or cls.value))
    for name in failure.chain:
        cls = class_of_name(name)
        if cls is not None:
            return Classified(cls, _severity(None, cls), name)
    last = failure.chain[-1] if failure.chain else "unknown error"
    return Classified(ErrorClass.PERMANENT, Severity.ERROR, f"{last} (unclassified: permanent)")


def _severity(value: str | None, cls: ErrorClass) -> Severity:
    if value:
        try:
            return Severity(str(value).lower())
        except ValueError:
            pass
    return Severity.CRITICAL if cls is ErrorClass.SYSTEM else Severity.ERROR


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


_RANK = {ErrorClass.SYSTEM: 3, ErrorClass.TRANSIENT: 2, ErrorClass.PERMANENT: 1}


def run_outcomes(
    run_succeeded: bool,
    run_dependencies: Iterable[str],
    succeeded_step_dependencies: Iterable[str],
    failures: Sequence[StepFailure],
    run_failure_reason: str = "",
) -> list[Outcome]:
    """One outcome per dependency the run exercised.

    A dependency fails when one of its steps failed with a classified error (the most serious class
    wins: system over transient over permanent); it succeeds when its steps ran and any failure was a
    gate rejection. A failed run with no failed step at all (a crashed run worker, a run that never
    started) is a transient failure of every dependency of its job: nothing ran, so nothing is known to work.
    """
    deps = list(dict.fromkeys(run_dependencies))
    if run_succeeded:
        return [Outcome(d, True) for d in deps]
    worst: dict[str, tuple[Classified, StepFailure]] = {}
    touched: set[str] = set(succeeded_step_dependencies)
    for failure in failures:
        c = classify_step_failure(failure)
        for dep in failure.dependencies:
            touched.add(dep)
            if c.error_class is None:
                continue
            prev = worst.get(dep)
            if prev is None or _RANK[c.error_class] > _RANK[prev[0].error_class]:  # type: ignore[index]
                worst[dep] = (c, failure)
            if dep not in deps:
                deps.append(dep)
    if not failures:
        reason = run_failure_reason or "run failed outside any step"
        return [Outcome(d, False, ErrorClass.TRANSIENT, Severity.ERROR, reason) for d in deps]
    out = []
    for dep in deps:
        if dep in worst:
            c, f = worst[dep]
            detail = f"{c.reason}: {f.message}".strip(": ") if f.message else c.reason
            out.append(Outcome(dep, False, c.error_class, c.severity, detail[:300]))
        elif dep in touched:
            out.append(Outcome(dep, True))
    return out


__all__ = ["GATE_REJECTION", "Classified", "Outcome", "StepFailure", "class_of_name", "classify_step_failure",
           "run_outcomes"]
