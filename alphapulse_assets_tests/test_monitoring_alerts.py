"""Alert routing: de-duplication, repeat interval, grouping, inhibition, resolution, minimum severity,
failure isolation, and persistence of the dedupe state across router instances (SQLite and PostgreSQL).

The channels here are in-memory recorders: the router's decisions are what is under test. The real
HTTP and SMTP channels are exercised against loopback servers in ``test_monitoring_channels.py``.
"""

from __future__ import annotations

import threading

import pytest

from alphapulse_assets.alerting import alert_store as st
from alphapulse_assets.alerting.alert_store import AlertStore
from alphapulse_assets.alerting.alerts import Alert, AlertRouter, build_router_from_env, inhibition_key
from alphapulse_assets.alerting.channels import (
    Channel,
    EmailChannel,
    JsonWebhookChannel,
    LogChannel,
    SlackWebhookChannel,
)
from alphapulse_assets.monitoring.thresholds import RuleState, ThresholdRule, evaluate
from alphapulse_assets.recovery.errors import DataValidationError, Severity, TransientError
from alphapulse_assets_tests.clock import T0
from alphapulse_assets_tests.clock import FakeClock as Clock

HOUR = 3600.0


class Recorder(Channel):
    """Keeps every notification it is sent; can be told to fail or to hang."""

    def __init__(
        self,
        name: str,
        min_severity=Severity.INFO,
        *,
        fail: bool = False,
        hang: threading.Event | None = None,
        timeout: float = 5.0,
    ):
        super().__init__(name=name, min_severity=min_severity, timeout=timeout)
        self.sent = []
        self.fail = fail
        self.hang = hang

    def send(self, notification) -> None:
        if self.hang is not None:
            self.hang.wait(10)
            return
        if self.fail:
            raise TransientError("recorder is down", where=f"channel {self.name}")
        self.sent.append(notification)

    @property
    def keys(self) -> list[list[str]]:
        return [[a.key for a in n.alerts] for n in self.sent]

    @property
    def statuses(self) -> list[str]:
        return [n.status for n in self.sent]


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'platform.db'}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_router(db_url, clock, *channels, **kwargs) -> AlertRouter:
    return AlertRouter(list(channels), AlertStore(db_url), clock=clock, **kwargs)


def warn(key="cpu", **labels) -> Alert:
    return Alert(key, Severity.WARNING, f"{key} is high", f"{key} body", source="test", labels=labels)


def crit(key="cpu", **labels) -> Alert:
    return Alert(key, Severity.CRITICAL, f"{key} is very high", f"{key} body", source="test", labels=labels)


def events(store: AlertStore, key: str | None = None, channel: str | None = None) -> list[str]:
    return [h.event for h in store.history(key=key) if channel is None or h.channel in (None, channel)]


# -- de-duplication and repeat interval ---------------------------------------------------------------


def test_same_firing_alert_is_sent_once_within_the_repeat_interval(db_url, clock):
    ch = Recorder("chat")
    router = make_router(db_url, clock, ch)
    assert [o.result for o in router.raise_alert(warn())] == ["sent"]
    for _ in range(5):
        clock.advance(30 * 60)  # every 30 min for 2.5 h
        assert [o.result for o in router.raise_alert(warn())] == ["deduplicated"]
    assert ch.keys == [["cpu"]]
    clock.advance(90 * 60)  # now exactly 4 h after the first send
    assert [o.result for o in router.raise_alert(warn())] == ["sent"]
    assert ch.keys == [["cpu"], ["cpu"]]
    hist = events(router.store, "cpu")
    assert hist.count(st.RAISED) == 7
    assert hist.count(st.SENT) == 2
    assert hist.count(st.SUPPRESSED_DEDUPE) == 5
    assert [a.key for a in router.store.open_alerts()] == ["cpu"]


def test_pruning_history_keeps_dedupe_state(db_url, clock):
    ch = Recorder("chat")
    router = make_router(db_url, clock, ch)
    router.raise_alert(warn())
    clock.advance(HOUR)
    router.raise_alert(warn("mem"))
    assert router.store.prune_history(before=T0 + 1) == 2  # the cpu raise and its send
    assert [h.key for h in router.store.history()] == ["mem", "mem"]
    assert [o.result for o in router.raise_alert(warn())] == ["deduplicated"]


