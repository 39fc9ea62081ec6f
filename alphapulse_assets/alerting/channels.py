"""Alert channels: the log, Slack, a generic JSON webhook (pagers) and email.

A channel turns a ``Notification`` into one message and raises a classified error when it cannot
deliver it; the router runs each channel in its own thread and records failures. Channels hold only the
*names* of the environment variables that carry secrets (webhook URLs, SMTP password) and read them at
send time, so a secret is never an attribute, never in a ``repr`` and never in an error message: errors
name the channel and the environment variable, not the URL. ``secrets()`` lists the current values so
the router can scrub them from anything it logs or stores.

HTTP uses ``urllib.request`` (no extra dependency); every network call has a timeout (5 s default).

JSON webhook payload (``JsonWebhookChannel``), version 1::

    {
      "version": 1,
      "key": "threshold:cpu_percent",        # the alert key; "group:<name>" for a grouped message
      "severity": "critical",                # highest severity in the message: info|warning|error|critical
      "status": "firing",                    # "resolved" only when every alert in it is resolved
      "title": "...", "body": "...",
      "labels": {"host": "worker-1"},        # the alert's labels (for a group: the labels all share)
      "at": "2024-01-01T00:00:00Z",          # ISO 8601 UTC
      "group": null,                         # group name, or null
      "alerts": [                            # always present; one entry per alert, same fields plus source
        {"key": ..., "severity": ..., "status": ..., "title": ..., "body": ..., "source": ...,
         "labels": {...}, "at": ...}
      ]
    }

A pager integration de-duplicates on ``alerts[].key`` and closes an incident on ``status: "resolved"``.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Sequence
from email.message import EmailMessage
from urllib.parse import urlsplit

from alphapulse_assets.alerting.messages import Alert, Notification, iso_utc, parse_severity
from alphapulse_assets.recovery.errors import (
    AuthenticationError,
    PermanentError,
    Severity,
    TransientError,
)

DEFAULT_TIMEOUT = 5.0
ALERT_LOGGER = "alphapulse.alerts"


class Channel(ABC):
    """One destination for alerts. ``name`` must be unique within a router (it keys the dedupe state)."""

    name: str = "channel"

    def __init__(
        self, *, name: str | None = None, min_severity: Severity | str = Severity.INFO, timeout: float = DEFAULT_TIMEOUT
    ):
        if name:
            self.name = name
        self.min_severity = parse_severity(min_severity, where=f"channel {self.name}")
        if not timeout or timeout <= 0:
            raise PermanentError(f"timeout must be positive, got {timeout!r}", where=f"channel {self.name}")
        self.timeout = float(timeout)

    @abstractmethod
    def send(self, notification: Notification) -> None:
        """Deliver one message or raise a classified error (never containing a secret)."""

    def secrets(self) -> list[str]:
        """Current secret values this channel uses, for redaction. None by default."""
        return []

    def describe(self) -> str:
        return f"{self.name} (min severity {self.min_severity.value})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


class LogChannel(Channel):
    """Writes each notification to the ``alphapulse.alerts`` logger; always on, needs nothing."""

    name = "log"
    _LEVELS = {
        Severity.INFO: logging.INFO,
        Severity.WARNING: logging.WARNING,
        Severity.ERROR: logging.ERROR,
        Severity.CRITICAL: logging.CRITICAL,
    }

    def __init__(self, *, logger: logging.Logger | None = None, **kwargs):
        super().__init__(**kwargs)
        self.logger = logger or logging.getLogger(ALERT_LOGGER)

    def send(self, notification: Notification) -> None:
        level = logging.INFO if notification.status == "resolved" else self._LEVELS[notification.severity]
        if len(notification.alerts) == 1:  # body_text already starts with the subject line
            self.logger.log(level, "%s", notification.body_text())
        else:
            self.logger.log(level, "%s\n%s", notification.subject, notification.body_text())


def _url_secrets(url: str) -> list[str]:
    """The URL, and its path+query (a webhook's token is in its path), for redaction."""
    parts = urlsplit(url)
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    return [url] + ([tail] if len(tail) >= 8 else [])


class _WebhookChannel(Channel):
    """POSTs JSON to a URL read from an environment variable at send time."""

    def __init__(self, *, url_env: str, **kwargs):
        super().__init__(**kwargs)
        self.url_env = url_env

    def _url(self) -> str:
        url = os.environ.get(self.url_env, "").strip()
        if not url:
            raise PermanentError(f"environment variable {self.url_env} is not set", where=f"channel {self.name}")
        if urlsplit(url).scheme not in ("http", "https"):
            raise PermanentError(f"{self.url_env} is not an http(s) URL", where=f"channel {self.name}")
        return url

    def secrets(self) -> list[str]:
        url = os.environ.get(self.url_env, "").strip()
        return _url_secrets(url) if url else []

    def describe(self) -> str:
        return f"{self.name} via ${self.url_env} (min severity {self.min_severity.value})"

    @abstractmethod
    def payload(self, notification: Notification) -> dict:
        """The JSON body for a notification."""

    def send(self, notification: Notification) -> None:
        where = f"channel {self.name} (${self.url_env})"
        data = json.dumps(self.payload(notification)).encode("utf-8")
        request = urllib.request.Request(
            self._url(), data=data, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(1024)
        except urllib.error.HTTPError as exc:
            # The exception text is "HTTP Error 500: ..." and never the URL; raise our own anyway.
            status = exc.code
            exc.close()
            if status in (401, 403):
                raise AuthenticationError(f"webhook refused the request: HTTP {status}", where=where) from None
            if status in (408, 425, 429) or status >= 500:
                raise TransientError(f"webhook answered HTTP {status}", where=where) from None
            raise PermanentError(f"webhook rejected the payload: HTTP {status}", where=where) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransientError(f"webhook unreachable: {type(reason).__name__}: {reason}", where=where) from None


# Slack Block Kit limits: header text 150 characters, section text 3000, at most 50 blocks.
_SLACK_HEADER_MAX = 150
_SLACK_SECTION_MAX = 3000
_SLACK_MAX_ALERT_BLOCKS = 40
_SLACK_EMOJI = {
    Severity.INFO: ":information_source:",
    Severity.WARNING: ":warning:",
    Severity.ERROR: ":x:",
    Severity.CRITICAL: ":rotating_light:",
}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slack_escape(text: str) -> str:
    # Slack reads &, < and > as markup (<!channel> pings everyone); alert text is data, not markup.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackWebhookChannel(_WebhookChannel):
    """Slack incoming webhook: ``text`` (the notification fallback) plus Block Kit ``blocks``."""

    name = "slack"

    def __init__(self, url_env: str = "ALPHAPULSE_SLACK_WEBHOOK_URL", **kwargs):
        kwargs.setdefault("min_severity", Severity.WARNING)
        super().__init__(url_env=url_env, **kwargs)

    @staticmethod
    def _alert_block(alert: Alert) -> dict:
        mark = ":white_check_mark:" if alert.status == "resolved" else _SLACK_EMOJI[alert.severity]
        tag = "RESOLVED" if alert.status == "resolved" else alert.severity.value.upper()
        text = f"{mark} *{tag}* {_slack_escape(alert.title)}"
        if alert.body:
            text += "\n" + _slack_escape(alert.body)
        return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, _SLACK_SECTION_MAX)}}

    def payload(self, notification: Notification) -> dict:
        blocks: list[dict] = [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(notification.subject, _SLACK_HEADER_MAX)}}
        ]
        alerts = notification.alerts
        for alert in alerts[:_SLACK_MAX_ALERT_BLOCKS]:
            blocks.append(self._alert_block(alert))
        if len(alerts) > _SLACK_MAX_ALERT_BLOCKS:
            blocks.append(
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"… and {len(alerts) - _SLACK_MAX_ALERT_BLOCKS} more"},
                }
            )
        first = alerts[0]
        context = f"key `{_slack_escape(notification.key)}` · source {_slack_escape(first.source)} · {iso_utc(notification.at)}"
        labels = notification.common_labels
        if labels:
            context += " · " + ", ".join(f"{_slack_escape(k)}={_slack_escape(v)}" for k, v in sorted(labels.items()))
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(context, _SLACK_SECTION_MAX)}]})
        return {"text": _slack_escape(notification.subject), "blocks": blocks}


