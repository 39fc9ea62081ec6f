"""Alerts and the router that decides which alert goes to which channel, once.

``AlertRouter`` gives operators one clear message per problem:

- **De-duplication**: a firing alert is sent to a channel once per ``repeat_interval`` (4 h) per key.
  The state lives in ``AlertStore`` (the platform database), so it survives fresh sensor processes, and
  a claim is one conditional statement, so concurrent processes do not both send.
- **Grouping**: alerts whose ``group`` label is set wait in a buffer and go out as one message per
  channel on ``flush()`` (a sensor flushes at the end of its tick; ``with router:`` flushes on exit).
  A group older than ``group_window`` is flushed by the next ``raise_alert``/``resolve`` so nothing waits
  forever. Alerts without a ``group`` label are sent at once.
- **Resolution**: ``resolve(key)`` sends a "resolved" notification once, and only to the channels that
  were sent the alert firing.
- **Inhibition**: an open critical alert suppresses lower-severity alerts that match it: same
  ``inhibit_key`` label, or same key once a trailing ``:<severity>`` segment is removed, or a key that
  extends the critical's key by ``:``-segments (``db`` inhibits ``db:latency``). When the critical
  resolves, alerts it held back that are still open are sent.
- **Minimum severity** per channel.
- **Isolation**: each channel sends in its own thread with a deadline; a channel that raises or hangs
  is recorded as a delivery failure (history and log) and the others are unaffected. Its claim is
  released so the next raise retries it.

Secrets (webhook URLs, SMTP password) are read by the channels from environment variables at send time;
every text the router logs or stores, and every title/body it sends, is scrubbed of the current secret
values of all its channels. This module does not import Dagster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Literal

from alphapulse_assets.alerting import alert_store as st
from alphapulse_assets.alerting.alert_store import AlertStore, OpenAlert
from alphapulse_assets.alerting.channels import (
    Channel,
    EmailChannel,
    JsonWebhookChannel,
    LogChannel,
    SlackWebhookChannel,
)
from alphapulse_assets.alerting.messages import (  # noqa: F401 (Alert, Notification, iso_utc: imported from here too)
    GROUP_LABEL,
    SEVERITY_RANK,
    Alert,
    Notification,
    iso_utc,
    parse_severity,
)
from alphapulse_assets.recovery.errors import PermanentError, Severity
from alphapulse_assets.settings import AlertSettings, env_name, load_settings

logger = logging.getLogger(__name__)

DEFAULT_REPEAT_INTERVAL = 4 * 3600.0
DEFAULT_GROUP_WINDOW = 60.0
INHIBIT_LABEL = "inhibit_key"


@dataclass(frozen=True)
class Outcome:
    """What happened to one alert on one channel (``channel`` is None for decisions about the alert)."""

    key: str
    channel: str | None
    result: Literal["sent", "resolve_sent", "failed", "deduplicated", "inhibited", "queued"]
    detail: str = ""


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def inhibition_key(alert: Alert | OpenAlert) -> str:
    """The ``inhibit_key`` label, else the key without a trailing ``:<severity>`` segment."""
    label = alert.labels.get(INHIBIT_LABEL)
    if label:
        return label
    head, sep, tail = alert.key.rpartition(":")
    return head if sep and tail.lower() in {s.value for s in Severity} else alert.key


def inhibits(critical: Alert | OpenAlert, other: Alert | OpenAlert) -> bool:
    if critical.severity is not Severity.CRITICAL or critical.key == other.key:
        return False
    if SEVERITY_RANK[other.severity] >= SEVERITY_RANK[Severity.CRITICAL]:
        return False
    ck, ok = inhibition_key(critical), inhibition_key(other)
    return ok == ck or ok.startswith(ck + ":")


@dataclass
class _Pending:
    alert: Alert
    queued_at: float


@dataclass
class _Job:
    channel: Channel
    notification: Notification
    claims: list[tuple[Alert, str]]  # (alert, claim token)
    error: BaseException | None = None
    done: bool = False


class AlertRouter:
    """Routes alerts to channels with de-duplication, grouping, inhibition and resolution."""

    def __init__(
        self,
        channels: Sequence[Channel],
        store: AlertStore,
        clock: Callable[[], float] = time.time,
        repeat_interval: float | timedelta = DEFAULT_REPEAT_INTERVAL,
        group_window: float | timedelta = DEFAULT_GROUP_WINDOW,
        deadline_grace: float = 1.0,
    ):
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise PermanentError(f"channel names must be unique, got {names}", where="AlertRouter")
        self.channels = list(channels)
        self.store = store
        self.clock = clock
        self.repeat_seconds = _seconds(repeat_interval)
        self.group_window = _seconds(group_window)
        # A channel gets its own timeout plus this grace before the router gives up waiting for it.
        self.deadline_grace = float(deadline_grace)
        self._buffer: list[_Pending] = []
        self._lock = threading.Lock()

    # -- public API ----------------------------------------------------------------------------------

    def raise_alert(self, alert: Alert) -> list[Outcome]:
        """Record a firing alert and send it (now, or on ``flush()`` if it has a ``group`` label).

        An alert with ``status="resolved"`` is the same as ``resolve(alert.key)``.
        """
        if alert.status == "resolved":
            return self.resolve(alert.key, at=alert.at)
        with self._lock:
            now = self.clock()
            alert = self._scrubbed(replace(alert, at=alert.at if alert.at is not None else now))
            outcomes = self._flush_expired(now)
            self.store.record(st.RAISED, alert.key, at=now, severity=alert.severity, status="firing", title=alert.title)
            self.store.upsert_open(
                key=alert.key,
                severity=alert.severity,
                title=alert.title,
                body=alert.body,
                source=alert.source,
                labels=alert.labels,
                at=alert.at,
            )
            return outcomes + self._enqueue(alert, now)

    def resolve(self, key: str, *, at: float | None = None) -> list[Outcome]:
        """Close an open alert and notify the channels that were sent it firing, once."""
        with self._lock:
            now = self.clock()
            outcomes = self._flush_expired(now)
            at = now if at is None else at
            # A firing alert still in the buffer was never sent: it simply disappears.
            self._buffer = [p for p in self._buffer if p.alert.key != key]
            closed = self.store.close_open(key)
            if closed is not None:
                self.store.record(
                    st.RESOLVED, key, at=now, severity=closed.severity, status="resolved", title=closed.title
                )
                resolved = replace(Alert.from_open(closed), at=at, status="resolved")
            else:
                # Not open (already closed, or never raised here): still retry resolves a channel missed.
                last = self.store.last_raised(key)
                severity = Severity(last.severity) if last is not None and last.severity else Severity.INFO
                title = last.title if last is not None and last.title else key
                resolved = Alert(key, severity, title, at=at, status="resolved")
            outcomes += self._enqueue(resolved, now)
            if closed is not None and closed.severity is Severity.CRITICAL:
                outcomes += self._release_inhibited(now)
            return outcomes

    def flush(self) -> list[Outcome]:
        """Send everything buffered: one message per group per channel."""
        with self._lock:
            items, self._buffer = self._buffer, []
            return self._deliver([p.alert for p in items])

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def __enter__(self) -> AlertRouter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.flush()

    def open_alerts(self) -> list[OpenAlert]:
        return self.store.open_alerts()

    # -- internals -----------------------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        found: list[str] = []
        for channel in self.channels:
            found.extend(channel.secrets())
        # Longest first, so a URL is replaced whole before its path is.
        return sorted({s for s in found if s}, key=len, reverse=True)

    def _redact(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def _scrubbed(self, alert: Alert) -> Alert:
        return replace(alert, title=self._redact(alert.title), body=self._redact(alert.body))

    def _enqueue(self, alert: Alert, now: float) -> list[Outcome]:
        if alert.group is None:
            return self._deliver([alert])
        if alert.status == "firing":  # the newest raise of a key replaces an unsent older one
            self._buffer = [p for p in self._buffer if not (p.alert.key == alert.key and p.alert.status == "firing")]
        self._buffer.append(_Pending(alert, now))
        return [Outcome(alert.key, None, "queued", f"group {alert.group}")]

    def _flush_expired(self, now: float) -> list[Outcome]:
        first_seen: dict[str, float] = {}
        for p in self._buffer:
            first_seen.setdefault(p.alert.group or "", p.queued_at)
        expired = {g for g, t in first_seen.items() if now - t >= self.group_window}
        if not expired:
            return []
        due = [p.alert for p in self._buffer if (p.alert.group or "") in expired]
        self._buffer = [p for p in self._buffer if (p.alert.group or "") not in expired]
        return self._deliver(due)

    def _release_inhibited(self, now: float) -> list[Outcome]:
        outcomes: list[Outcome] = []
        open_now = self.store.open_alerts()
        for row in open_now:
            if row.inhibited and not any(inhibits(c, row) for c in open_now):
                self.store.set_inhibited(row.key, False)
                outcomes += self._enqueue(Alert.from_open(row), now)
        return outcomes

    def _deliver(self, alerts: list[Alert]) -> list[Outcome]:
        if not alerts:
            return []
        now = self.clock()
        outcomes: list[Outcome] = []
        open_rows = self.store.open_alerts()
        open_keys = {r.key for r in open_rows}
        eligible: list[Alert] = []
        for alert in alerts:
            if alert.status == "firing":
                if alert.key not in open_keys:
                    continue  # resolved since it was queued
                inhibitor = next((r for r in open_rows if inhibits(r, alert)), None)
                if inhibitor is not None:
                    self.store.set_inhibited(alert.key, True)
                    self.store.record(
                        st.SUPPRESSED_INHIBITED,
                        alert.key,
                        at=now,
                        severity=alert.severity,
                        status="firing",
                        title=alert.title,
                        detail=f"inhibited by critical alert {inhibitor.key}",
                    )
                    outcomes.append(Outcome(alert.key, None, "inhibited", inhibitor.key))
                    continue
            eligible.append(alert)

        # Build one job per (channel, group); ungrouped alerts each get their own job.
        jobs: list[_Job] = []
        for channel in self.channels:
            batches: dict[str, list[tuple[Alert, str]]] = {}
            for alert in eligible:
                token = self._claim(channel, alert, now, outcomes)
                if token is None:
                    continue
                batch_key = f"g:{alert.group}" if alert.group else f"k:{alert.key}:{alert.status}"
                batches.setdefault(batch_key, []).append((alert, token))
            for claims in batches.values():
                group = claims[0][0].group
                jobs.append(_Job(channel, Notification(tuple(a for a, _ in claims), group), claims))

        self._run(jobs)
        for job in jobs:
            outcomes += self._settle(job, now)
        return outcomes

    def _claim(self, channel: Channel, alert: Alert, now: float, outcomes: list[Outcome]) -> str | None:
        name = channel.name
        if alert.status == "resolved":
            # Only channels that were sent the alert firing get its resolve (min severity already applied).
            return self.store.claim_resolve(alert.key, name)
        if SEVERITY_RANK[alert.severity] < SEVERITY_RANK[channel.min_severity]:
            return None
        token = self.store.claim_send(alert.key, name, alert.severity, now, self.repeat_seconds)
        if token is None:
            last = self.store.last_sent(alert.key, name)
            detail = f"already sent at {iso_utc(last)}" if last is not None else "already sent"
            self.store.record(
                st.SUPPRESSED_DEDUPE,
                alert.key,
                at=now,
                channel=name,
                severity=alert.severity,
                status="firing",
                title=alert.title,
                detail=detail,
            )
            outcomes.append(Outcome(alert.key, name, "deduplicated", detail))
        return token

    def _run(self, jobs: list[_Job]) -> None:
        """Send every job in its own daemon thread; give up on a job after its channel's timeout + grace."""

        def work(job: _Job) -> None:
            try:
                job.channel.send(job.notification)
            except BaseException as exc:  # noqa: BLE001 - any failure of a channel is recorded, not raised
                job.error = exc
            finally:
                job.done = True

        threads = []
        for job in jobs:
            t = threading.Thread(target=work, args=(job,), name=f"alert-{job.channel.name}", daemon=True)
            t.start()
            threads.append((t, job))
        start = time.monotonic()  # wall time for the deadline, not the injected clock
        for t, job in threads:
            budget = float(getattr(job.channel, "timeout", 5.0)) + self.deadline_grace
            t.join(max(0.0, budget - (time.monotonic() - start)))
            if not job.done:
                job.error = TimeoutError(f"channel {job.channel.name} did not finish within {budget:g} s")

    def _settle(self, job: _Job, now: float) -> list[Outcome]:
        name = job.channel.name
        outcomes = []
        if job.error is None:
            for alert, _token in job.claims:
                event = st.RESOLVE_SENT if alert.status == "resolved" else st.SENT
                self.store.record(
                    event,
                    alert.key,
                    at=now,
                    channel=name,
                    severity=alert.severity,
                    status=alert.status,
                    title=alert.title,
                    detail=f"group {job.notification.group}" if job.notification.group else None,
                )
                outcomes.append(Outcome(alert.key, name, "resolve_sent" if alert.status == "resolved" else "sent"))
            return outcomes
        detail = self._redact(f"{type(job.error).__name__}: {job.error}")
        logger.warning("alert delivery to channel %s failed for %s: %s", name, job.notification.key, detail)
        for alert, token in job.claims:
            if alert.status == "resolved":
                self.store.release_resolve(alert.key, name, token)
            else:
                self.store.release_send(alert.key, name, token)
            self.store.record(
                st.DELIVERY_FAILED,
                alert.key,
                at=now,
                channel=name,
                severity=alert.severity,
                status=alert.status,
                title=alert.title,
                detail=detail,
            )
            outcomes.append(Outcome(alert.key, name, "failed", detail))
        return outcomes


