"""Error classification: the one place that decides whether a failure is worth retrying.

Every failure the platform meets is put in one of three classes:

- ``TRANSIENT``: it may go away by itself (timeouts, connection resets, HTTP 429 and 5xx).
  Retried with exponential backoff and jitter; counts towards a circuit breaker.
- ``PERMANENT``: retrying cannot help (authentication, unknown symbol, schema mismatch, bad data).
  Fails at once with a clear message; never retried; does not trip an outage breaker.
- ``SYSTEM``: the host itself is in trouble (out of memory, disk full). Fails at once and is critical.

Sources raise the typed errors below where they know the class; ``classify`` maps anything else
(library exceptions, OS errors) by type, by the text of a full disk and, for HTTP errors, by status code.

A failure that is known only from its record (a failed step in Dagster's event log: class names along the
cause chain, a message, a ``Failure``'s metadata) is classified by ``FailureRecord.classify`` with the same
rules, and a failed run by ``classify_run`` (its worst step: system over transient over permanent). The
breakers, the run-failure alerts, the daily report and the CLI all use these; there is no other classifier.

This module does not import Dagster; ``alphapulse_assets.recovery.policies`` turns a classification into
Dagster behaviour.
"""

from __future__ import annotations

import builtins
import errno
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum


class ErrorClass(str, Enum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    SYSTEM = "system"


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class AlphaPulseError(Exception):
    """Base of the platform's classified errors. ``where`` names the source, file or table involved."""

    error_class: ErrorClass = ErrorClass.PERMANENT

    def __init__(self, message: str, *, where: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.message} (in {self.where})" if self.where else self.message


class TransientError(AlphaPulseError):
    error_class = ErrorClass.TRANSIENT


class PermanentError(AlphaPulseError):
    error_class = ErrorClass.PERMANENT


class SystemResourceError(AlphaPulseError):
    error_class = ErrorClass.SYSTEM


class DataValidationError(PermanentError):
    """Input data is malformed: missing columns, text in a price column, duplicates, wrong timezone."""


class UnknownSymbolError(PermanentError):
    """The source has no such symbol."""


class AuthenticationError(PermanentError):
    """The source refused the credentials."""


class NoDataError(PermanentError):
    """The source has no data for the requested window."""


@dataclass(frozen=True)
class Classification:
    error_class: ErrorClass
    reason: str

    @property
    def retryable(self) -> bool:
        return self.error_class is ErrorClass.TRANSIENT

    @property
    def severity(self) -> Severity:
        return Severity.CRITICAL if self.error_class is ErrorClass.SYSTEM else Severity.ERROR


# A full disk or database, whatever raised it: SQLite says "database or disk is full" (SQLITE_FULL) through
# an OperationalError that would otherwise read as a transient database fault, and "disk I/O error"
# (SQLITE_IOERR) when it cannot even extend its WAL index on a full disk.
_SYSTEM_TEXTS = (
    "no space left on device",
    "database or disk is full",
    "disk quota exceeded",
    "disk i/o error",
    "out of memory",
    "cannot allocate memory",
)
_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
_PERMANENT_HTTP_AUTH = {401, 403}
_SYSTEM_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.ENOMEM, errno.EMFILE, errno.ENFILE}
_TRANSIENT_ERRNOS = {
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EPIPE,
    errno.EAGAIN,
}

# Library exception names, matched by class name along the MRO so that this module needs none of the
# libraries installed (ccxt is an optional extra; psycopg and requests may be absent).
_TRANSIENT_NAMES = {
    "NetworkError",  # ccxt: RequestTimeout, ExchangeNotAvailable, DDoSProtection, RateLimitExceeded ...
    "RequestTimeout",
    "ExchangeNotAvailable",
    "RateLimitExceeded",
    "DDoSProtection",
    "OperationalError",  # psycopg / sqlalchemy: server gone, connection refused
    "InterfaceError",
    "ConnectTimeout",
    "ReadTimeout",
    "ConnectionError",
    "Timeout",
}
_PERMANENT_NAMES = {
    "AuthenticationError",
    "PermissionDenied",
    "AccountSuspended",
    "BadSymbol",
    "BadRequest",
    "NotSupported",
    "ArgumentsRequired",
    "ProgrammingError",  # SQL error: wrong table or column
    "UndefinedTable",
    "UndefinedColumn",
    "ArrowInvalid",
    "ParserError",
    "EmptyDataError",
}


