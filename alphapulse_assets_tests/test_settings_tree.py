"""One settings tree: every group reads its variables (nested names and the older aliases) through
``AlphaPulseSettings``, and a bad value in any group is refused naming the variable, secrets hidden."""

import pytest

from alphapulse_assets.alerting.alerts import build_router_from_env
from alphapulse_assets.recovery.config import load_recovery_config
from alphapulse_assets.settings import LEGACY_NAMES, SettingsError, env_tree, load_settings

GOOD = [
    # (variable, value, where it lands, expected)
    ("ALPHAPULSE_MONITORING__RETENTION_HOURS", "48", lambda s: s.monitoring.retention_hours, 48.0),
    ("ALPHAPULSE_MONITORING_RETENTION_HOURS", "48", lambda s: s.monitoring.retention_hours, 48.0),
    ("ALPHAPULSE_MONITORING_MOUNT_POINTS", "/, /data", lambda s: s.monitoring.mount_points, ("/", "/data")),
    (
        "ALPHAPULSE_MONITORING__RUN_STATUS_INTERVAL_SECONDS",
        "5",
        lambda s: s.monitoring.run_status_interval_seconds,
        5,
    ),
    ("ALPHAPULSE_MONITORING__DEAD_RUN_INTERVAL_SECONDS", "10", lambda s: s.monitoring.dead_run_interval_seconds, 10),
    ("ALPHAPULSE_BREAKER__RECOVERY_TIMEOUT", "120", lambda s: s.breaker.recovery_timeout, 120.0),
    (
        "ALPHAPULSE_BREAKER__TRAINING__FAILURE_THRESHOLD",
        "2",
        lambda s: (s.breaker.own("training") or s.breaker).failure_threshold,
        2,
    ),
    (
        "ALPHAPULSE_BREAKER_DEPENDENCIES",
        "market_data,training,db",
        lambda s: s.breaker.dependencies,
        ("market_data", "training", "db"),
    ),
    ("ALPHAPULSE_ESCALATION__WINDOW_SECONDS", "600", lambda s: s.escalation.window_seconds, 600.0),
    ("ALPHAPULSE_HOST__DISK_CRITICAL_PERCENT", "90", lambda s: s.host.disk_critical_percent, 90.0),
    ("ALPHAPULSE_HEAVY_CADENCES", "weekly,monthly", lambda s: s.heavy_cadences, ("weekly", "monthly")),
    ("ALPHAPULSE_ALERT_REPEAT_SECONDS", "600", lambda s: s.alerts.repeat_seconds, 600.0),
    ("ALPHAPULSE_ALERTS__GROUP_WINDOW_SECONDS", "5", lambda s: s.alerts.group_window_seconds, 5.0),
    ("ALPHAPULSE_ALERT_MIN_SEVERITY_SLACK", "ERROR", lambda s: s.alerts.min_severity.slack, "error"),
    ("ALPHAPULSE_ALERTS__MIN_SEVERITY__EMAIL", "critical", lambda s: s.alerts.min_severity.email, "critical"),
    ("ALPHAPULSE_SMTP_STARTTLS", "false", lambda s: s.alerts.smtp_starttls, False),
    ("ALPHAPULSE_RETRY__MAX_RETRIES", "5", lambda s: s.retry.max_retries, 5),
    ("ALPHAPULSE_QUALITY__MAX_MISSING_FRACTION", "0.02", lambda s: s.quality.max_missing_fraction, 0.02),
    ("ALPHAPULSE_GATE__ALPHA", "0.01", lambda s: s.gate.alpha, 0.01),
    ("ALPHAPULSE_LIVE__MIN_BARS", "300", lambda s: s.live.min_bars, 300),
    ("ALPHAPULSE_LIVE__ROLLBACK", "false", lambda s: s.live.rollback, False),
    ("ALPHAPULSE_SCALE__WORKERS", "3", lambda s: s.scale.workers, 3),
    ("ALPHAPULSE_SCALE__MIN_POOL_SECONDS", "0", lambda s: s.scale.min_pool_seconds, 0.0),
]


@pytest.mark.parametrize("name, value, get, expected", GOOD, ids=[n for n, *_ in GOOD])
def test_each_group_reads_its_variables_through_the_one_tree(name, value, get, expected):
    assert get(load_settings({name: value})) == expected
    assert get(load_settings({})) != expected  # not the default by chance


def test_the_nested_name_wins_over_its_alias_and_empty_means_unset():
    s = load_settings(
        {
            "ALPHAPULSE_MONITORING_RETENTION_HOURS": "12",
            "ALPHAPULSE_MONITORING__RETENTION_HOURS": "48",
            "ALPHAPULSE_ALERT_TIMEOUT_SECONDS": "",
        }
    )
    assert s.monitoring.retention_hours == 48 and s.alerts.timeout_seconds == 5
    assert all(name.startswith("ALPHAPULSE_") for name in LEGACY_NAMES)
    assert env_tree({"ALPHAPULSE_WEEKLY": '{"min_rows": 5}', "ALPHAPULSE_WEEKLY__WINDOW_DAYS": "9"}) == {
        "weekly": {"min_rows": 5, "window_days": "9"}
    }


