"""Alert channels against real loopback servers: an HTTP server (stdlib, in a thread) receiving the Slack
and JSON webhooks, and an aiosmtpd SMTP server (plain, and STARTTLS with login) receiving email.
Also: a failing or unreachable channel does not stop the others and is recorded, and the webhook URL with
its secret token never reaches the logs or the store.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import ssl
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from alphapulse_assets.alerting import alert_store
from alphapulse_assets.alerting.alert_store import AlertStore
from alphapulse_assets.alerting.alerts import Alert, AlertRouter, Notification
from alphapulse_assets.alerting.channels import (
    EmailChannel,
    JsonWebhookChannel,
    LogChannel,
    SlackWebhookChannel,
)
from alphapulse_assets.recovery.errors import (
    AuthenticationError,
    PermanentError,
    Severity,
    TransientError,
)
from alphapulse_assets_tests.pg_harness import free_port

T0 = 1_700_000_000.0
SECRET = "xoxb-T0K3N-7c1d2e3f4a5b"


# -- loopback HTTP server ------------------------------------------------------------------------------


class Hook:
    """Records POSTs; answers 500 under /fail, hangs under /hang until released, 200 "ok" otherwise."""

    def __init__(self):
        self.requests: list[tuple[str, dict, dict]] = []
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.startswith("/hang"):
                    hook.release.wait(10)
                hook.requests.append((self.path, dict(self.headers), json.loads(body)))
                status = 500 if self.path.startswith("/fail") else 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"boom")

            def log_message(self, *args):  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def payloads(self, prefix: str) -> list[dict]:
        return [p for path, _h, p in self.requests if path.startswith(prefix)]


@pytest.fixture
def hook():
    h = Hook()
    h.thread.start()
    try:
        yield h
    finally:
        h.release.set()
        h.server.shutdown()
        h.server.server_close()


# -- loopback SMTP server ------------------------------------------------------------------------------


class Mailbox:
    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.authenticated))
        return "250 OK"


def start_smtp(**kwargs):
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port(), ready_timeout=5, **kwargs)
    controller.start()
    return box, controller


@pytest.fixture
def smtp():
    box, controller = start_smtp()
    try:
        yield box, controller.port
    finally:
        controller.stop()


def self_signed_cert(tmp_path):
    """A certificate for 127.0.0.1 made here (nothing is downloaded)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


# -- helpers -------------------------------------------------------------------------------------------


def alert(key="threshold:cpu_percent", severity=Severity.CRITICAL, **kw) -> Alert:
    kw.setdefault("title", "cpu_percent 97% is above critical threshold 90% for 120 s")
    kw.setdefault("body", "cpu_percent = 97 (threshold 90) <!channel> & co")
    kw.setdefault("labels", {"host": "worker-1"})
    return Alert(key, severity, source="monitoring", at=T0, **kw)


def one(a: Alert) -> Notification:
    return Notification((a,))


# -- Slack ---------------------------------------------------------------------------------------------


def test_slack_webhook_posts_text_and_blocks(hook, monkeypatch):
    monkeypatch.setenv("TEST_SLACK_URL", hook.url(f"/services/{SECRET}"))
    SlackWebhookChannel(url_env="TEST_SLACK_URL").send(one(alert()))
    (payload,) = hook.payloads("/services/")
    (path, headers, _) = hook.requests[0]
    assert headers["Content-Type"].startswith("application/json")
    assert set(payload) == {"text", "blocks"}
    assert payload["text"] == "[CRITICAL] cpu_percent 97% is above critical threshold 90% for 120 s"
    header, section, context = payload["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": payload["text"]}}
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert ":rotating_light: *CRITICAL*" in section["text"]["text"]
    # Alert text is data: Slack's markup characters are escaped, so "<!channel>" cannot ping anyone.
    assert "&lt;!channel&gt; &amp; co" in section["text"]["text"] and "<!channel>" not in json.dumps(payload)
    assert context["type"] == "context"
    ctx = context["elements"][0]
    assert ctx["type"] == "mrkdwn"
    assert (
        "threshold:cpu_percent" in ctx["text"]
        and "host=worker-1" in ctx["text"]
        and "2023-11-14T22:13:20Z" in ctx["text"]
    )