def http_status_of(exc: BaseException) -> int | None:
    for attr in ("status", "status_code", "http_status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None) or getattr(response, "status", None)
    return value if isinstance(value, int) else None


def classify(exc: BaseException) -> Classification:
    """Classify any exception. Unknown errors are permanent: retrying a bug only hides it."""
    if isinstance(exc, AlphaPulseError):
        return Classification(exc.error_class, type(exc).__name__)
    if isinstance(exc, MemoryError):
        return Classification(ErrorClass.SYSTEM, "out of memory")
    if isinstance(exc, OSError) and exc.errno in _SYSTEM_ERRNOS:
        return Classification(ErrorClass.SYSTEM, f"host resource exhausted: {errno.errorcode[exc.errno]}")
    system_text = _system_text(str(exc))
    if system_text:
        return Classification(ErrorClass.SYSTEM, system_text)

    status = http_status_of(exc)
    if status is not None:
        if status in _TRANSIENT_HTTP:
            return Classification(ErrorClass.TRANSIENT, f"HTTP {status}")
        if status in _PERMANENT_HTTP_AUTH:
            return Classification(ErrorClass.PERMANENT, f"HTTP {status}: authentication refused")
        if 400 <= status < 500:
            return Classification(ErrorClass.PERMANENT, f"HTTP {status}")

    names = {cls.__name__ for cls in type(exc).__mro__}
    # Permanent names first: ccxt's AuthenticationError is not a NetworkError, but BadSymbol is a BadRequest.
    if names & _PERMANENT_NAMES:
        return Classification(ErrorClass.PERMANENT, type(exc).__name__)
    if isinstance(exc, (TimeoutError, socket.timeout, ConnectionError)):
        return Classification(ErrorClass.TRANSIENT, type(exc).__name__)
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return Classification(ErrorClass.TRANSIENT, errno.errorcode[exc.errno])
    if names & _TRANSIENT_NAMES:
        return Classification(ErrorClass.TRANSIENT, type(exc).__name__)
    return Classification(ErrorClass.PERMANENT, type(exc).__name__)


def _system_text(text: str) -> str | None:
    lowered = text.lower()
    return next((t for t in _SYSTEM_TEXTS if t in lowered), None)


def describe(exc: BaseException) -> str:
    """A one-line, user-facing description that names the class and the place."""
    c = classify(exc)
    return f"{c.error_class.value} error ({c.reason}): {exc}"


# -- failures known from their record ----------------------------------------------------------------------

#: Dagster's wrappers around the user's exception: looked through, to the cause.
DAGSTER_WRAPPERS = frozenset(
    {
        "RetryRequestedFromPolicy",
        "RetryRequested",
        "DagsterExecutionStepExecutionError",
        "DagsterUserCodeExecutionError",
        "DagsterExecutionLoadInputError",
        "DagsterExecutionHandleOutputError",
        "DagsterMaxRetriesExceededError",
        "Failure",
    }
)
#: A stopped step (SIGTERM, Ctrl-C): not a fault of any dependency, and nothing critical about the host.
INTERRUPTED = "DagsterExecutionInterruptedError"


def _alphapulse_classes() -> dict[str, ErrorClass]:
    found: dict[str, ErrorClass] = {}
    todo: list[type[AlphaPulseError]] = [AlphaPulseError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.__name__, cls.error_class)
        todo.extend(cls.__subclasses__())
    return found


def class_of_name(name: str) -> ErrorClass | None:
    """The class of an exception known only by its class name, or None when the name says nothing."""
    if not name or name in DAGSTER_WRAPPERS:
        return None
    if name == INTERRUPTED:
        return ErrorClass.TRANSIENT
    known = _alphapulse_classes()  # walked per call: subclasses defined after import are found too
    if name in known:
        return known[name]
    if name in _PERMANENT_NAMES:
        return ErrorClass.PERMANENT
    if name in _TRANSIENT_NAMES:
        return ErrorClass.TRANSIENT
    builtin = getattr(builtins, name, None)
    if isinstance(builtin, type) and issubclass(builtin, BaseException):
        try:
            return classify(builtin()).error_class
        except Exception:  # pragma: no cover - a builtin that needs arguments
            return None
    return None


@dataclass(frozen=True)
class FailureRecord:
    """A failure known from its record, e.g. a failed step in Dagster's event log."""

    #: Class names from the outermost error inwards along its causes.
    chain: tuple[str, ...]
    #: The first message that is not a Dagster wrapper's (the real cause, not "Exceeded max_retries of 3").
    message: str = ""
    #: A ``Failure``'s metadata (``error_class``, ``reason``), as ``policies.classified_failures`` attaches it.
    metadata: Mapping[str, str] = field(default_factory=dict)
    step_key: str = ""

    def classify(self) -> Classification:
        """The same rules as ``classify``: the step's own classification, a full disk, then the first
        class name along the chain that says something. Unknown errors are permanent."""
        meta_class = self.metadata.get("error_class")
        if meta_class:
            try:
                return Classification(
                    ErrorClass(str(meta_class).lower()), str(self.metadata.get("reason") or meta_class)
                )
            except ValueError:
                pass
        system_text = _system_text(self.message)
        if system_text:
            return Classification(ErrorClass.SYSTEM, system_text)
        for name in self.chain:
            cls = class_of_name(name)
            if cls is not None:
                return Classification(cls, "interrupted" if name == INTERRUPTED else name)
        last = self.chain[-1] if self.chain else "unknown error"
        return Classification(ErrorClass.PERMANENT, f"{last} (unclassified: permanent)")

    def describe(self) -> str:
        """One line: the class, the exception's name and the real cause."""
        c = self.classify()
        first = (self.message.strip().splitlines() or [""])[0][:300]
        if f"{c.error_class.value} error" in first:  # already said by ``classified_failures``
            return first
        return f"{c.error_class.value} error ({c.reason}): {first}".rstrip(": ")


def failure_record(
    error,
    metadata: Mapping[str, object] | None = None,
    *,
    description: str | None = None,
    step_key: str = "",
    max_depth: int = 20,
) -> FailureRecord:
    """A ``FailureRecord`` from a serialized error (anything with ``cls_name``, ``message``, ``cause`` and
    ``context``, such as Dagster's ``SerializableErrorInfo``) and a ``Failure``'s metadata/description."""
    names: list[str] = []
    message = ""
    depth = 0
    while error is not None and depth < max_depth:
        name = getattr(error, "cls_name", None) or ""
        names.append(name)
        text = (getattr(error, "message", None) or "").strip()
        if not message and name not in DAGSTER_WRAPPERS and name != INTERRUPTED and text:
            head, sep, rest = text.splitlines()[0].partition(": ")
            message = rest if sep and head.endswith(name) else text  # drop "package.Class: "
        error = getattr(error, "cause", None) or getattr(error, "context", None)
        depth += 1
    meta = {k: str(getattr(v, "value", v)) for k, v in (metadata or {}).items()}
    if description:
        message = description
    return FailureRecord(tuple(n for n in names if n), message or (names[-1] if names else ""), meta, step_key)


_RANK = {ErrorClass.SYSTEM: 3, ErrorClass.TRANSIENT: 2, ErrorClass.PERMANENT: 1}


def worst(classifications: Iterable[Classification]) -> Classification | None:
    """The most serious of several: system over transient (an outage) over permanent."""
    return max(classifications, key=lambda c: _RANK[c.error_class], default=None)


def classify_run(failures: Iterable[FailureRecord], run_failure_reason: str = "") -> Classification:
    """A failed run's class: its worst failed step's. A run that failed without any failed step (its worker
    crashed or was lost, it never started) is transient: nothing ran, so nothing is known to be broken."""
    found = worst(f.classify() for f in failures)
    if found is not None:
        return found
    return Classification(
        ErrorClass.TRANSIENT, f"run failed outside any step ({run_failure_reason or 'no step failed'})"
    )
