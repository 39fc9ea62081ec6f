"""Monitoring sensors on a real test instance: a simulated resource breach (injected sampler) alerts once and
resolves; a failed asset check gives exactly one alert per configured channel (loopback Slack and JSON
webhooks, aiosmtpd email) and its later success one resolve; run failures alert with the classified error
and resolve on success; health alerts follow daemon heartbeats. Plus the sampler and the health rules.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import time
from collections import namedtuple
from types import SimpleNamespace

import dagster as dg
import pytest
from dagster._daemon.types import DaemonHeartbeat  # internal: no public type; tests write heartbeats as the daemon does

from alphapulse_assets.alerting.alert_store import AlertStore
from alphapulse_assets.monitoring import health as hl
from alphapulse_assets.monitoring.metrics import Counters, ResourceSample, ResourceSampler, SampleStore
from alphapulse_assets.monitoring.sensors import (
    HEALTH,
    HOST_RESOURCES,
    build_check_failure_alert_sensor,
    build_health_check_sensor,
    build_resource_metrics_sensor,
    build_run_failure_sensors,
)
from alphapulse_assets_tests.test_monitoring_channels import Hook, start_smtp

T0 = 1_800_000_000.0
CHANNEL_ENVS = ("ALPHAPULSE_SLACK_WEBHOOK_URL", "ALPHAPULSE_ALERT_WEBHOOK_URL", "ALPHAPULSE_SMTP_HOST")


# -- a psutil stand-in the test drives -------------------------------------------------------------------

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait")
Net = namedtuple("Net", "bytes_recv bytes_sent")
Mem = namedtuple("Mem", "percent")
Disk = namedtuple("Disk", "percent free")


class FakePs:
    def __init__(self):
        self.busy, self.idle = 1000.0, 9000.0
        self.recv, self.sent = 10_000, 5_000
        self.mem = 40.0
        self.disk = {"/": 50.0}
        self.procs = [
            SimpleNamespace(
                info={
                    "cmdline": ["python", "-m", "dagster", "api", "grpc"],
                    "memory_info": SimpleNamespace(rss=100 * 2**20),
                }
            ),
            SimpleNamespace(
                info={"cmdline": ["/usr/bin/dagster-daemon", "run"], "memory_info": SimpleNamespace(rss=50 * 2**20)}
            ),
            SimpleNamespace(info={"cmdline": ["postgres"], "memory_info": SimpleNamespace(rss=999 * 2**20)}),
            SimpleNamespace(info={"cmdline": None, "memory_info": None}),  # access denied
        ]

    def advance(self, seconds: float, cpu_percent: float, recv_rate: float = 0, sent_rate: float = 0):
        self.busy += seconds * cpu_percent / 100
        self.idle += seconds * (100 - cpu_percent) / 100
        self.recv += int(recv_rate * seconds)
        self.sent += int(sent_rate * seconds)

    def cpu_times(self):
        return CpuTimes(self.busy * 0.7, 0.0, self.busy * 0.3, self.idle, 0.0)

    def net_io_counters(self):
        return Net(self.recv, self.sent)

    def virtual_memory(self):
        return Mem(self.mem)

    def disk_usage(self, mount):
        if mount not in self.disk:
            raise FileNotFoundError(mount)
        return Disk(self.disk[mount], int(1e9))

    def getloadavg(self):
        return (0.5, 0.4, 0.3)

    def process_iter(self, attrs):
        return iter(self.procs)


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


def test_sampler_rates_from_counter_deltas():
    ps, clock = FakePs(), Clock()
    sampler = ResourceSampler(("/", "/missing"), ps=ps, clock=clock, host="h1")
    first, counters = sampler.sample(None)
    assert first.cpu_percent is None and first.net_recv_bytes_per_s is None  # no previous reading: no rate
    assert first.memory_percent == 40.0 and first.disk_percent == {"/": 50.0}  # the missing mount is skipped
    assert first.dagster_rss_bytes == 150 * 2**20 and first.dagster_processes == 2
    ps.advance(30, cpu_percent=25, recv_rate=1000, sent_rate=250)
    clock.t += 30
    second, counters2 = sampler.sample(Counters.from_dict(counters.to_dict()))
    assert second.cpu_percent == pytest.approx(25.0)
    assert second.net_recv_bytes_per_s == pytest.approx(1000) and second.net_sent_bytes_per_s == pytest.approx(250)
    assert second.load1 == 0.5
    ps.recv = 0  # counters reset (reboot): no made-up negative rate
    clock.t += 30
    third, _ = sampler.sample(counters2)
    assert third.net_recv_bytes_per_s is None
    assert Counters.from_dict({"at": 1}) is None  # damaged cursor: start over


def test_sample_store_prunes_to_retention(tmp_path):
    store = SampleStore(f"sqlite:///{tmp_path}/p.db")
    for i in range(5):
        store.add(ResourceSample(at=T0 + 3600 * i, cpu_percent=float(i), memory_percent=1.0, host="h"))
    assert store.prune(T0 + 2 * 3600) == 2
    assert store.count() == 3
    assert store.latest().cpu_percent == 4.0
    assert [s.cpu_percent for s in store.since(T0 + 3 * 3600)] == [3.0, 4.0]


# -- shared environment: platform DB and alert channels on loopback ----------------------------------------


@pytest.fixture
def platform_db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/platform.db"
    monkeypatch.setenv("ALPHAPULSE_PLATFORM_DB_URL", url)
    for name in CHANNEL_ENVS:
        monkeypatch.delenv(name, raising=False)
    return url


@pytest.fixture
def channels(platform_db, monkeypatch):
    """Slack, JSON webhook and email all configured (to loopback servers), all taking error and above."""
    hook = Hook()
    hook.thread.start()
    box, controller = start_smtp()
    monkeypatch.setenv("ALPHAPULSE_SLACK_WEBHOOK_URL", hook.url("/slack/T0K3N"))
    monkeypatch.setenv("ALPHAPULSE_ALERT_WEBHOOK_URL", hook.url("/pager"))
    monkeypatch.setenv("ALPHAPULSE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ALPHAPULSE_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("ALPHAPULSE_SMTP_STARTTLS", "false")
    monkeypatch.setenv("ALPHAPULSE_ALERT_EMAIL_FROM", "alphapulse@127.0.0.1")
    monkeypatch.setenv("ALPHAPULSE_ALERT_EMAIL_TO", "ops@127.0.0.1")
    monkeypatch.setenv("ALPHAPULSE_ALERT_MIN_SEVERITY_WEBHOOK", "error")
    monkeypatch.setenv("ALPHAPULSE_ALERT_MIN_SEVERITY_EMAIL", "error")
    monkeypatch.setenv("ALPHAPULSE_ALERT_TIMEOUT_SECONDS", "3")
    try:
        yield SimpleNamespace(hook=hook, box=box)
    finally:
        controller.stop()
        hook.release.set()
        hook.server.shutdown()
        hook.server.server_close()


def delivered(ch) -> dict[str, list[str]]:
    """Per channel, the status of each message it received ("firing" / "resolved")."""
    slack = ["resolved" if "RESOLVED" in json.dumps(p) else "firing" for p in ch.hook.payloads("/slack")]
    pager = [p["status"] for p in ch.hook.payloads("/pager")]
    email = ["resolved" if b"[RESOLVED]" in content else "firing" for _f, _t, content, _a in ch.box.envelopes]
    return {"slack": slack, "webhook": pager, "email": email}


# -- resource sensor -----------------------------------------------------------------------------------------


def test_resource_breach_alerts_once_and_resolves(channels, platform_db):
    ps, clock = FakePs(), Clock()
    sensor = build_resource_metrics_sensor(
        "resources_test", sampler_factory=lambda: ResourceSampler(("/",), ps=ps, clock=clock, host="h1")
    )
    cursor = None
    observed = []
    # memory: 4 normal ticks, 10 ticks (5 min) at 97 % (critical after the 120 s hold), a one-tick dip
    # inside the breach (flapping must not resolve), then 8 ticks back at 50 %.
    memory = [40] * 4 + [97] * 5 + [60] + [97] * 5 + [50] * 8
    with dg.instance_for_test() as instance:
        for value in memory:
            ps.mem = value
            ps.advance(30, cpu_percent=10)
            clock.t += 30
            result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
            cursor = result.cursor
            observed += result.asset_events
    assert delivered(channels) == {
        "slack": ["firing", "resolved"],
        "webhook": ["firing", "resolved"],
        "email": ["firing", "resolved"],
    }
    pager = channels.hook.payloads("/pager")
    assert pager[0]["severity"] == "critical" and pager[0]["alerts"][0]["key"] == "resource:memory_percent"
    assert "memory_percent 97%" in pager[0]["alerts"][0]["title"]
    # Observations for the UI, one per tick, with numeric metadata; the samples are stored.
    assert len(observed) == len(memory) and all(o.asset_key == HOST_RESOURCES for o in observed)
    assert observed[-1].metadata["memory_percent"].value == 50.0
    assert observed[-1].metadata["cpu_percent"].value == pytest.approx(10.0)
    assert SampleStore(platform_db).count() == len(memory)
    assert AlertStore(platform_db).open_alerts() == []
    state = json.loads(cursor)
    assert set(state["rules"]) == {"cpu_percent", "memory_percent", "disk_percent:/"}


def test_resource_sensor_prunes_old_samples(platform_db):
    ps, clock = FakePs(), Clock()
    sensor = build_resource_metrics_sensor(
        "r", sampler_factory=lambda: ResourceSampler(("/",), ps=ps, clock=clock), retention_hours=1
    )
    store = SampleStore(platform_db)
    store.add(ResourceSample(at=T0 - 7200, cpu_percent=1.0, memory_percent=1.0, host="old"))
    with dg.instance_for_test() as instance:
        sensor(dg.build_sensor_context(instance=instance))
    assert store.count() == 1 and store.latest().host != "old"


# -- failed asset checks, end to end -----------------------------------------------------------------------

CHECK_STATE = {"pass": False}


@dg.asset(key=["market", "prices"], check_specs=[dg.AssetCheckSpec("no_gaps", asset=["market", "prices"])])
def prices():
    yield dg.Output(1)
    yield dg.AssetCheckResult(
        check_name="no_gaps",
        passed=CHECK_STATE["pass"],
        severity=dg.AssetCheckSeverity.ERROR,
        description="3 gaps in the 15m bars" if not CHECK_STATE["pass"] else "no gaps",
    )


def test_failed_check_alerts_once_per_channel_and_resolves_once(channels, platform_db):
    sensor = build_check_failure_alert_sensor("checks_test")
    defs = dg.Definitions(assets=[prices], sensors=[sensor])
    with dg.instance_for_test() as instance:

        def tick(cursor):
            result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))
            return result.cursor if isinstance(result, dg.SensorResult) else cursor

        CHECK_STATE["pass"] = False
        assert dg.materialize([prices], instance=instance).success  # a failed non-blocking check: run succeeds
        cursor = tick(None)
        assert delivered(channels) == {"slack": ["firing"], "webhook": ["firing"], "email": ["firing"]}
        cursor = tick(cursor)  # nothing new: no message
        dg.materialize([prices], instance=instance)  # fails again: de-duplicated
        cursor = tick(cursor)
        assert delivered(channels) == {"slack": ["firing"], "webhook": ["firing"], "email": ["firing"]}
        open_now = AlertStore(platform_db).open_alerts()
        assert [(a.key, a.severity.value) for a in open_now] == [("check:market/prices:no_gaps", "error")]
        assert "3 gaps" in open_now[0].body

        CHECK_STATE["pass"] = True
        dg.materialize([prices], instance=instance)
        cursor = tick(cursor)
        tick(cursor)
    assert delivered(channels) == {
        "slack": ["firing", "resolved"],
        "webhook": ["firing", "resolved"],
        "email": ["firing", "resolved"],
    }
    assert channels.hook.payloads("/pager")[0]["title"] == "check no_gaps failed on market/prices"
    assert AlertStore(platform_db).open_alerts() == []


def test_gate_rejection_is_info_not_paged():
    from alphapulse_assets.monitoring.sensors import check_alert_severity

    assert check_alert_severity("models/nightly/BTCUSDT", "promotion_gate", "ERROR").value == "info"
    assert check_alert_severity("market_candles", "no_gaps", "ERROR").value == "error"
    assert check_alert_severity("market_candles", "outliers", "WARN").value == "warning"


# -- run failures -------------------------------------------------------------------------------------------


RUN_STATE = {"fail": True}


@dg.op
def write_model():
    if RUN_STATE["fail"]:
        raise RUN_STATE.get("error") or OSError(errno.ENOSPC, "No space left on device")


@dg.job
def nightly_like():
    write_model()


def _status_event(instance, run_id, event_type):
    return instance.all_logs(run_id, of_type=event_type)[0].dagster_event


@pytest.mark.parametrize(
    "error, text",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "No space left"),
        # SQLite's SQLITE_FULL comes as an OperationalError, which otherwise reads as a transient database fault.
        (sqlite3.OperationalError("database or disk is full"), "database or disk is full"),
    ],
)
def test_run_failure_alert_is_classified_and_resolved_by_success(platform_db, error, text):
    failure_sensor, success_sensor = build_run_failure_sensors()
    store = AlertStore(platform_db)
    with dg.instance_for_test() as instance:
        RUN_STATE["fail"], RUN_STATE["error"] = True, error
        run = nightly_like.execute_in_process(instance=instance, raise_on_error=False)
        assert not run.success
        dagster_run = instance.get_run_by_id(run.run_id)
        ctx = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert_sensor",
            dagster_instance=instance,
            dagster_run=dagster_run,
            dagster_event=_status_event(instance, run.run_id, dg.DagsterEventType.RUN_FAILURE),
        ).for_run_failure()
        failure_sensor(ctx)
        [alert] = store.open_alerts()
        assert alert.key == "run:nightly_like" and alert.severity.value == "critical"
        assert "system error" in alert.title and text in alert.body

        RUN_STATE["fail"] = False
        ok = nightly_like.execute_in_process(instance=instance)
        ctx = dg.build_run_status_sensor_context(
            sensor_name="run_success_resolve_sensor",
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(ok.run_id),
            dagster_event=_status_event(instance, ok.run_id, dg.DagsterEventType.RUN_SUCCESS),
        )
        success_sensor(ctx)
    assert store.open_alerts() == []
    assert [h.event for h in store.history("run:nightly_like") if h.channel is None] == ["raised", "resolved"]


# -- health ---------------------------------------------------------------------------------------------------


def test_health_sensor_alerts_on_stale_daemon_and_resolves(platform_db):
    clock = Clock(time.time())
    sensor = build_health_check_sensor("health_test", clock=clock)
    store = AlertStore(platform_db)
    with dg.instance_for_test() as instance:
        result = sensor(dg.build_sensor_context(instance=instance))
        [obs] = result.asset_events
        assert obs.asset_key == HEALTH and obs.metadata["status"].value == "warning"  # no daemon yet, never trained
        assert "no daemon heartbeat" in obs.metadata["reasons"].value
        assert store.open_alert("health:daemon").severity.value == "warning"

        required = instance.get_required_daemon_types()
        for daemon in required:  # all daemons beat, then go silent for 10 minutes
            instance.add_daemon_heartbeat(DaemonHeartbeat(clock.t - 600, daemon, "d1"))
        sensor(dg.build_sensor_context(instance=instance))
        daemon_alert = store.open_alert("health:daemon")
        assert daemon_alert.severity.value == "critical" and "stale heartbeats" in daemon_alert.title
        sensor(dg.build_sensor_context(instance=instance))  # same state again: not raised again
        assert len(store.history("health:daemon", event="raised")) == 2

        for daemon in required:
            instance.add_daemon_heartbeat(DaemonHeartbeat(clock.t - 5, daemon, "d1"))
        result = sensor(dg.build_sensor_context(instance=instance))
        assert store.open_alert("health:daemon") is None
        checks = result.asset_events[0].metadata["checks"].value
        assert "| daemon | healthy |" in checks and "| code_location | healthy |" in checks


def test_health_rules():
    assert hl.disk_check("/", 96.0, 1e9).status is hl.Status.CRITICAL
    assert hl.disk_check("/", 50.0, 1e9).status is hl.Status.HEALTHY
    assert hl.sources_check({"exchange": "TimeoutError", "sample": None}).status is hl.Status.WARNING
    assert hl.sources_check({"exchange": "TimeoutError"}).status is hl.Status.CRITICAL
    assert hl.freshness_check("nightly", "2024-03-01", {"BTC": 0, "ETH": 1}).status is hl.Status.WARNING
    assert hl.freshness_check("nightly", "2024-03-01", {"BTC": 0, "ETH": 3}).status is hl.Status.CRITICAL
    assert hl.freshness_check("nightly", "2024-03-01", {"BTC": 0, "ETH": 0}).status is hl.Status.HEALTHY
    assert hl.freshness_check("nightly", "2024-03-01", {"BTC": None}).status is hl.Status.WARNING
    assert hl.freshness_grace("0 2 * * *", 900, 3600) == 2 * 3600 + 900 + 3600
    assert hl.breakers_check({"market_data": "open"}, {"market_data": "5 failures"}).status is hl.Status.CRITICAL
    report = hl.overall([hl.CheckResult("a", hl.Status.WARNING, "w"), hl.CheckResult("b", hl.Status.CRITICAL, "c")], T0)
    assert report.status is hl.Status.CRITICAL and report.reasons == ("b: c", "a: w")


def test_source_probe_reports_unreachable_and_hanging_sources():
    from alphapulse_assets.market_data.sources import register_source
    from alphapulse_assets.monitoring.readers import source_results
    from alphapulse_assets.recovery.errors import TransientError
    from alphapulse_assets.settings import AlphaPulseSettings

    class Down:
        def check_reachable(self):
            raise TransientError("connection refused", where="test source")

    class Hangs:
        def check_reachable(self):
            time.sleep(5)

    register_source("test_down", lambda s: Down())
    register_source("test_hangs", lambda s: Hangs())
    settings = AlphaPulseSettings(sources=("sample", "test_down", "test_hangs"))
    results = source_results(settings, timeout=0.3)
    assert results["sample"] is None
    assert "connection refused" in results["test_down"]
    assert "no answer within 0.3 s" in results["test_hangs"]


def test_process_counts_are_of_this_instance_only(tmp_path):
    """Other Dagster instances on the host (other projects, other users) are not this platform's processes."""
    ps = FakePs()
    ours, theirs = str(tmp_path / "home"), str(tmp_path / "other")
    for proc, home in zip(ps.procs, (ours, theirs, ours, None), strict=False):
        proc.info["environ"] = {"DAGSTER_HOME": home} if home else None
    ps.procs.append(
        SimpleNamespace(
            info={
                "cmdline": ["dagster-webserver", "-p", "3000"],
                "memory_info": SimpleNamespace(rss=30 * 2**20),
                "environ": {"DAGSTER_HOME": ours + "/"},
            }
        )
    )
    sample, _ = ResourceSampler(("/",), ps=ps, clock=Clock(), instance_home=ours).sample(None)
    assert sample.dagster_processes == 2 and sample.dagster_rss_bytes == 130 * 2**20  # grpc + webserver


