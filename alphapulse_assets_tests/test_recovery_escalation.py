"""Pure parts of the recovery wiring: escalation window, failure classification, configuration."""

import pytest

from alphapulse_assets.recovery.breaker import BreakerConfig
from alphapulse_assets.recovery.config import EscalationConfig, load_recovery_config
from alphapulse_assets.recovery.errors import DataValidationError, ErrorClass, FailureRecord, Severity, class_of_name
from alphapulse_assets.recovery.escalation import EscalationState, observe
from alphapulse_assets.recovery.outcomes import StepFailure, run_outcomes

CFG = EscalationConfig(threshold=5, window_seconds=3600)


def test_five_critical_errors_within_an_hour_escalate_once():
    state = EscalationState()
    for i in range(4):
        s = observe(state, CFG, now=1000 + i * 600, new_errors=[1000 + i * 600])
        assert s.action is None
        state = s.state
    s = observe(state, CFG, now=3500, new_errors=[3500])
    assert s.action == "raise" and s.count == 5 and "5 critical errors within 3600s" in s.message
    state = s.state
    for t in (3600, 3700, 4000):  # the condition holds: not raised again
        s = observe(state, CFG, now=t, new_errors=[t])
        assert s.action is None
        state = s.state
    # Errors age out; below the threshold it stays escalated until the window is empty.
    s = observe(state, CFG, now=4000 + 3599)
    assert s.action is None and s.state.escalated and s.count == 1
    s = observe(s.state, CFG, now=4000 + 3601)
    assert s.action == "resolve" and not s.state.escalated


def test_errors_spread_over_more_than_the_window_never_escalate():
    state = EscalationState()
    for i in range(20):
        s = observe(state, CFG, now=i * 1000.0, new_errors=[i * 1000.0])
        assert s.action is None
        state = s.state


def test_escalation_state_round_trips_and_rejects_garbage():
    state = EscalationState((1.0, 2.0), True, 2.0)
    assert EscalationState.from_dict(state.to_dict()) == state
    assert EscalationState.from_dict(None) == EscalationState()
    with pytest.raises(DataValidationError):
        EscalationState.from_dict({"times": ["x"]})


def test_classification_from_failure_metadata_and_cause_chain():
    meta = FailureRecord(("Failure", "SystemResourceError"), "", {"error_class": "system", "reason": "disk"}).classify()
    assert meta.error_class is ErrorClass.SYSTEM and meta.severity is Severity.CRITICAL
    chain = FailureRecord(("RetryRequestedFromPolicy", "TransientError")).classify()
    assert chain.error_class is ErrorClass.TRANSIENT and chain.severity is Severity.ERROR
    assert FailureRecord(("KeyError",)).classify().error_class is ErrorClass.PERMANENT
    assert class_of_name("ConnectionResetError") is ErrorClass.TRANSIENT
    assert class_of_name("MemoryError") is ErrorClass.SYSTEM
    assert class_of_name("UnknownSymbolError") is ErrorClass.PERMANENT
    assert class_of_name("RequestTimeout") is ErrorClass.TRANSIENT
    assert class_of_name("RetryRequestedFromPolicy") is None


def test_run_outcomes_one_per_dependency_worst_class_wins():
    failures = [
        StepFailure(("training",), FailureRecord(("TransientError",), "db gone")),
        StepFailure(("training",), FailureRecord(("SystemResourceError",), "oom")),
        StepFailure(("training",), FailureRecord(("UnknownSymbolError",), "no such symbol")),
    ]
    [out] = run_outcomes(False, ["training"], [], failures)
    assert not out.ok and out.error_class is ErrorClass.SYSTEM and out.critical and "oom" in out.detail
    # Transient beats permanent: the run still says the dependency had an outage.
    [out] = run_outcomes(False, ["training"], [], [failures[2], failures[0]])
    assert out.error_class is ErrorClass.TRANSIENT and "db gone" in out.detail
    # A run that failed before any step: every dependency of its job failed, transiently.
    outs = run_outcomes(False, ["market_data"], [], [], "RUN_EXCEPTION")
    assert [(o.dependency, o.ok, o.error_class) for o in outs] == [("market_data", False, ErrorClass.TRANSIENT)]
    assert [o.ok for o in run_outcomes(True, ["a", "b"], [], [])] == [True, True]


def test_config_defaults_follow_the_guide_and_env_overrides_per_breaker():
    cfg = load_recovery_config({})
    assert cfg.breaker("market_data") == BreakerConfig() and cfg.breaker("market_data").failure_threshold == 5
    assert cfg.breaker("market_data").recovery_timeout == 60
    assert cfg.escalation == EscalationConfig(5, 3600) and cfg.host.memory_critical_percent == 95
    assert cfg.heavy_cadences == ("monthly",)
    cfg = load_recovery_config(
        {
            "ALPHAPULSE_BREAKER__RECOVERY_TIMEOUT": "30",
            "ALPHAPULSE_BREAKER__TRAINING__FAILURE_THRESHOLD": "2",
            "ALPHAPULSE_BREAKER__TRAINING__FAILURE_RATE_THRESHOLD": "none",
            "ALPHAPULSE_BREAKER_DEPENDENCIES": "market_data,training,db",
            "ALPHAPULSE_HEAVY_CADENCES": "weekly,monthly",
        }
    )
    assert cfg.breaker("training").failure_threshold == 2 and cfg.breaker("training").recovery_timeout == 30
    assert cfg.breaker("training").failure_rate_threshold is None
    assert cfg.breaker("market_data").failure_threshold == 5 and cfg.breaker("db").recovery_timeout == 30
    assert cfg.heavy_cadences == ("weekly", "monthly") and cfg.known("db")
    with pytest.raises(DataValidationError, match="ALPHAPULSE_BREAKER__TRAINING__FAILURE_THRESHOLD"):
        load_recovery_config({"ALPHAPULSE_BREAKER__TRAINING__FAILURE_THRESHOLD": "many"})