def test_slack_payload_respects_block_kit_limits():
    long = alert(title="x" * 500, body="y" * 5000)
    payload = SlackWebhookChannel().payload(Notification(tuple([long] * 60), group="g"))
    assert len(payload["blocks"]) <= 50
    assert len(payload["blocks"][0]["text"]["text"]) <= 150
    assert all(len(b["text"]["text"]) <= 3000 for b in payload["blocks"] if b["type"] == "section")
    assert payload["blocks"][-2]["text"]["text"] == "… and 20 more"


# -- JSON webhook --------------------------------------------------------------------------------------


def test_json_webhook_posts_the_documented_payload(hook, monkeypatch):
    monkeypatch.setenv("TEST_PAGER_URL", hook.url(f"/pager?token={SECRET}"))
    channel = JsonWebhookChannel(url_env="TEST_PAGER_URL")
    channel.send(one(alert()))
    resolved = alert(key="k2", severity="warning", status="resolved", labels={"group": "g", "host": "a"})
    other = alert(key="k3", severity="error", labels={"group": "g", "host": "b"})
    channel.send(Notification((resolved, other), group="g"))
    single, grouped = hook.payloads("/pager")
    assert single == {
        "version": 1,
        "key": "threshold:cpu_percent",
        "severity": "critical",
        "status": "firing",
        "title": "cpu_percent 97% is above critical threshold 90% for 120 s",
        "body": "cpu_percent = 97 (threshold 90) <!channel> & co",
        "labels": {"host": "worker-1"},
        "at": "2023-11-14T22:13:20Z",
        "group": None,
        "alerts": [
            {
                "key": "threshold:cpu_percent",
                "severity": "critical",
                "status": "firing",
                "title": "cpu_percent 97% is above critical threshold 90% for 120 s",
                "body": "cpu_percent = 97 (threshold 90) <!channel> & co",
                "source": "monitoring",
                "labels": {"host": "worker-1"},
                "at": "2023-11-14T22:13:20Z",
            }
        ],
    }
    assert grouped["key"] == "group:g" and grouped["group"] == "g"
    assert grouped["severity"] == "error" and grouped["status"] == "firing"
    assert grouped["labels"] == {"group": "g"}  # only what both share
    assert [(a["key"], a["status"], a["severity"]) for a in grouped["alerts"]] == [
        ("k2", "resolved", "warning"),
        ("k3", "firing", "error"),
    ]


def test_webhook_errors_are_classified_and_never_contain_the_url(hook, monkeypatch):
    monkeypatch.setenv("TEST_HOOK_URL", hook.url(f"/fail/{SECRET}"))
    with pytest.raises(TransientError) as info:
        JsonWebhookChannel(url_env="TEST_HOOK_URL").send(one(alert()))
    assert "HTTP 500" in str(info.value) and "TEST_HOOK_URL" in str(info.value) and SECRET not in str(info.value)

    monkeypatch.setenv("TEST_HOOK_URL", f"http://127.0.0.1:{free_port()}/closed/{SECRET}")
    with pytest.raises(TransientError) as info:
        JsonWebhookChannel(url_env="TEST_HOOK_URL").send(one(alert()))
    assert SECRET not in str(info.value) and "unreachable" in str(info.value)

    monkeypatch.delenv("TEST_HOOK_URL")
    with pytest.raises(PermanentError, match="TEST_HOOK_URL is not set"):
        JsonWebhookChannel(url_env="TEST_HOOK_URL").send(one(alert()))


