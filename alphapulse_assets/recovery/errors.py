"""Error classification: the one place that decides whether a failure is worth retrying.

Every failure the platform meets is put in one of three classes:

- ``TRANSIENT``: it may go away by itself (timeouts, connection resets, HTTP 429 and 5xx).
  Retried with exponential backoff and jitter; counts towards a circuit breaker.
- ``PERMANENT``: retrying cannot help (authentication, unknown symbol, schema mismatch, bad data).
  Fails at once with a clear message; never retried; does not trip an outage breaker.
- ``SYSTEM``: the host itself is in trouble (out of memory, disk full). Fails at once and is critical.

Sources raise the typed errors below where they know the class; ``classify`` maps anything else
(library exceptions, OS errors) by type and, for HTTP errors, by status code. This module does not
import Dagster; ``alphapulse_assets.recovery.policies`` turns a classification into Dagster behaviour.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
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


def describe(exc: BaseException) -> str:
    """A one-line, user-facing description that names the class and the place."""
    c = classify(exc)
    return f"{c.error_class.value} error ({c.reason}): {exc}"