def _health_tick_statements(tmp_path, n_symbols: int) -> tuple[int, dict[str, str]]:
    """SQL statements one health tick runs (instance and platform database), with ``n_symbols`` symbols whose
    models are all materialized: two of them out of the ordinary (an old partition re-run after the newest; a
    symbol two partitions behind). Returns the count and each cadence's freshness finding."""
    import sqlalchemy as sa

    from alphapulse_assets.monitoring import readers
    from alphapulse_assets.settings import AlphaPulseSettings

    symbols = [f"S{i:03d}USDT" for i in range(n_symbols)]
    settings = AlphaPulseSettings(symbols=symbols)
    now = 1_780_000_000.0  # 2026-05-28 20:26 UTC: every cadence has a partition due
    (tmp_path / f"instance-{n_symbols}").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / f"instance-{n_symbols}")) as instance:
        for cadence in readers.CADENCE_NAMES:
            expected = readers.expected_partition(cadence, now, settings, settings.monitoring)
            keys = readers.partitions_for(cadence).get_partition_keys()
            older = keys[keys.index(expected) - 2]
            key = dg.AssetKey(["models", cadence])  # one asset: a (time, symbol) partition per symbol's model
            for symbol in symbols:
                for partition in {"S000USDT": [expected, older], "S001USDT": [older]}.get(symbol, [expected]):
                    instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=f"{partition}|{symbol}"))
        statements: list[str] = []

        def record(conn, cursor, statement, *args):
            statements.append(statement)

        sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
        try:
            report, _ = readers.collect_health(
                instance,
                now=now,
                settings=settings,
                db_url=f"sqlite:///{tmp_path / f'platform-{n_symbols}.db'}",
                check_sources=False,
            )
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    return len(statements), {c.name: c.reason for c in report.checks if c.name.startswith("freshness")}


