"""The circuit-breaker state machine: pure functions over an immutable snapshot, with an explicit clock.

States:

- ``CLOSED``: calls go through. It trips to ``OPEN`` after ``failure_threshold`` consecutive counted
  failures, or when the failure rate over the last ``window_seconds`` reaches ``failure_rate_threshold``
  with at least ``minimum_calls`` outcomes in the window.
- ``OPEN``: calls are refused until the recovery timeout has passed. The timeout is evaluated lazily by
  :func:`current`: an ``OPEN`` breaker whose timeout has passed *reads* as ``HALF_OPEN`` even if nothing
  called it (the system this replaces only moved on when a call came in, so a breaker nobody asked about
  stayed open for ever).
- ``HALF_OPEN``: up to ``half_open_max_probes`` probe calls at once. ``half_open_success_threshold``
  probe successes close it; one counted probe failure reopens it with the timeout multiplied by
  ``backoff_factor`` (capped at ``max_recovery_timeout``). Closing resets the timeout.
- ``FORCED_OPEN``: an operator holds it open; outcomes are ignored until :func:`reset`.
- ``DISABLED``: an operator switched it off; every call is allowed and it never trips.

Only classified failures count (``recovery.errors.ErrorClass``): ``TRANSIENT`` and ``SYSTEM`` failures
count towards an outage; ``PERMANENT`` ones (bad symbol, bad credentials, bad data) say nothing about
the service being down, so they are tallied in ``permanent_failures`` and otherwise ignored: they neither
extend nor break a failure streak, do not enter the rate window, and free a half-open probe slot
without deciding anything.

Every function takes ``now`` (epoch seconds) and returns the new state with the list of
:class:`Transition` events it caused; none of them reads a clock, touches a database or imports Dagster.
``successes`` / ``failures`` / ``permanent_failures`` count every reported outcome in every state (they
are bookkeeping for operators; the state machine itself ignores outcomes where the state says so).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Any

from alphapulse_assets.recovery.errors import DataValidationError, ErrorClass, PermanentError

STATE_FORMAT_VERSION = 1


class CircuitState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


class BreakerConfigError(PermanentError):
    """A breaker configuration value is out of range."""


# Failures of these classes mean the dependency may be down; PERMANENT ones do not.
COUNTED_CLASSES = frozenset({ErrorClass.TRANSIENT, ErrorClass.SYSTEM})


@dataclass(frozen=True)
class BreakerConfig:
    """How a breaker trips and recovers. Defaults follow the design guide (5 failures, 60 s)."""

    failure_threshold: int = 5
    #: Trip when failures / calls in the window reach this; ``None`` turns the rate rule off.
    failure_rate_threshold: float | None = 0.5
    window_seconds: float = 300.0
    #: Below this many outcomes in the window the rate rule stays silent, even at 100 % failures.
    minimum_calls: int = 10
    #: Oldest outcomes are dropped beyond this many, so a busy breaker's state stays small.
    window_max_calls: int = 1000
    recovery_timeout: float = 60.0
    backoff_factor: float = 2.0
    max_recovery_timeout: float = 15 * 60.0
    half_open_max_probes: int = 1
    half_open_success_threshold: int = 1
    #: A probe that reports nothing for this long is presumed lost and its slot freed; ``None``: never.
    probe_timeout: float | None = 600.0

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> BreakerConfigError:
            value = getattr(self, name)
            return BreakerConfigError(f"{name}={value!r}: must be {rule}", where=f"BreakerConfig.{name}")

        if self.failure_threshold < 1:
            raise bad("failure_threshold", ">= 1")
        rate = self.failure_rate_threshold
        if rate is not None and not (0 < rate <= 1):
            raise bad("failure_rate_threshold", "in (0, 1] or None")
        if not (self.window_seconds > 0 and math.isfinite(self.window_seconds)):
            raise bad("window_seconds", "a positive finite number")
        if self.minimum_calls < 1:
            raise bad("minimum_calls", ">= 1")
        if self.window_max_calls < self.minimum_calls:
            raise bad("window_max_calls", f">= minimum_calls ({self.minimum_calls})")
        if not (self.recovery_timeout >= 0 and math.isfinite(self.recovery_timeout)):
            raise bad("recovery_timeout", "a finite number >= 0")
        if not (self.backoff_factor >= 1 and math.isfinite(self.backoff_factor)):
            raise bad("backoff_factor", "a finite number >= 1")
        if not (self.max_recovery_timeout >= self.recovery_timeout and math.isfinite(self.max_recovery_timeout)):
            raise bad("max_recovery_timeout", f"finite and >= recovery_timeout ({self.recovery_timeout})")
        if self.half_open_max_probes < 1:
            raise bad("half_open_max_probes", ">= 1")
        if self.half_open_success_threshold < 1:
            raise bad("half_open_success_threshold", ">= 1")
        if self.probe_timeout is not None and not self.probe_timeout > 0:
            raise bad("probe_timeout", "> 0 or None")


@dataclass(frozen=True)
class Transition:
    """One change of state (or one operator action), with the moment and the reason."""

    from_state: CircuitState
    to_state: CircuitState
    at: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "from_state": self.from_state.value,
            "to_state": self.to_state.value,
            "at": self.at,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Decision:
    """The answer to "may I call now?". ``retry_at`` is when asking again can help (None: unknown)."""

    allowed: bool
    is_probe: bool
    reason: str
    retry_at: float | None = None


@dataclass(frozen=True)
class BreakerState:
    """An immutable snapshot of one breaker, as stored. Read it through :func:`current`."""

    state: CircuitState = CircuitState.CLOSED
    since: float = 0.0
    consecutive_failures: int = 0
    #: Recent counted outcomes, oldest first: (epoch seconds, ok).
    window: tuple[tuple[float, bool], ...] = ()
    half_open_probes_in_flight: int = 0
    half_open_successes: int = 0
    #: When the latest probe was granted (for ``probe_timeout``).
    probe_started_at: float | None = None
    #: Opens since the breaker last closed; drives the backoff of the recovery timeout.
    open_count: int = 0
    #: The recovery timeout of the current open period; 0 when it has not opened since it last closed.
    current_timeout: float = 0.0
    reason: str = "new breaker"
    forced_by: str | None = None
    forced_reason: str | None = None
    successes: int = 0
    failures: int = 0
    permanent_failures: int = 0
    last_error_class: ErrorClass | None = None

    @property
    def retry_at(self) -> float | None:
        """When an OPEN breaker turns HALF_OPEN; None in every other state."""
        return self.since + self.current_timeout if self.state is CircuitState.OPEN else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["v"] = STATE_FORMAT_VERSION
        d["state"] = self.state.value
        d["window"] = [[t, ok] for t, ok in self.window]
        d["last_error_class"] = self.last_error_class.value if self.last_error_class else None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "breaker state") -> BreakerState:
        """Rebuild a snapshot from :meth:`to_dict`; malformed input raises ``DataValidationError``."""
        try:
            if data.get("v", STATE_FORMAT_VERSION) != STATE_FORMAT_VERSION:
                raise ValueError(f"unsupported state format version {data.get('v')!r}")
            last = data.get("last_error_class")
            started = data.get("probe_started_at")
            state = cls(
                state=CircuitState(data["state"]),
                since=float(data["since"]),
                consecutive_failures=int(data.get("consecutive_failures", 0)),
                window=tuple((float(t), bool(ok)) for t, ok in data.get("window", ())),
                half_open_probes_in_flight=int(data.get("half_open_probes_in_flight", 0)),
                half_open_successes=int(data.get("half_open_successes", 0)),
                probe_started_at=None if started is None else float(started),
                open_count=int(data.get("open_count", 0)),
                current_timeout=float(data.get("current_timeout", 0.0)),
                reason=str(data.get("reason", "")),
                forced_by=data.get("forced_by"),
                forced_reason=data.get("forced_reason"),
                successes=int(data.get("successes", 0)),
                failures=int(data.get("failures", 0)),
                permanent_failures=int(data.get("permanent_failures", 0)),
                last_error_class=None if last is None else ErrorClass(last),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataValidationError(f"malformed breaker state: {exc!r}", where=where) from exc
        counters = (
            state.consecutive_failures,
            state.half_open_probes_in_flight,
            state.half_open_successes,
            state.open_count,
            state.successes,
            state.failures,
            state.permanent_failures,
        )
        if min(counters) < 0 or state.current_timeout < 0:
            raise DataValidationError("malformed breaker state: negative counter", where=where)
        return state


def initial_state(now: float) -> BreakerState:
    """A fresh CLOSED breaker."""
    return BreakerState(since=now, reason="new breaker")


Result = tuple[BreakerState, list[Transition]]


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def _move(state: BreakerState, to: CircuitState, at: float, reason: str, **changes: Any) -> Result:
    new = replace(state, state=to, since=at, reason=reason, **changes)
    return new, [Transition(state.state, to, at, reason)]


def _closed_fields() -> dict[str, Any]:
    """Everything a closed breaker starts from: no streak, an empty window, the base timeout."""
    return dict(
        consecutive_failures=0,
        window=(),
        half_open_probes_in_flight=0,
        half_open_successes=0,
        probe_started_at=None,
        open_count=0,
        current_timeout=0.0,
        forced_by=None,
        forced_reason=None,
    )


def _open(state: BreakerState, cfg: BreakerConfig, now: float, reason: str) -> Result:
    open_count = state.open_count + 1
    if open_count == 1 or state.current_timeout <= 0:
        timeout = cfg.recovery_timeout
    else:
        timeout = min(state.current_timeout * cfg.backoff_factor, cfg.max_recovery_timeout)
    reason = f"{reason}; retry in {_fmt_seconds(timeout)}"
    return _move(
        state,
        CircuitState.OPEN,
        now,
        reason,
        open_count=open_count,
        current_timeout=timeout,
        half_open_probes_in_flight=0,
        half_open_successes=0,
        probe_started_at=None,
    )


def current(state: BreakerState, cfg: BreakerConfig, now: float) -> Result:
    """The state as of ``now``: OPEN past its timeout reads HALF_OPEN; lost probes free their slot."""
    if state.state is CircuitState.OPEN and now >= state.since + state.current_timeout:
        at = state.since + state.current_timeout
        reason = f"recovery timeout of {_fmt_seconds(state.current_timeout)} elapsed; probing"
        return _move(
            state,
            CircuitState.HALF_OPEN,
            at,
            reason,
            half_open_probes_in_flight=0,
            half_open_successes=0,
            probe_started_at=None,
        )
    if (
        state.state is CircuitState.HALF_OPEN
        and state.half_open_probes_in_flight > 0
        and cfg.probe_timeout is not None
        and state.probe_started_at is not None
        and now >= state.probe_started_at + cfg.probe_timeout
    ):
        lost = state.half_open_probes_in_flight
        reason = f"{lost} probe(s) reported nothing within {_fmt_seconds(cfg.probe_timeout)}; slot(s) freed"
        return replace(state, half_open_probes_in_flight=0, probe_started_at=None, reason=reason), []
    return state, []


def _prune(window: tuple[tuple[float, bool], ...], cfg: BreakerConfig, now: float) -> tuple[tuple[float, bool], ...]:
    horizon = now - cfg.window_seconds
    kept = tuple(entry for entry in window if entry[0] > horizon)
    return kept[-cfg.window_max_calls :]


def record_success(state: BreakerState, cfg: BreakerConfig, now: float) -> Result:
    """A call succeeded."""
    state, transitions = current(state, cfg, now)
    state = replace(state, successes=state.successes + 1)
    if state.state is CircuitState.CLOSED:
        window = _prune(state.window + ((now, True),), cfg, now)
        return replace(state, consecutive_failures=0, window=window), transitions
    if state.state is CircuitState.HALF_OPEN:
        successes = state.half_open_successes + 1
        in_flight = max(0, state.half_open_probes_in_flight - 1)
        if successes >= cfg.half_open_success_threshold:
            reason = f"{successes} probe success(es) in half-open; closing"
            new, moved = _move(state, CircuitState.CLOSED, now, reason, **_closed_fields())
            return new, transitions + moved
        return replace(state, half_open_successes=successes, half_open_probes_in_flight=in_flight), transitions
    # OPEN (a late answer to a call made before it tripped), FORCED_OPEN, DISABLED: no change.
    return state, transitions


def record_failure(
    state: BreakerState, cfg: BreakerConfig, now: float, error_class: ErrorClass, detail: str = ""
) -> Result:
    """A call failed with a classified error. ``detail`` (e.g. the error's message) goes into reasons."""
    error_class = ErrorClass(error_class)
    state, transitions = current(state, cfg, now)
    what = f"{error_class.value}" + (f": {detail}" if detail else "")
    if error_class not in COUNTED_CLASSES:
        state = replace(state, permanent_failures=state.permanent_failures + 1, last_error_class=error_class)
        if state.state is CircuitState.HALF_OPEN:
            # The probe got an answer that says nothing about an outage: free its slot, decide nothing.
            state = replace(state, half_open_probes_in_flight=max(0, state.half_open_probes_in_flight - 1))
        return state, transitions

    state = replace(state, failures=state.failures + 1, last_error_class=error_class)
    if state.state is CircuitState.CLOSED:
        streak = state.consecutive_failures + 1
        window = _prune(state.window + ((now, False),), cfg, now)
        state = replace(state, consecutive_failures=streak, window=window)
        if streak >= cfg.failure_threshold:
            new, moved = _open(state, cfg, now, f"{streak} consecutive failures (last {what})")
            return new, transitions + moved
        if cfg.failure_rate_threshold is not None and len(window) >= cfg.minimum_calls:
            failed = sum(1 for _, ok in window if not ok)
            rate = failed / len(window)
            if rate >= cfg.failure_rate_threshold:
                reason = (
                    f"failure rate {rate:.0%} ({failed} of {len(window)} calls in the last "
                    f"{_fmt_seconds(cfg.window_seconds)}) >= {cfg.failure_rate_threshold:.0%} (last {what})"
                )
                new, moved = _open(state, cfg, now, reason)
                return new, transitions + moved
        return state, transitions
    if state.state is CircuitState.HALF_OPEN:
        new, moved = _open(state, cfg, now, f"probe failed ({what}); reopening")
        return new, transitions + moved
    return state, transitions


def allow_request(
    state: BreakerState, cfg: BreakerConfig, now: float
) -> tuple[Decision, BreakerState, list[Transition]]:
    """May a call go through now? A granted half-open probe occupies a probe slot in the new state.

    Returns ``(decision, new_state, transitions)``; persist ``new_state`` whenever a probe was granted.
    """
    state, transitions = current(state, cfg, now)
    s = state.state
    if s is CircuitState.CLOSED:
        return Decision(True, False, "closed"), state, transitions
    if s is CircuitState.DISABLED:
        why = f"breaker disabled by {state.forced_by}: {state.forced_reason}"
        return Decision(True, False, why), state, transitions
    if s is CircuitState.FORCED_OPEN:
        why = f"forced open by {state.forced_by}: {state.forced_reason}"
        return Decision(False, False, why), state, transitions
    if s is CircuitState.OPEN:
        return Decision(False, False, f"open: {state.reason}", state.retry_at), state, transitions
    # HALF_OPEN
    if state.half_open_probes_in_flight < cfg.half_open_max_probes:
        new = replace(state, half_open_probes_in_flight=state.half_open_probes_in_flight + 1, probe_started_at=now)
        return Decision(True, True, "half-open: probe granted"), new, transitions
    retry_at = None
    if cfg.probe_timeout is not None and state.probe_started_at is not None:
        retry_at = state.probe_started_at + cfg.probe_timeout
    why = f"half-open: {state.half_open_probes_in_flight} probe(s) already in flight"
    return Decision(False, False, why, retry_at), state, transitions


def force_open(state: BreakerState, by: str, reason: str, now: float) -> Result:
    """Hold the breaker open until :func:`reset`; outcomes are ignored meanwhile."""
    why = f"forced open by {by}: {reason}"
    return _move(
        state,
        CircuitState.FORCED_OPEN,
        now,
        why,
        forced_by=by,
        forced_reason=reason,
        half_open_probes_in_flight=0,
        half_open_successes=0,
        probe_started_at=None,
    )


def disable(state: BreakerState, by: str, reason: str, now: float) -> Result:
    """Switch the breaker off: every call is allowed and it never trips, until :func:`reset`."""
    why = f"disabled by {by}: {reason}"
    return _move(
        state,
        CircuitState.DISABLED,
        now,
        why,
        forced_by=by,
        forced_reason=reason,
        half_open_probes_in_flight=0,
        half_open_successes=0,
        probe_started_at=None,
    )


def reset(state: BreakerState, by: str, reason: str, now: float) -> Result:
    """Back to a fresh CLOSED breaker (totals are kept). Always logged, even from CLOSED."""
    return _move(state, CircuitState.CLOSED, now, f"reset by {by}: {reason}", **_closed_fields())


__all__ = [
    "COUNTED_CLASSES",
    "BreakerConfig",
    "BreakerConfigError",
    "BreakerState",
    "CircuitState",
    "Decision",
    "Transition",
    "allow_request",
    "current",
    "disable",
    "force_open",
    "initial_state",
    "record_failure",
    "record_success",
    "reset",
]