def test_repeat_interval_is_configurable_and_a_severity_change_is_sent_at_once(db_url, clock):
    ch = Recorder("chat")
    router = make_router(db_url, clock, ch, repeat_interval=600)
    router.raise_alert(warn())
    clock.advance(60)
    router.raise_alert(crit())  # escalation: new information, not a duplicate
    clock.advance(60)
    router.raise_alert(crit())
    assert [n.severity for n in ch.sent] == [Severity.WARNING, Severity.CRITICAL]
    clock.advance(600)
    router.raise_alert(crit())
    assert len(ch.sent) == 3
    assert router.store.open_alert("cpu").severity is Severity.CRITICAL


def test_dedupe_survives_a_new_router_on_the_same_sqlite_file(db_url, clock):
    """Sensors run in fresh processes: a second router instance must remember what the first sent."""
    first = Recorder("chat")
    make_router(db_url, clock, first).raise_alert(warn())
    clock.advance(HOUR)
    second = Recorder("chat")
    outcomes = make_router(db_url, clock, second).raise_alert(warn())
    assert [o.result for o in outcomes] == ["deduplicated"]
    assert first.keys == [["cpu"]] and second.sent == []
    clock.advance(3 * HOUR)
    third = Recorder("chat")
    make_router(db_url, clock, third).raise_alert(warn())
    assert third.keys == [["cpu"]]


def test_concurrent_routers_send_an_alert_once(db_url, clock):
    """Eight 'sensor processes' raise the same alert at the same moment on one SQLite file."""
    AlertStore(db_url)  # tables exist before the race, as after the first deployment
    recorders = [Recorder("chat") for _ in range(8)]
    barrier = threading.Barrier(len(recorders))
    errors = []

    def worker(rec):
        try:
            router = make_router(db_url, clock, rec)
            barrier.wait(5)
            router.raise_alert(warn())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(r,)) for r in recorders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sum(len(r.sent) for r in recorders) == 1
    store = AlertStore(db_url)
    assert events(store).count(st.RAISED) == 8
    assert events(store).count(st.SENT) == 1
    assert events(store).count(st.SUPPRESSED_DEDUPE) == 7


# -- grouping ----------------------------------------------------------------------------------------


def test_grouped_alerts_go_out_as_one_message_per_channel_on_flush(db_url, clock):
    chat, pager = Recorder("chat"), Recorder("pager")
    router = make_router(db_url, clock, chat, pager)
    for sym in ("BTCUSDT", "ETHUSDT", "ADAUSDT"):
        outcomes = router.raise_alert(warn(f"quality:{sym}", group="nightly-quality"))
        assert [o.result for o in outcomes] == ["queued"]
        clock.advance(1)
    assert chat.sent == [] and pager.sent == [] and router.pending == 3
    outcomes = router.flush()
    assert router.pending == 0
    for ch in (chat, pager):
        assert len(ch.sent) == 1
        n = ch.sent[0]
        assert n.group == "nightly-quality"
        assert [a.key for a in n.alerts] == ["quality:BTCUSDT", "quality:ETHUSDT", "quality:ADAUSDT"]
        assert n.title == "3 alerts in group nightly-quality: 3 firing"
    assert sorted((o.channel, o.result) for o in outcomes) == [("chat", "sent")] * 3 + [("pager", "sent")] * 3
    assert router.flush() == []  # nothing left


def test_ungrouped_alerts_are_sent_at_once_and_groups_are_separate(db_url, clock):
    chat = Recorder("chat")
    router = make_router(db_url, clock, chat)
    router.raise_alert(warn("a", group="g1"))
    router.raise_alert(warn("b", group="g2"))
    router.raise_alert(warn("c"))
    assert chat.keys == [["c"]]
    router.flush()
    assert sorted(chat.keys) == [["a"], ["b"], ["c"]]


def test_a_group_older_than_the_window_is_flushed_by_the_next_call(db_url, clock):
    chat = Recorder("chat")
    router = make_router(db_url, clock, chat, group_window=60)
    router.raise_alert(warn("a", group="g"))
    clock.advance(59)
    router.raise_alert(warn("b", group="g"))
    assert chat.sent == []
    clock.advance(1)  # 60 s after the group's first alert
    router.raise_alert(warn("c", group="g"))
    assert chat.keys == [["a", "b"]]
    router.flush()
    assert chat.keys == [["a", "b"], ["c"]]


def test_context_manager_flushes_and_grouped_duplicates_collapse(db_url, clock):
    chat = Recorder("chat")
    with make_router(db_url, clock, chat) as router:
        router.raise_alert(warn("a", group="g"))
        router.raise_alert(warn("a", group="g"))
        router.raise_alert(warn("b", group="g"))
    assert chat.keys == [["a", "b"]]
    # Raised again in the next tick: both deduplicated, nothing sent.
    with make_router(db_url, clock, chat) as router:
        router.raise_alert(warn("a", group="g"))
        router.raise_alert(warn("b", group="g"))
    assert len(chat.sent) == 1


