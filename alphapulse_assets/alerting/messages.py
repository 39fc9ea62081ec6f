"""The alert value types the router, its channels and the alerting sensors share.

``Alert`` is one problem, ``Notification`` is what a channel sends (one alert or a group). This module
does not import Dagster, the router or the channels, so every layer above can build alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal, Protocol

from alphapulse_assets.alerting.alert_store import OpenAlert
from alphapulse_assets.recovery.errors import DataValidationError, Severity

SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}
GROUP_LABEL = "group"


class ThresholdEvent(Protocol):
    """What ``Alert.from_event`` reads from a threshold event (``monitoring.thresholds.AlertEvent``)."""

    metric: str
    title: str
    value: float
    threshold: float
    at: float
    status: Literal["firing", "resolved"]

    @property
    def severity(self) -> Severity: ...


def parse_severity(value: Severity | str, *, where: str) -> Severity:
    if isinstance(value, Severity):
        return value
    try:
        return Severity(str(value).strip().lower())
    except ValueError:
        names = ", ".join(s.value for s in Severity)
        raise DataValidationError(f"unknown severity {value!r}; expected one of {names}", where=where) from None


def iso_utc(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Alert:
    """One alert. ``key`` identifies the problem (de-duplication, resolution); ``at`` is epoch seconds
    (``None``: the router's clock at the time it is raised)."""

    key: str
    severity: Severity
    title: str
    body: str = ""
    source: str = "alphapulse"
    labels: dict[str, str] = field(default_factory=dict)
    at: float | None = None
    status: Literal["firing", "resolved"] = "firing"

    def __post_init__(self) -> None:
        where = f"Alert({self.key!r})"
        if not self.key or not isinstance(self.key, str):
            raise DataValidationError("an alert needs a non-empty string key", where="Alert")
        object.__setattr__(self, "severity", parse_severity(self.severity, where=where))
        if self.status not in ("firing", "resolved"):
            raise DataValidationError(f"status must be 'firing' or 'resolved', not {self.status!r}", where=where)
        object.__setattr__(self, "labels", {str(k): str(v) for k, v in (self.labels or {}).items()})

    @property
    def group(self) -> str | None:
        return self.labels.get(GROUP_LABEL) or None

    @classmethod
    def from_event(
        cls,
        event: ThresholdEvent,
        *,
        key: str | None = None,
        labels: dict[str, str] | None = None,
        source: str = "thresholds",
        body: str | None = None,
    ) -> Alert:
        """The alert for a threshold event; the key defaults to ``threshold:<metric>``."""
        return cls(
            key=key or f"threshold:{event.metric}",
            severity=event.severity,
            title=event.title,
            body=body if body is not None else f"{event.metric} = {event.value:g} (threshold {event.threshold:g})",
            source=source,
            labels=dict(labels or {}),
            at=event.at,
            status=event.status,
        )

    @classmethod
    def from_open(cls, row: OpenAlert) -> Alert:
        return cls(row.key, row.severity, row.title, row.body, row.source, dict(row.labels), row.last_at)


@dataclass(frozen=True)
class Notification:
    """What a channel sends: one alert, or a group of alerts raised together."""

    alerts: tuple[Alert, ...]
    group: str | None = None

    @property
    def severity(self) -> Severity:
        return max((a.severity for a in self.alerts), key=SEVERITY_RANK.__getitem__)

    @property
    def status(self) -> Literal["firing", "resolved"]:
        return "resolved" if all(a.status == "resolved" for a in self.alerts) else "firing"

    @property
    def key(self) -> str:
        return self.alerts[0].key if len(self.alerts) == 1 else f"group:{self.group}"

    @property
    def at(self) -> float:
        return max(a.at or 0.0 for a in self.alerts)

    @property
    def common_labels(self) -> dict[str, str]:
        first = self.alerts[0].labels
        return {k: v for k, v in first.items() if all(a.labels.get(k) == v for a in self.alerts[1:])}

    @property
    def title(self) -> str:
        if len(self.alerts) == 1:
            return self.alerts[0].title
        firing = sum(a.status == "firing" for a in self.alerts)
        parts = [f"{firing} firing"] if firing else []
        if len(self.alerts) - firing:
            parts.append(f"{len(self.alerts) - firing} resolved")
        return f"{len(self.alerts)} alerts in group {self.group}: {', '.join(parts)}"

    @property
    def subject(self) -> str:
        tag = "RESOLVED" if self.status == "resolved" else self.severity.value.upper()
        return f"[{tag}] {self.title}"

    def body_text(self) -> str:
        """Plain text for email and logs: each alert's status, severity, title, body, source and time."""
        blocks = []
        for a in self.alerts:
            head = f"[{'RESOLVED' if a.status == 'resolved' else a.severity.value.upper()}] {a.title}"
            lines = [head]
            if a.body:
                lines.append(a.body)
            labels = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()))
            lines.append(
                f"key: {a.key} | source: {a.source} | at: {iso_utc(a.at or 0.0)}" + (f" | {labels}" if labels else "")
            )
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)