def test_recovery_and_alert_routing_are_built_from_the_tree(tmp_path, monkeypatch):
    cfg = load_recovery_config(
        {"ALPHAPULSE_BREAKER__MARKET_DATA__FAILURE_RATE_THRESHOLD": "off", "ALPHAPULSE_ESCALATION__THRESHOLD": "2"}
    )
    assert cfg.breaker("market_data").failure_rate_threshold is None and cfg.breaker("training").failure_rate_threshold
    assert cfg.escalation.threshold == 2
    alerts = load_settings(
        {"ALPHAPULSE_ALERTS__WEBHOOK_URL": "https://pager.example/T0K3N", "ALPHAPULSE_ALERTS__TIMEOUT_SECONDS": "2"}
    ).alerts
    router = build_router_from_env(f"sqlite:///{tmp_path / 'p.db'}", settings=alerts)
    hook = {c.name: c for c in router.channels}["webhook"]
    assert hook.url_env == "ALPHAPULSE_ALERTS__WEBHOOK_URL" and hook.timeout == 2
    assert "T0K3N" not in repr(alerts) and "T0K3N" not in str(alerts.model_dump())


BAD = [
    # (variable, value, what the refusal says)
    ("ALPHAPULSE_MONITORING__RETENTION_HOURS", "0", "greater than 0"),
    ("ALPHAPULSE_MONITORING_METRICS_INTERVAL_SECONDS", "1", "greater than or equal to 5"),
    ("ALPHAPULSE_MONITORING__RUN_STATUS_INTERVAL_SECONDS", "0", "greater than or equal to 5"),
    ("ALPHAPULSE_MONITORING__DEAD_RUN_INTERVAL_SECONDS", "often", "valid integer"),
    ("ALPHAPULSE_BREAKER__WINDOW_SECONDS", "five minutes", "not a number"),
    ("ALPHAPULSE_BREAKER__TRAINING__FAILURE_THRESHOLD", "many", "not a number"),
    ("ALPHAPULSE_BREAKER__MARKET_DATA__FAILURE_RATE_THRESHOLD", "1.5", "in (0, 1]"),
    ("ALPHAPULSE_BREAKER__DB__FAILURE_THRESHOLD", "3", "not in ALPHAPULSE_BREAKER__DEPENDENCIES"),
    ("ALPHAPULSE_ESCALATION__THRESHOLD", "0", "greater than or equal to 1"),
    ("ALPHAPULSE_HOST__MEMORY_CRITICAL_PERCENT", "101", "less than or equal to 100"),
    ("ALPHAPULSE_HEAVY_CADENCES", "yearly", "unknown cadence"),
    ("ALPHAPULSE_ALERT_MIN_SEVERITY_SLACK", "loud", "unknown severity"),
    ("ALPHAPULSE_ALERTS__MIN_SEVERITY__WEBHOOK", "loud", "unknown severity"),
    ("ALPHAPULSE_ALERT_TIMEOUT_SECONDS", "-1", "greater than or equal to 0"),
    ("ALPHAPULSE_ALERT_REPEAT_SECONDS", "soon", "valid number"),
    ("ALPHAPULSE_SMTP_PORT", "70000", "less than or equal to 65535"),
    ("ALPHAPULSE_SMTP_STARTTLS", "perhaps", "valid boolean"),
    ("ALPHAPULSE_RETRY__MAX_RETRIES", "-1", "greater than or equal to 0"),
    ("ALPHAPULSE_RETRY__BACKOFF_FACTOR", "3", "Extra inputs are not permitted"),
    ("ALPHAPULSE_GATE__ROLLBACK_DROP", "0.2", "Extra inputs are not permitted"),  # live scoring decides rollbacks
    ("ALPHAPULSE_LIVE__ALPHA", "1.5", "less than 1"),
    ("ALPHAPULSE_LIVE__CRON", "daily", "cron expression of five fields"),
    ("ALPHAPULSE_SCALE__WORKERS", "0", "greater than or equal to 1"),
    ("ALPHAPULSE_SCALE__WORKERS", "all", "valid integer"),
    ("ALPHAPULSE_SCALE__MIN_POOL_SECONDS", "-1", "greater than or equal to 0"),
]


@pytest.mark.parametrize("name, value, why", BAD, ids=[f"{n}={v}" for n, v, _ in BAD])
def test_a_bad_value_in_each_group_is_refused_naming_the_variable(name, value, why):
    with pytest.raises(SettingsError) as refused:
        load_recovery_config({name: value})  # reads the whole tree, then the breaker rules
    message = str(refused.value)
    assert f"{name}={value!r}" in message and why in message, message
    assert refused.value.where == name


def test_a_rule_between_alert_values_names_the_variables():
    with pytest.raises(SettingsError, match="ALPHAPULSE_SMTP_HOST is set but ALPHAPULSE_ALERT_EMAIL_FROM"):
        load_settings({"ALPHAPULSE_SMTP_HOST": "127.0.0.1", "ALPHAPULSE_SLACK_WEBHOOK_URL": "https://h/T0K3N"})


def test_a_rule_between_live_scoring_values_names_the_variables():
    with pytest.raises(
        SettingsError, match="ALPHAPULSE_LIVE__MIN_BARS .900. must not exceed ALPHAPULSE_LIVE__WINDOW_BARS"
    ):
        load_settings({"ALPHAPULSE_LIVE__MIN_BARS": "900"})
    with pytest.raises(SettingsError, match="ALPHAPULSE_LIVE__ALPHA .0.001. must exceed"):
        load_settings({"ALPHAPULSE_LIVE__ALPHA": "0.001", "ALPHAPULSE_LIVE__N_BOOT": "100"})


@pytest.mark.parametrize("name", ["ALPHAPULSE_SLACK_WEBHOOK_URL", "ALPHAPULSE_ALERTS__WEBHOOK_URL"])
def test_a_bad_secret_is_refused_without_showing_it(name):
    with pytest.raises(SettingsError) as refused:
        load_settings({name: "hooks.example/T0K3N"})
    message = str(refused.value)
    assert name in message and "http(s) URL" in message and "T0K3N" not in message, message