# -- resolution --------------------------------------------------------------------------------------


def test_resolve_is_sent_once_and_only_where_the_alert_went(db_url, clock):
    chat, pager = Recorder("chat"), Recorder("pager", Severity.CRITICAL)
    router = make_router(db_url, clock, chat, pager)
    router.raise_alert(warn())
    clock.advance(60)
    outcomes = router.resolve("cpu")
    assert [(o.channel, o.result) for o in outcomes] == [("chat", "resolve_sent")]
    assert chat.statuses == ["firing", "resolved"]
    assert pager.sent == []  # below its minimum: neither the alert nor its resolve
    resolved = chat.sent[1].alerts[0]
    assert resolved.status == "resolved" and resolved.title == "cpu is high" and resolved.at == T0 + 60
    assert router.store.open_alerts() == []
    # A second resolve, from this router or a fresh one, sends nothing.
    assert router.resolve("cpu") == []
    assert make_router(db_url, clock, Recorder("chat")).resolve("cpu") == []
    assert chat.statuses == ["firing", "resolved"]
    assert events(router.store, "cpu") == [st.RAISED, st.SENT, st.RESOLVED, st.RESOLVE_SENT]


def test_an_alert_that_fires_again_after_resolving_is_sent_again(db_url, clock):
    chat = Recorder("chat")
    router = make_router(db_url, clock, chat)
    router.raise_alert(warn())
    router.resolve("cpu")
    clock.advance(60)
    router.raise_alert(warn())
    assert chat.statuses == ["firing", "resolved", "firing"]


def test_resolving_a_grouped_alert_before_flush_sends_nothing(db_url, clock):
    chat = Recorder("chat")
    router = make_router(db_url, clock, chat)
    router.raise_alert(warn("a", group="g"))
    router.resolve("a")
    assert router.flush() == [] and chat.sent == []
    # A grouped alert resolved after being sent: the resolve goes out with the group on flush.
    router.raise_alert(warn("b", group="g"))
    router.flush()
    router.resolve("b")
    router.raise_alert(warn("c", group="g"))
    router.flush()
    assert [[(a.key, a.status) for a in n.alerts] for n in chat.sent] == [
        [("b", "firing")],
        [("b", "resolved"), ("c", "firing")],
    ]


def test_raising_a_resolved_alert_is_resolving_it(db_url, clock):
    """Threshold events go straight into the router, firing and resolved alike."""
    chat = Recorder("chat")
    router = make_router(db_url, clock, chat)
    rule = ThresholdRule("cpu_percent", 80, 90, for_seconds=60)
    state = RuleState()
    for i, value in enumerate([95, 95, 95, 95, 10, 10, 10, 10]):
        clock.t = T0 + 30 * i
        state, evs = evaluate(rule, state, value, clock())
        for ev in evs:
            router.raise_alert(Alert.from_event(ev, labels={"host": "worker-1"}))
    assert chat.statuses == ["firing", "resolved"]
    firing = chat.sent[0].alerts[0]
    assert (firing.key, firing.severity, firing.labels) == (
        "threshold:cpu_percent",
        Severity.CRITICAL,
        {"host": "worker-1"},
    )
    assert chat.sent[1].alerts[0].key == "threshold:cpu_percent"
    assert router.store.open_alerts() == []


# -- inhibition --------------------------------------------------------------------------------------


def test_inhibition_key_rules():
    assert inhibition_key(warn("disk:/data:warning")) == "disk:/data"
    assert inhibition_key(warn("disk:/data")) == "disk:/data"
    assert inhibition_key(warn("x", inhibit_key="db")) == "db"