@pytest.mark.slow
def test_a_health_tick_runs_as_many_queries_for_50_symbols_as_for_5(tmp_path):
    """The freshness of every cadence's models is read in one query per cadence, not one per symbol per cadence
    on every tick; only a symbol whose newest materialization is not the due partition is looked at closer."""
    few, few_findings = _health_tick_statements(tmp_path, 5)
    many, many_findings = _health_tick_statements(tmp_path, 50)
    assert few == many, (few, many)
    for findings in (few_findings, many_findings):
        for cadence in ("nightly", "weekly", "monthly"):
            # S000's old partition re-run after the newest does not make it late; S001 really is.
            assert findings[f"freshness {cadence}"].endswith("S001USDT 2 partitions behind"), findings


def test_champion_files_are_read_again_only_when_they_changed(tmp_path):
    """Each health tick checks every champion's file against its digest. One listing of the store says which
    files changed since this process verified them: those are read and hashed, the others are not read again
    (a tick read every champion of every symbol and cadence). Tampering and deletion are still caught."""
    from pathlib import Path

    from sklearn.linear_model import LogisticRegression

    from alphapulse_assets.monitoring import readers
    from alphapulse_assets.training.registry import ModelRegistry

    url = f"sqlite:///{tmp_path / 'platform.db'}"
    reg = ModelRegistry(str(tmp_path / "models"), url)
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    champions = {}
    for symbol in ("BTCUSDT", "ETHUSDT", "ADAUSDT"):
        champions[symbol] = reg.register(symbol, "weekly", model)
        reg.promote(champions[symbol], reason="gate")
    read = []
    verify = reg.verify

    def counting(mv):
        read.append(mv.label)
        return verify(mv)

    reg.verify = counting
    first = readers.champion_files_check(url, reg)
    assert first.status is hl.Status.HEALTHY and len(read) == 3
    read.clear()
    assert readers.champion_files_check(url, reg).status is hl.Status.HEALTHY and read == []  # nothing changed

    path = Path(champions["ETHUSDT"].uri)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    tampered = readers.champion_files_check(url, reg)
    assert read == ["ETHUSDT/weekly/v1"] and tampered.status is hl.Status.CRITICAL
    assert "ETHUSDT/weekly/v1" in tampered.reason
    read.clear()
    Path(champions["ADAUSDT"].uri).unlink()
    gone = readers.champion_files_check(url, reg)  # the tampered file is read again: it never verified
    assert sorted(read) == ["ADAUSDT/weekly/v1", "ETHUSDT/weekly/v1"] and gone.status is hl.Status.CRITICAL
    assert "ADAUSDT/weekly/v1" in gone.reason and "missing" in gone.reason