def test_webhook_timeout_is_bounded(hook, monkeypatch):
    monkeypatch.setenv("TEST_HOOK_URL", hook.url("/hang"))
    with pytest.raises(TransientError, match="unreachable|timed out"):
        JsonWebhookChannel(url_env="TEST_HOOK_URL", timeout=0.3).send(one(alert()))


# -- email ---------------------------------------------------------------------------------------------


def test_email_is_delivered_over_smtp(smtp):
    box, port = smtp
    channel = EmailChannel(
        "127.0.0.1", port, "alphapulse@example.test", ["ops@example.test", "desk@example.test"], starttls=False
    )
    channel.send(one(alert()))
    (mail_from, rcpts, content, _auth) = box.envelopes[0]
    assert mail_from == "alphapulse@example.test"
    assert rcpts == ["ops@example.test", "desk@example.test"]
    msg = message_from_bytes(content, policy=policy.default)
    assert msg["Subject"] == "[CRITICAL] cpu_percent 97% is above critical threshold 90% for 120 s"
    assert msg["To"] == "ops@example.test, desk@example.test"
    assert msg["X-AlphaPulse-Alert-Key"] == "threshold:cpu_percent"
    body = msg.get_content()
    assert "cpu_percent = 97 (threshold 90)" in body
    assert "key: threshold:cpu_percent | source: monitoring | at: 2023-11-14T22:13:20Z | host=worker-1" in body


def test_email_subject_cannot_inject_headers(smtp):
    box, port = smtp
    evil = alert(title="hi\r\nBcc: victim@example.test")
    EmailChannel("127.0.0.1", port, "a@example.test", ["ops@example.test"], starttls=False).send(one(evil))
    (_f, rcpts, content, _a) = box.envelopes[0]
    msg = message_from_bytes(content, policy=policy.default)
    assert rcpts == ["ops@example.test"] and msg["Bcc"] is None
    assert msg["Subject"] == "[CRITICAL] hi Bcc: victim@example.test"