def test_critical_inhibits_the_matching_warning_until_it_resolves(db_url, clock):
    chat = Recorder("chat")
    router = make_router(db_url, clock, chat)
    router.raise_alert(crit("disk:/data:critical"))
    outcomes = router.raise_alert(warn("disk:/data:warning"))
    assert [(o.result, o.detail) for o in outcomes] == [("inhibited", "disk:/data:critical")]
    router.raise_alert(warn("db:latency", inhibit_key="database"))  # unrelated: sent
    router.raise_alert(crit("database"))
    outcomes = router.raise_alert(warn("db:replica-lag", inhibit_key="database"))  # label match
    assert [o.result for o in outcomes] == ["inhibited"]
    router.raise_alert(warn("disk:/logs:warning"))  # other disk: not inhibited
    assert chat.keys == [["disk:/data:critical"], ["db:latency"], ["database"], ["disk:/logs:warning"]]
    assert events(router.store, "disk:/data:warning") == [st.RAISED, st.SUPPRESSED_INHIBITED]
    assert router.store.open_alert("disk:/data:warning").inhibited

    # The critical resolves: its resolve goes out, then the warning it held back (still open) is sent.
    router.resolve("disk:/data:critical")
    assert chat.keys[-2:] == [["disk:/data:critical"], ["disk:/data:warning"]]
    assert chat.sent[-2].status == "resolved" and chat.sent[-1].status == "firing"
    assert not router.store.open_alert("disk:/data:warning").inhibited


def test_a_key_prefix_critical_inhibits_its_sub_alerts(db_url, clock):
    chat = Recorder("chat")
    router = make_router(db_url, clock, chat)
    router.raise_alert(crit("pipeline:nightly"))
    assert [o.result for o in router.raise_alert(warn("pipeline:nightly:BTCUSDT"))] == ["inhibited"]
    assert [o.result for o in router.raise_alert(warn("pipeline:nightlyish"))] == ["sent"]
    assert [o.result for o in router.raise_alert(crit("pipeline:nightly:ETHUSDT"))] == [
        "sent"
    ]  # critical: never inhibited


def test_inhibition_applies_within_one_group_whatever_the_order(db_url, clock):
    chat = Recorder("chat")
    router = make_router(db_url, clock, chat)
    router.raise_alert(warn("disk:/data:warning", group="resources"))
    router.raise_alert(crit("disk:/data:critical", group="resources"))
    router.flush()
    assert chat.keys == [["disk:/data:critical"]]


# -- minimum severity --------------------------------------------------------------------------------


def test_each_channel_has_a_minimum_severity(db_url, clock):
    log, chat, pager = Recorder("log"), Recorder("chat", Severity.WARNING), Recorder("pager", "critical")
    router = make_router(db_url, clock, log, chat, pager)
    router.raise_alert(Alert("i", Severity.INFO, "fyi"))
    router.raise_alert(Alert("w", "warning", "hmm"))
    router.raise_alert(Alert("e", "error", "bad"))
    router.raise_alert(Alert("c", "critical", "very bad"))
    assert log.keys == [["i"], ["w"], ["e"], ["c"]]
    assert chat.keys == [["w"], ["e"], ["c"]]
    assert pager.keys == [["c"]]


# -- failures ----------------------------------------------------------------------------------------


def test_a_failing_channel_does_not_block_the_others_and_is_retried_next_time(db_url, clock, caplog):
    good, bad = Recorder("chat"), Recorder("pager", fail=True)
    router = make_router(db_url, clock, bad, good)
    with caplog.at_level("WARNING", logger="alphapulse_assets.alerting.alerts"):
        outcomes = router.raise_alert(crit())
    assert sorted((o.channel, o.result) for o in outcomes) == [("chat", "sent"), ("pager", "failed")]
    assert good.keys == [["cpu"]]
    failures = router.store.delivery_failures("cpu")
    assert [(f.channel, f.severity) for f in failures] == [("pager", "critical")]
    assert "recorder is down" in failures[0].detail
    assert any("pager" in r.getMessage() and "recorder is down" in r.getMessage() for r in caplog.records)
    # Next raise: the chat copy is a duplicate, the failed pager is tried again.
    bad.fail = False
    clock.advance(60)
    outcomes = router.raise_alert(crit())
    assert sorted((o.channel, o.result) for o in outcomes) == [("chat", "deduplicated"), ("pager", "sent")]
    assert bad.keys == [["cpu"]]


def test_a_hanging_channel_times_out_without_holding_up_the_others(db_url, clock):
    release = threading.Event()
    slow, good = Recorder("slow", hang=release, timeout=0.2), Recorder("chat")
    router = make_router(db_url, clock, slow, good, deadline_grace=0.2)
    try:
        outcomes = router.raise_alert(crit())
    finally:
        release.set()
    assert good.keys == [["cpu"]]
    assert sorted((o.channel, o.result) for o in outcomes) == [("chat", "sent"), ("slow", "failed")]
    (failure,) = router.store.delivery_failures()
    assert failure.channel == "slow" and "TimeoutError" in failure.detail


