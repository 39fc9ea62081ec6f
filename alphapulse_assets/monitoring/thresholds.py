"""Threshold rules: turn a stream of metric samples into alert events, once per level change.

A rule has a warning and a critical threshold and a hold time ``for_seconds``. Each threshold is a
boolean signal ("value is at or beyond the threshold") that is debounced on its own: the signal must
keep its new value for ``for_seconds`` (rising) or ``clear_seconds`` (falling, default ``for_seconds``)
before the announced level follows it. So

- a single spike does not alert (the signal falls back before the hold time is up),
- a value flapping around a threshold faster than the hold time never changes the announced level,
  so it neither fires twice nor resolves in between,
- a firing rule resolves only after the value has stayed below the warning threshold for
  ``clear_seconds`` (time hysteresis).

``evaluate`` is pure: the caller keeps the ``RuleState`` (a sensor stores ``RuleState.to_dict()`` in its
cursor, since sensors run in fresh processes) and passes the sample time, so tests use a fake clock.
This module does not import Dagster.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from enum import IntEnum
from typing import Literal

from alphapulse_assets.recovery.errors import DataValidationError, Severity


class Level(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def severity(self) -> Severity:
        return {Level.OK: Severity.INFO, Level.WARNING: Severity.WARNING, Level.CRITICAL: Severity.CRITICAL}[self]


@dataclass(frozen=True)
class ThresholdRule:
    """Warning/critical thresholds on one metric. ``direction="below"`` alerts on low values instead."""

    metric: str
    warning: float
    critical: float
    for_seconds: float = 0.0
    direction: Literal["above", "below"] = "above"
    clear_seconds: float | None = None
    unit: str = ""

    def __post_init__(self) -> None:
        where = f"ThresholdRule({self.metric!r})"
        if self.direction not in ("above", "below"):
            raise DataValidationError(f"direction must be 'above' or 'below', not {self.direction!r}", where=where)
        if not (math.isfinite(self.warning) and math.isfinite(self.critical)):
            raise DataValidationError("thresholds must be finite numbers", where=where)
        ordered = self.warning <= self.critical if self.direction == "above" else self.warning >= self.critical
        if not ordered:
            relation = "<=" if self.direction == "above" else ">="
            raise DataValidationError(
                f"warning {self.warning} must be {relation} critical {self.critical} for direction {self.direction!r}",
                where=where,
            )
        if self.for_seconds < 0 or (self.clear_seconds is not None and self.clear_seconds < 0):
            raise DataValidationError("hold times must not be negative", where=where)

    @property
    def hold_clear(self) -> float:
        return self.for_seconds if self.clear_seconds is None else self.clear_seconds

    def breaches(self, value: float, threshold: float) -> bool:
        return value >= threshold if self.direction == "above" else value <= threshold

    def level_of(self, value: float) -> Level:
        """The level a single sample is at, before any debouncing."""
        if self.breaches(value, self.critical):
            return Level.CRITICAL
        if self.breaches(value, self.warning):
            return Level.WARNING
        return Level.OK

    def threshold_for(self, level: Level) -> float:
        return self.critical if level is Level.CRITICAL else self.warning


# Resource metrics are sampled every 30 s: two minutes (four samples) over a threshold before alerting.
# Failure rate is already a 24 h aggregate and a run's duration only grows, so those fire at once.
RESOURCE_HOLD_SECONDS = 120.0
# A busy CPU is what training is for: a 2-core machine fitting models sits near 100 % for minutes on end.
# It alerts only when sustained for 15 minutes, and clears after two minutes below the warning line.
CPU_HOLD_SECONDS = 900.0

DEFAULT_RULES: dict[str, ThresholdRule] = {
    rule.metric: rule
    for rule in (
        ThresholdRule("cpu_percent", 80.0, 90.0, CPU_HOLD_SECONDS, clear_seconds=RESOURCE_HOLD_SECONDS, unit="%"),
        ThresholdRule("memory_percent", 85.0, 95.0, RESOURCE_HOLD_SECONDS, unit="%"),
        ThresholdRule("disk_percent", 85.0, 95.0, RESOURCE_HOLD_SECONDS, unit="%"),
        ThresholdRule("pipeline_failure_rate_percent", 10.0, 20.0, 0.0, unit="%"),
        ThresholdRule("run_duration_seconds", 1800.0, 3600.0, 0.0, unit="s"),
    )
}


@dataclass(frozen=True)
class RuleState:
    """What ``evaluate`` remembers between samples. JSON-safe through ``to_dict`` / ``from_dict``."""

    level: Level = Level.OK  # the level last announced
    # Raw (undebounced) state of each threshold signal and when it last changed.
    warning_breached: bool = False
    warning_since: float | None = None
    critical_breached: bool = False
    critical_since: float | None = None
    last_at: float | None = None
    last_value: float | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["level"] = int(self.level)
        return data

    @classmethod
    def from_dict(cls, data: dict | None) -> RuleState:
        if not data:
            return cls()
        data = dict(data)
        data["level"] = Level(int(data.get("level", 0)))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class AlertEvent:
    """A level change of one rule: ``firing`` at warning/critical, or ``resolved`` back to OK."""

    metric: str
    status: Literal["firing", "resolved"]
    level: Level
    previous_level: Level
    value: float
    threshold: float
    at: float
    title: str

    @property
    def severity(self) -> Severity:
        # A resolve carries the severity it resolves, so routers send it where the firing one went.
        return (self.previous_level if self.status == "resolved" else self.level).severity


def _fmt(value: float, unit: str) -> str:
    return f"{value:g}{unit}" if unit in ("%", "") else f"{value:g} {unit}"


def _signal(breached_now: bool, was: bool, since: float | None, now: float) -> tuple[bool, float]:
    """The raw signal and the time it took its current value."""
    if since is None or breached_now != was:
        return breached_now, now
    return was, since


def evaluate(
    rule: ThresholdRule, state: RuleState, value: float | None, now: float
) -> tuple[RuleState, list[AlertEvent]]:
    """Feed one sample taken at ``now`` (epoch seconds); return the new state and 0 or 1 events.

    A missing sample (``None`` or NaN, e.g. the sampler could not read a metric) and a sample older than
    the last one change nothing: they are neither evidence of recovery nor of trouble.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return state, []
    if state.last_at is not None and now < state.last_at:
        return state, []
    value = float(value)

    warn, warn_since = _signal(rule.breaches(value, rule.warning), state.warning_breached, state.warning_since, now)
    crit, crit_since = _signal(rule.breaches(value, rule.critical), state.critical_breached, state.critical_since, now)

    def debounced(raw: bool, since: float, announced: bool) -> bool:
        hold = rule.for_seconds if raw else rule.hold_clear
        return raw if now - since >= hold else announced

    stable_warn = debounced(warn, warn_since, state.level >= Level.WARNING)
    stable_crit = debounced(crit, crit_since, state.level >= Level.CRITICAL)
    level = Level.CRITICAL if stable_crit else Level.WARNING if stable_warn else Level.OK

    new_state = replace(
        state,
        level=level,
        warning_breached=warn,
        warning_since=warn_since,
        critical_breached=crit,
        critical_since=crit_since,
        last_at=now,
        last_value=value,
    )
    if level == state.level:
        return new_state, []

    side = "above" if rule.direction == "above" else "below"
    if level is Level.OK:
        threshold = rule.warning
        title = (
            f"{rule.metric} resolved: back {'below' if side == 'above' else 'above'} warning "
            f"{_fmt(rule.warning, rule.unit)} for {rule.hold_clear:g} s (now {_fmt(value, rule.unit)})"
        )
        status: Literal["firing", "resolved"] = "resolved"
    else:
        threshold = rule.threshold_for(level)
        change = "" if state.level is Level.OK else (" (escalated)" if level > state.level else " (de-escalated)")
        title = (
            f"{rule.metric} {_fmt(value, rule.unit)} is {side} {level.name.lower()} threshold "
            f"{_fmt(threshold, rule.unit)} for {rule.for_seconds:g} s{change}"
        )
        status = "firing"
    event = AlertEvent(
        metric=rule.metric,
        status=status,
        level=level,
        previous_level=state.level,
        value=value,
        threshold=threshold,
        at=now,
        title=title,
    )
    return new_state, [event]