def test_email_with_starttls_and_login_from_env(tmp_path, monkeypatch):
    pytest.importorskip("cryptography")  # to make the test certificate; installed with the dev tools
    cert, key = self_signed_cert(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    seen = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        seen.append((auth_data.login, auth_data.password))
        # handled=False: let the server answer 535 itself on a wrong password.
        return AuthResult(success=auth_data.password == SECRET.encode(), handled=False)

    box, controller = start_smtp(
        tls_context=server_ctx, require_starttls=True, auth_required=True, authenticator=authenticator
    )
    try:
        monkeypatch.setenv("TEST_SMTP_USER", "alphapulse")
        monkeypatch.setenv("TEST_SMTP_PASSWORD", SECRET)
        channel = EmailChannel(
            "127.0.0.1",
            controller.port,
            "a@example.test",
            ["ops@example.test"],
            username_env="TEST_SMTP_USER",
            password_env="TEST_SMTP_PASSWORD",
            starttls=True,
            ssl_context=ssl.create_default_context(cafile=str(cert)),
        )
        assert SECRET not in repr(vars(channel))
        channel.send(one(alert()))
        assert seen == [(b"alphapulse", SECRET.encode())]
        assert len(box.envelopes) == 1 and box.envelopes[0][3] is True

        monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
        with pytest.raises(AuthenticationError) as info:
            channel.send(one(alert()))
        assert "wrong" not in str(info.value)

        # Without STARTTLS the server refuses: the channel reports it instead of sending in clear.
        plain = EmailChannel("127.0.0.1", controller.port, "a@example.test", ["ops@example.test"], starttls=False)
        with pytest.raises(PermanentError, match="SMTP server answered 530"):
            plain.send(one(alert()))
        assert len(box.envelopes) == 1
    finally:
        controller.stop()


# -- log -----------------------------------------------------------------------------------------------


def test_log_channel_logs_at_the_alert_severity(caplog):
    with caplog.at_level(logging.INFO, logger="alphapulse.alerts"):
        LogChannel().send(one(alert()))
        LogChannel().send(one(alert(status="resolved")))
    first, second = caplog.records
    assert first.levelno == logging.CRITICAL and "[CRITICAL] cpu_percent 97%" in first.getMessage()
    assert second.levelno == logging.INFO and second.getMessage().startswith("[RESOLVED]")


# -- the router with real channels ---------------------------------------------------------------------


def test_a_failing_channel_does_not_stop_the_others_and_secrets_stay_out_of_logs_and_store(
    hook, smtp, tmp_path, monkeypatch, caplog
):
    box, smtp_port = smtp
    monkeypatch.setenv("TEST_SLACK_URL", hook.url(f"/fail/services/{SECRET}"))  # answers 500
    monkeypatch.setenv("TEST_PAGER_URL", f"http://127.0.0.1:{free_port()}/pager/{SECRET}")  # closed port
    monkeypatch.setenv("TEST_OK_URL", hook.url(f"/ok/{SECRET}"))
    channels = [
        LogChannel(),
        SlackWebhookChannel(url_env="TEST_SLACK_URL"),
        JsonWebhookChannel(url_env="TEST_PAGER_URL", name="pager"),
        JsonWebhookChannel(url_env="TEST_OK_URL", name="webhook"),
        EmailChannel("127.0.0.1", smtp_port, "a@example.test", ["ops@example.test"], starttls=False),
    ]
    db_url = f"sqlite:///{tmp_path / 'platform.db'}"
    router = AlertRouter(channels, AlertStore(db_url), clock=lambda: T0)
    with caplog.at_level(logging.DEBUG):
        outcomes = router.raise_alert(alert())
    results = sorted((o.channel, o.result) for o in outcomes)
    assert results == [
        ("email", "sent"),
        ("log", "sent"),
        ("pager", "failed"),
        ("slack", "failed"),
        ("webhook", "sent"),
    ]
    assert len(hook.payloads("/ok/")) == 1 and len(box.envelopes) == 1
    assert len(hook.payloads("/fail/")) == 1  # Slack's server was reached and answered 500

    failures = {f.channel: f.detail for f in router.store.delivery_failures()}
    assert set(failures) == {"slack", "pager"}
    assert "HTTP 500" in failures["slack"] and "unreachable" in failures["pager"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "alphapulse_assets.alerting.alerts"]
    assert any("slack" in m and "HTTP 500" in m for m in warnings)
    assert any("pager" in m for m in warnings)

    # The secret token (and the URLs carrying it) appear nowhere in logs or in any alert table.
    log_text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert SECRET not in log_text
    import sqlalchemy as sa

    with router.store.engine.connect() as conn:
        names = [n for n in sa.inspect(conn).get_table_names() if n.startswith("alphapulse_alert")]
        dump = "".join(repr(conn.execute(sa.text(f"SELECT * FROM {n}")).all()) for n in names)
    assert set(names) == set(alert_store.metadata.tables) and "threshold:cpu_percent" in dump  # every alert table
    assert SECRET not in dump and "127.0.0.1" not in dump


def test_a_hanging_webhook_is_abandoned_at_its_timeout(hook, smtp, tmp_path, monkeypatch):
    box, smtp_port = smtp
    monkeypatch.setenv("TEST_HANG_URL", hook.url("/hang"))
    channels = [
        JsonWebhookChannel(url_env="TEST_HANG_URL", name="slowhook", timeout=0.3),
        EmailChannel("127.0.0.1", smtp_port, "a@example.test", ["ops@example.test"], starttls=False),
    ]
    router = AlertRouter(channels, AlertStore(f"sqlite:///{tmp_path / 'p.db'}"), clock=lambda: T0, deadline_grace=0.3)
    outcomes = router.raise_alert(alert())
    assert sorted((o.channel, o.result) for o in outcomes) == [("email", "sent"), ("slowhook", "failed")]
    assert len(box.envelopes) == 1
    assert [f.channel for f in router.store.delivery_failures()] == ["slowhook"]
