"""Health checks as pure functions: each turns facts gathered elsewhere into healthy / warning / critical.

The Dagster side (``monitoring/readers.py``) reads the instance, the platform database and the sources;
the judgement lives here, with the clock passed in, so every rule is unit-testable. The overall status is
the worst of the checks, and its reasons are the messages of the checks that are not healthy.
This module does not import Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import IntEnum

from alphapulse_assets.monitoring.thresholds import DEFAULT_RULES, Level, ThresholdRule
from alphapulse_assets.recovery.errors import Severity


class Status(IntEnum):
    HEALTHY = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def severity(self) -> Severity:
        return {Status.HEALTHY: Severity.INFO, Status.WARNING: Severity.WARNING, Status.CRITICAL: Severity.CRITICAL}[
            self
        ]


@dataclass(frozen=True)
class CheckResult:
    """One health check. ``name`` is stable (it keys the check's alert, ``health:<name>``)."""

    name: str
    status: Status
    reason: str
    value: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status.label
        return d


@dataclass(frozen=True)
class HealthReport:
    status: Status
    checks: tuple[CheckResult, ...]
    at: float
    reasons: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {
            "status": self.status.label,
            "at": self.at,
            "reasons": list(self.reasons),
            "checks": [c.to_dict() for c in self.checks],
        }


def overall(checks: Sequence[CheckResult], at: float) -> HealthReport:
    status = max((c.status for c in checks), default=Status.HEALTHY)
    # Critical reasons first: they are what an operator must read.
    bad = sorted((c for c in checks if c.status is not Status.HEALTHY), key=lambda c: -c.status)
    return HealthReport(status, tuple(checks), at, tuple(f"{c.name}: {c.reason}" for c in bad))


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def disk_check(
    mount: str,
    percent_used: float | None,
    free_bytes: float | None,
    rule: ThresholdRule = DEFAULT_RULES["disk_percent"],
) -> CheckResult:
    name = f"disk {mount}"
    if percent_used is None:
        return CheckResult(name, Status.CRITICAL, f"cannot read disk usage of {mount}")
    level = rule.level_of(percent_used)
    free = f", {_gb(free_bytes)} free" if free_bytes is not None else ""
    status = {Level.OK: Status.HEALTHY, Level.WARNING: Status.WARNING, Level.CRITICAL: Status.CRITICAL}[level]
    text = f"{percent_used:.1f}% used{free}"
    if status is not Status.HEALTHY:
        text += f" (warning at {rule.warning:g}%, critical at {rule.critical:g}%)"
    return CheckResult(name, status, text, percent_used)


def sustained_level(
    rule: ThresholdRule, samples: Sequence[tuple[float, float | None]], now: float, max_gap: float
) -> Level:
    """The level ``rule`` holds at ``now``: the lowest level of the samples of the last ``for_seconds``,
    provided they reach back that far and the newest is at most ``max_gap`` old (else OK: a spike that
    ended, or samples too old or too sparse to show anything sustained, say nothing about now)."""
    values = sorted((at, v) for at, v in samples if v is not None and at <= now)
    start = now - rule.for_seconds
    window = [(at, v) for at, v in values if at >= start] or values[-1:]
    if not window or now - window[-1][0] > max_gap or window[0][0] > start + max_gap:
        return Level.OK
    return min(rule.level_of(v) for _at, v in window)


RESOURCE_METRICS = ("cpu_percent", "memory_percent")


def resources_check(
    series: Mapping[str, Sequence[tuple[float, float | None]]],
    now: float,
    max_gap: float,
    rules: Mapping[str, ThresholdRule] = DEFAULT_RULES,
) -> CheckResult:
    """CPU and memory from the stored samples (``series[metric]`` = [(at, value)]), judged as sustained:
    CPU critical only after ``for_seconds`` (15 min) at or above 90 %, and back to healthy as soon as it
    is not (no open alert from a past spike keeps the platform critical)."""
    worst, parts = Status.HEALTHY, []
    for metric in RESOURCE_METRICS:
        rule, points = rules[metric], [p for p in series.get(metric, ()) if p[1] is not None]
        if not points or now - max(at for at, _v in points) > max_gap:
            continue
        latest = max(points)[1]
        level = sustained_level(rule, points, now, max_gap)
        status = {Level.OK: Status.HEALTHY, Level.WARNING: Status.WARNING, Level.CRITICAL: Status.CRITICAL}[level]
        text = f"{metric.removesuffix('_percent')} {latest:.1f}%"
        if status is not Status.HEALTHY:
            text += (
                f", at or above {rule.threshold_for(level):g}% for {rule.for_seconds / 60:g} min ({level.name.lower()})"
            )
        worst = max(worst, status)
        parts.append(text)
    if not parts:
        return CheckResult("resources", Status.HEALTHY, "no recent sample (resource_metrics_sensor not running)")
    return CheckResult("resources", worst, ", ".join(parts))


def heartbeat_check(
    heartbeats: Mapping[str, float], required: Sequence[str], now: float, max_age: float
) -> CheckResult:
    """Daemon heartbeats: none at all is a warning (the daemon never ran here: schedules and sensors are
    off, which is normal for a laptop demo); a required daemon whose heartbeat is stale or missing while
    others beat is critical (it died or hangs)."""
    if not heartbeats:
        return CheckResult(
            "daemon",
            Status.WARNING,
            "no daemon heartbeat on this instance: schedules and sensors are not running (start dagster-daemon)",
        )
    stale = []
    for daemon in required:
        at = heartbeats.get(daemon)
        if at is None:
            stale.append(f"{daemon} (never)")
        elif now - at > max_age:
            stale.append(f"{daemon} ({now - at:.0f} s ago)")
    newest = max(heartbeats.values())
    if stale:
        return CheckResult(
            "daemon", Status.CRITICAL, f"stale heartbeats, limit {max_age:g} s: {', '.join(stale)}", now - newest
        )
    return CheckResult(
        "daemon", Status.HEALTHY, f"{len(heartbeats)} daemons beating, newest {now - newest:.0f} s ago", now - newest
    )


def freshness_grace(cron: str, budget_seconds: float, slack_seconds: float) -> float:
    """How long after a partition ends its run should have finished: the schedule's time of day (cron
    minute and hour, counted from midnight, when they are plain numbers) plus the budget plus slack."""
    parts = cron.split()
    offset = 24 * 3600.0  # an unusual cron: allow a day
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        offset = int(parts[1]) * 3600.0 + int(parts[0]) * 60.0
    return offset + float(budget_seconds) + float(slack_seconds)


def freshness_check(cadence: str, expected_key: str | None, behind: Mapping[str, int | None]) -> CheckResult:
    """``behind[symbol]``: partitions between the symbol's newest model and ``expected_key`` (0 = fresh,
    None = never trained). One partition late is a warning, two or more critical."""
    name = f"freshness {cadence}"
    if expected_key is None:
        return CheckResult(name, Status.HEALTHY, "no partition due yet")
    never = sorted(s for s, b in behind.items() if b is None)
    late = {s: b for s, b in behind.items() if b}
    worst = max(late.values(), default=0)
    if never and len(never) == len(behind):
        return CheckResult(name, Status.WARNING, f"never trained (partition {expected_key} is due)")
    parts = []
    if late:
        parts.append(", ".join(f"{s} {b} partition{'s' if b > 1 else ''} behind" for s, b in sorted(late.items())))
    if never:
        parts.append(f"never trained: {', '.join(never)}")
    if not parts:
        return CheckResult(name, Status.HEALTHY, f"partition {expected_key} done for {len(behind)} symbols", 0)
    status = Status.CRITICAL if worst >= 2 else Status.WARNING
    return CheckResult(name, status, f"expected {expected_key}; " + "; ".join(parts), float(worst))


def sources_check(results: Mapping[str, str | None]) -> CheckResult:
    """``results[source]`` is None when reachable, else the error. All down is critical (no data can come
    in); some down is a warning, since the fallback chain serves from the others."""
    if not results:
        return CheckResult("sources", Status.CRITICAL, "no market-data source configured")
    down = {k: v for k, v in results.items() if v}
    if not down:
        return CheckResult("sources", Status.HEALTHY, f"reachable: {', '.join(results)}", 0)
    text = "; ".join(f"{k}: {v}" for k, v in down.items())
    status = Status.CRITICAL if len(down) == len(results) else Status.WARNING
    return CheckResult("sources", status, f"unreachable {text}", float(len(down)))


def breakers_check(states: Mapping[str, str], reasons: Mapping[str, str] | None = None) -> CheckResult:
    """An open breaker blocks its work: critical. Half-open (probing) or disabled: a warning."""
    reasons = reasons or {}
    opened = sorted(n for n, s in states.items() if s in ("open", "forced_open"))
    other = sorted(n for n, s in states.items() if s not in ("open", "closed"))
    if opened:
        text = "; ".join(f"{n} {states[n]} ({reasons.get(n, '')})".replace(" ()", "") for n in opened)
        return CheckResult("breakers", Status.CRITICAL, text, float(len(opened)))
    if other:
        return CheckResult("breakers", Status.WARNING, ", ".join(f"{n} {states[n]}" for n in other), 0)
    return CheckResult("breakers", Status.HEALTHY, f"{len(states)} closed", 0)


def alerts_check(open_severities: Mapping[str, str]) -> CheckResult:
    """Open alerts raised elsewhere (failed checks, run failures): critical ones make health critical,
    errors a warning. Health's own alerts are not counted (they mirror the checks above)."""
    crit = sorted(k for k, s in open_severities.items() if s == Severity.CRITICAL.value)
    err = sorted(k for k, s in open_severities.items() if s == Severity.ERROR.value)
    if crit:
        return CheckResult(
            "alerts", Status.CRITICAL, f"{len(crit)} critical open: {', '.join(crit[:5])}", float(len(crit))
        )
    if err:
        return CheckResult("alerts", Status.WARNING, f"{len(err)} error open: {', '.join(err[:5])}", float(len(err)))
    return CheckResult("alerts", Status.HEALTHY, f"{len(open_severities)} open, none error or critical", 0)


__all__ = [
    "CheckResult",
    "HealthReport",
    "Status",
    "alerts_check",
    "breakers_check",
    "disk_check",
    "freshness_check",
    "freshness_grace",
    "heartbeat_check",
    "overall",
    "resources_check",
    "sources_check",
    "sustained_level",
]