# -- construction from the settings ----------------------------------------------------------------------

# The variables that enable each channel (aliases of ALPHAPULSE_ALERTS__SLACK_WEBHOOK_URL, ...; see settings.py).
SLACK_URL_ENV = "ALPHAPULSE_SLACK_WEBHOOK_URL"
WEBHOOK_URL_ENV = "ALPHAPULSE_ALERT_WEBHOOK_URL"
SMTP_HOST_ENV = "ALPHAPULSE_SMTP_HOST"


def build_router_from_env(
    db_url: str, clock: Callable[[], float] = time.time, settings: AlertSettings | None = None
) -> AlertRouter:
    """A router with the log channel always, and each other channel when its setting is set.

    The values come from the settings tree (``settings.alerts``, read now from the environment unless given):

    ============================================  =====================================================
    ``ALPHAPULSE_SLACK_WEBHOOK_URL``              Slack incoming webhook (enables ``slack``)
    ``ALPHAPULSE_ALERT_WEBHOOK_URL``              generic JSON webhook, e.g. a pager (enables ``webhook``)
    ``ALPHAPULSE_SMTP_HOST``                      SMTP server (enables ``email``); with
                                                  ``ALPHAPULSE_SMTP_PORT`` (587), ``ALPHAPULSE_ALERT_EMAIL_FROM``,
                                                  ``ALPHAPULSE_ALERT_EMAIL_TO`` (comma list),
                                                  ``ALPHAPULSE_SMTP_USERNAME`` / ``ALPHAPULSE_SMTP_PASSWORD``,
                                                  ``ALPHAPULSE_SMTP_STARTTLS`` (true)
    ``ALPHAPULSE_ALERT_MIN_SEVERITY_<CHANNEL>``   LOG (info), SLACK (warning), WEBHOOK (critical), EMAIL (warning)
    ``ALPHAPULSE_ALERT_REPEAT_SECONDS``           de-duplication repeat interval (14400)
    ``ALPHAPULSE_ALERT_GROUP_WINDOW_SECONDS``     group window (60)
    ``ALPHAPULSE_ALERT_TIMEOUT_SECONDS``          per-channel timeout (5)
    ============================================  =====================================================

    Each also has a nested name (``ALPHAPULSE_ALERTS__SMTP_HOST``, ``ALPHAPULSE_ALERTS__MIN_SEVERITY__SLACK``).
    Channels keep only the *names* of the variables holding secrets and read them when they send.
    """
    a = load_settings().alerts if settings is None else settings
    timeout = a.timeout_seconds

    def level(channel: str) -> Severity:
        return Severity(getattr(a.min_severity, channel))

    channels: list[Channel] = [LogChannel(min_severity=level("log"))]
    if a.slack_webhook_url is not None:
        channels.append(
            SlackWebhookChannel(
                url_env=env_name(("alerts", "slack_webhook_url")), min_severity=level("slack"), timeout=timeout
            )
        )
    if a.webhook_url is not None:
        channels.append(
            JsonWebhookChannel(
                url_env=env_name(("alerts", "webhook_url")), min_severity=level("webhook"), timeout=timeout
            )
        )
    if a.smtp_host:
        channels.append(
            EmailChannel(
                host=a.smtp_host,
                port=a.smtp_port,
                sender=a.email_from,
                recipients=list(a.email_to),
                username_env=env_name(("alerts", "smtp_username")) if a.smtp_username else None,
                password_env=env_name(("alerts", "smtp_password")),
                starttls=a.smtp_starttls,
                min_severity=level("email"),
                timeout=timeout,
            )
        )
    return AlertRouter(
        channels,
        AlertStore(db_url),
        clock=clock,
        repeat_interval=a.repeat_seconds,
        group_window=a.group_window_seconds,
    )