def test_secret_values_are_scrubbed_from_alerts_and_store(db_url, clock, monkeypatch):
    token = "T0KEN-s3cr3t-9f8e7d"
    monkeypatch.setenv("TEST_HOOK_URL", f"http://127.0.0.1:9/hooks/{token}")
    chat = Recorder("chat")
    hook = JsonWebhookChannel(url_env="TEST_HOOK_URL", name="hook", min_severity="critical")
    router = make_router(db_url, clock, chat, hook)
    router.raise_alert(
        Alert("leak", "warning", f"posting to /hooks/{token} failed", f"url was http://127.0.0.1:9/hooks/{token}")
    )
    n = chat.sent[0].alerts[0]
    assert token not in n.title and token not in n.body and "***" in n.body
    dump = repr(router.store.history()) + repr(router.store.open_alerts()) + repr(router.store.dedupe_rows())
    assert token not in dump


# -- construction from the environment ---------------------------------------------------------------


def test_build_router_from_env_enables_channels_by_env(db_url, monkeypatch):
    for name in ("ALPHAPULSE_SLACK_WEBHOOK_URL", "ALPHAPULSE_ALERT_WEBHOOK_URL", "ALPHAPULSE_SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    router = build_router_from_env(db_url)
    assert [type(c) for c in router.channels] == [LogChannel]

    monkeypatch.setenv("ALPHAPULSE_SLACK_WEBHOOK_URL", "http://127.0.0.1:9/slack/secret")
    monkeypatch.setenv("ALPHAPULSE_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/pager/secret")
    monkeypatch.setenv("ALPHAPULSE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ALPHAPULSE_ALERT_EMAIL_FROM", "alphapulse@example.test")
    monkeypatch.setenv("ALPHAPULSE_ALERT_EMAIL_TO", "ops@example.test, desk@example.test")
    monkeypatch.setenv("ALPHAPULSE_ALERT_MIN_SEVERITY_SLACK", "ERROR")
    monkeypatch.setenv("ALPHAPULSE_ALERT_REPEAT_SECONDS", "600")
    clock = Clock()
    router = build_router_from_env(db_url, clock=clock)
    assert [type(c) for c in router.channels] == [LogChannel, SlackWebhookChannel, JsonWebhookChannel, EmailChannel]
    by_name = {c.name: c for c in router.channels}
    assert by_name["slack"].min_severity is Severity.ERROR
    assert by_name["webhook"].min_severity is Severity.CRITICAL
    assert by_name["email"].recipients == ["ops@example.test", "desk@example.test"]
    assert by_name["email"].port == 587 and by_name["email"].starttls
    assert router.repeat_seconds == 600 and router.clock is clock
    # Channels keep env var names, never the secret values.
    assert all("secret" not in repr(vars(c)) for c in router.channels)

    monkeypatch.setenv("ALPHAPULSE_ALERT_MIN_SEVERITY_SLACK", "loud")
    with pytest.raises(DataValidationError) as info:
        build_router_from_env(db_url)
    assert info.value.where == "ALPHAPULSE_ALERT_MIN_SEVERITY_SLACK"


def test_invalid_alerts_are_refused():
    with pytest.raises(DataValidationError):
        Alert("k", "urgent", "t")
    with pytest.raises(DataValidationError):
        Alert("", "warning", "t")
    with pytest.raises(DataValidationError):
        Alert("k", "warning", "t", status="open")


# -- PostgreSQL ----------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_store_dedupe_persistence_and_concurrency(postgres_url, clock):
    first = Recorder("chat")
    make_router(postgres_url, clock, first).raise_alert(warn())
    second = Recorder("chat")
    assert [o.result for o in make_router(postgres_url, clock, second).raise_alert(warn())] == ["deduplicated"]

    recorders = [Recorder("chat") for _ in range(6)]
    barrier = threading.Barrier(len(recorders))
    errors = []

    def worker(rec):
        try:
            router = make_router(postgres_url, clock, rec)
            barrier.wait(5)
            router.raise_alert(crit("disk"))
            barrier.wait(10)  # every raise is done before anyone resolves
            router.resolve("disk")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(r,)) for r in recorders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    sent = [n for r in recorders for n in r.sent]
    assert sorted(n.status for n in sent) == ["firing", "resolved"]
    # Whichever process sends the resolve describes the alert it resolves.
    assert {(n.alerts[0].title, n.severity) for n in sent} == {("disk is very high", Severity.CRITICAL)}
    store = AlertStore(postgres_url)
    assert [a.key for a in store.open_alerts()] == ["cpu"]
    assert events(store, "disk").count(st.SENT) == 1
    assert events(store, "disk").count(st.RESOLVE_SENT) == 1
    assert first.keys == [["cpu"]] and second.sent == []