class JsonWebhookChannel(_WebhookChannel):
    """Generic JSON webhook for pagers and incident tools; payload documented in the module docstring."""

    name = "webhook"

    def __init__(self, url_env: str = "ALPHAPULSE_ALERT_WEBHOOK_URL", **kwargs):
        kwargs.setdefault("min_severity", Severity.CRITICAL)
        super().__init__(url_env=url_env, **kwargs)

    @staticmethod
    def _alert_json(alert: Alert) -> dict:
        return {
            "key": alert.key,
            "severity": alert.severity.value,
            "status": alert.status,
            "title": alert.title,
            "body": alert.body,
            "source": alert.source,
            "labels": dict(alert.labels),
            "at": iso_utc(alert.at or 0.0),
        }

    def payload(self, notification: Notification) -> dict:
        single = len(notification.alerts) == 1
        return {
            "version": 1,
            "key": notification.key,
            "severity": notification.severity.value,
            "status": notification.status,
            "title": notification.title,
            "body": notification.alerts[0].body if single else notification.body_text(),
            "labels": dict(notification.alerts[0].labels) if single else notification.common_labels,
            "at": iso_utc(notification.at),
            "group": notification.group,
            "alerts": [self._alert_json(a) for a in notification.alerts],
        }


class EmailChannel(Channel):
    """Email over SMTP (optionally STARTTLS and login); the password is read from ``password_env``."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        username_env: str | None = None,
        password_env: str | None = None,
        starttls: bool = True,
        *,
        ssl_context: ssl.SSLContext | None = None,
        **kwargs,
    ):
        kwargs.setdefault("min_severity", Severity.WARNING)
        super().__init__(**kwargs)
        if not recipients:
            raise PermanentError("an email channel needs at least one recipient", where=f"channel {self.name}")
        self.host = host
        self.port = int(port)
        self.sender = sender
        self.recipients = list(recipients)
        self.username_env = username_env
        self.password_env = password_env
        self.starttls = starttls
        self.ssl_context = ssl_context

    def secrets(self) -> list[str]:
        password = os.environ.get(self.password_env, "") if self.password_env else ""
        return [password] if password else []

    def describe(self) -> str:
        return f"{self.name} via {self.host}:{self.port} to {len(self.recipients)} recipient(s) (min severity {self.min_severity.value})"

    def message(self, notification: Notification) -> EmailMessage:
        msg = EmailMessage()
        # Header values must not contain line breaks (header injection); titles are single-lined.
        msg["Subject"] = " ".join(notification.subject.split())[:250]
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["X-AlphaPulse-Alert-Key"] = " ".join(notification.key.split())[:250]
        msg.set_content(notification.body_text())
        return msg

    def send(self, notification: Notification) -> None:
        where = f"channel {self.name} ({self.host}:{self.port})"
        msg = self.message(notification)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=self.ssl_context or ssl.create_default_context())
                if self.username_env:
                    username = os.environ.get(self.username_env, "")
                    password = os.environ.get(self.password_env or "", "")
                    if not username or not password:
                        raise PermanentError(
                            f"environment variables {self.username_env} / {self.password_env} must both be set",
                            where=where,
                        )
                    smtp.login(username, password)
                smtp.send_message(msg, from_addr=self.sender, to_addrs=self.recipients)
        except smtplib.SMTPAuthenticationError as exc:
            raise AuthenticationError(f"SMTP login refused: {exc.smtp_code}", where=where) from None
        except smtplib.SMTPResponseException as exc:
            cls = TransientError if 400 <= exc.smtp_code < 500 else PermanentError
            raise cls(f"SMTP server answered {exc.smtp_code}", where=where) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(f"SMTP server refused all {len(exc.recipients)} recipient(s)", where=where) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientError(f"SMTP delivery failed: {type(exc).__name__}: {exc}", where=where) from None
