"""Escalation: ``threshold`` critical errors within a sliding window raise ONE escalated alert.

The alert is raised when the count of critical errors in the window first reaches the threshold, is not
raised again while errors keep coming (the condition holds), and resolves when the window clears, i.e.
no critical error is left in it. Resolving only on an empty window (not as soon as the count dips below
the threshold) keeps a burst hovering around the threshold from flapping raise/resolve/raise.

Pure: the state is a small immutable value (the sensor keeps it in its cursor), ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from alphapulse_assets.recovery.config import EscalationConfig
from alphapulse_assets.recovery.errors import DataValidationError

#: More timestamps than this are never needed to answer "how many in the window" for a sane threshold.
MAX_KEPT = 1000

Action = Literal["raise", "resolve"] | None


@dataclass(frozen=True)
class EscalationState:
    times: tuple[float, ...] = ()
    escalated: bool = False
    since: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"times": list(self.times), "escalated": self.escalated, "since": self.since}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EscalationState:
        if not data:
            return cls()
        try:
            since = data.get("since")
            return cls(
                tuple(float(t) for t in data.get("times", ())),
                bool(data.get("escalated", False)),
                None if since is None else float(since),
            )
        except (TypeError, ValueError) as exc:
            raise DataValidationError(f"malformed escalation state: {exc!r}", where="EscalationState") from exc


@dataclass(frozen=True)
class EscalationStep:
    state: EscalationState
    action: Action
    count: int
    message: str


def observe(
    state: EscalationState, cfg: EscalationConfig, now: float, new_errors: Iterable[float] = ()
) -> EscalationStep:
    """Add the critical errors seen since the last call (their times) and decide what to do at ``now``."""
    horizon = now - cfg.window_seconds
    times = sorted(t for t in (*state.times, *new_errors) if t > horizon)[-MAX_KEPT:]
    count = len(times)
    window = f"{cfg.window_seconds:g}s"
    if not state.escalated and count >= cfg.threshold:
        msg = f"{count} critical errors within {window} (threshold {cfg.threshold})"
        return EscalationStep(EscalationState(tuple(times), True, now), "raise", count, msg)
    if state.escalated and count == 0:
        msg = f"no critical error in the last {window}; escalation resolved"
        return EscalationStep(EscalationState((), False, None), "resolve", 0, msg)
    msg = (
        f"escalated since {state.since:g}: {count} critical error(s) in the window"
        if state.escalated
        else f"{count} critical error(s) within {window} (escalates at {cfg.threshold})"
    )
    return EscalationStep(EscalationState(tuple(times), state.escalated, state.since), None, count, msg)


__all__ = ["EscalationState", "EscalationStep", "observe"]
