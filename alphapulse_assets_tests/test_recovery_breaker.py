"""The pure breaker state machine, driven by an explicit clock."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphapulse_assets.recovery import breaker as bk
from alphapulse_assets.recovery.breaker import (
    BreakerConfig,
    BreakerConfigError,
    BreakerState,
    CircuitState,
    Transition,
)
from alphapulse_assets.recovery.errors import DataValidationError, ErrorClass, PermanentError
from alphapulse_assets_tests.clock import T0
from alphapulse_assets_tests.clock import FakeClock as Clock

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
FORCED_OPEN, DISABLED = CircuitState.FORCED_OPEN, CircuitState.DISABLED


def fail(state, cfg, now, cls=ErrorClass.TRANSIENT, detail="HTTP 503"):
    return bk.record_failure(state, cfg, now, cls, detail)


def trip(cfg: BreakerConfig, now: float) -> BreakerState:
    """A breaker that has just opened through consecutive failures at ``now``."""
    state = bk.initial_state(now)
    for _ in range(cfg.failure_threshold):
        state, _ = fail(state, cfg, now)
    assert state.state is OPEN
    return state


def assert_events(transitions: list[Transition], *pairs: tuple[CircuitState, CircuitState]) -> None:
    assert [(t.from_state, t.to_state) for t in transitions] == list(pairs)
    for t in transitions:
        assert t.reason.strip(), f"transition {t} has no reason"


# -- defaults and configuration ---------------------------------------------------------------------


def test_defaults_follow_the_design_guide():
    cfg = BreakerConfig()
    assert cfg.failure_threshold == 5
    assert cfg.recovery_timeout == 60
    assert (cfg.failure_rate_threshold, cfg.window_seconds, cfg.minimum_calls) == (0.5, 300, 10)
    assert (cfg.half_open_max_probes, cfg.half_open_success_threshold) == (1, 1)
    assert (cfg.backoff_factor, cfg.max_recovery_timeout) == (2, 900)


@pytest.mark.parametrize(
    "field, value",
    [
        ("failure_threshold", 0),
        ("failure_rate_threshold", 0.0),
        ("failure_rate_threshold", 1.5),
        ("window_seconds", 0),
        ("minimum_calls", 0),
        ("recovery_timeout", -1),
        ("backoff_factor", 0.5),
        ("max_recovery_timeout", 10),
        ("half_open_max_probes", 0),
        ("half_open_success_threshold", 0),
        ("probe_timeout", 0),
    ],
)
def test_bad_config_is_a_permanent_error_naming_the_field(field, value):
    with pytest.raises(BreakerConfigError) as info:
        BreakerConfig(**{field: value})
    assert isinstance(info.value, PermanentError)
    assert info.value.where == f"BreakerConfig.{field}"
    assert field in str(info.value)


# -- CLOSED -> OPEN ---------------------------------------------------------------------------------


def test_trips_after_consecutive_failures_with_a_reason():
    cfg = BreakerConfig(failure_rate_threshold=None)
    state = bk.initial_state(T0)
    for i in range(4):
        state, events = fail(state, cfg, T0 + i)
        assert state.state is CLOSED and events == []
    assert state.consecutive_failures == 4
    state, events = fail(state, cfg, T0 + 4)
    assert state.state is OPEN
    assert state.since == T0 + 4 and state.current_timeout == 60 and state.open_count == 1
    assert_events(events, (CLOSED, OPEN))
    assert events[0].at == T0 + 4
    assert "5 consecutive failures" in events[0].reason and "HTTP 503" in events[0].reason


def test_a_success_breaks_the_streak():
    cfg = BreakerConfig(failure_rate_threshold=None)
    state = bk.initial_state(T0)
    for i in range(4):
        state, _ = fail(state, cfg, T0 + i)
    state, _ = bk.record_success(state, cfg, T0 + 5)
    assert state.consecutive_failures == 0
    for i in range(4):
        state, _ = fail(state, cfg, T0 + 10 + i)
    assert state.state is CLOSED


def test_system_errors_count_like_transient_ones():
    cfg = BreakerConfig(failure_rate_threshold=None)
    state = bk.initial_state(T0)
    for _ in range(5):
        state, _ = fail(state, cfg, T0, ErrorClass.SYSTEM, "disk full")
    assert state.state is OPEN and state.last_error_class is ErrorClass.SYSTEM


def test_permanent_errors_do_not_count_but_are_recorded():
    cfg = BreakerConfig()
    state = bk.initial_state(T0)
    for i in range(50):
        state, events = fail(state, cfg, T0 + i, ErrorClass.PERMANENT, "unknown symbol")
        assert events == []
    assert state.state is CLOSED
    assert state.consecutive_failures == 0 and state.window == () and state.failures == 0
    assert state.permanent_failures == 50 and state.last_error_class is ErrorClass.PERMANENT
    # ... and they neither break nor extend a streak of counted failures.
    for i in range(4):
        state, _ = fail(state, cfg, T0 + 100 + i)
    state, _ = fail(state, cfg, T0 + 104, ErrorClass.PERMANENT)
    assert state.state is CLOSED and state.consecutive_failures == 4
    state, _ = fail(state, cfg, T0 + 105)
    assert state.state is OPEN


def test_failure_rate_trips_once_the_window_holds_the_minimum_calls():
    cfg = BreakerConfig(failure_threshold=100, failure_rate_threshold=0.5, window_seconds=300, minimum_calls=10)
    state = bk.initial_state(T0)
    # Alternate: never 2 consecutive failures, rate 50 % once there are enough calls.
    for i in range(9):
        if i % 2 == 0:
            state, events = fail(state, cfg, T0 + i)
        else:
            state, events = bk.record_success(state, cfg, T0 + i)
        assert state.state is CLOSED, f"tripped after {i + 1} calls, below the minimum of 10"
    state, events = bk.record_success(state, cfg, T0 + 9)  # 10 calls, 5 failures, but a success
    assert state.state is CLOSED
    state, events = fail(state, cfg, T0 + 10)  # 11 calls, 6 failures: 55 %
    assert state.state is OPEN
    assert_events(events, (CLOSED, OPEN))
    assert "failure rate 55%" in events[0].reason and "6 of 11" in events[0].reason


def test_below_the_minimum_calls_even_100_percent_failures_do_not_trip_the_rate_rule():
    cfg = BreakerConfig(failure_threshold=100, minimum_calls=10)
    state = bk.initial_state(T0)
    for i in range(9):
        state, _ = fail(state, cfg, T0 + i)
    assert state.state is CLOSED and len(state.window) == 9
    state, events = fail(state, cfg, T0 + 9)
    assert state.state is OPEN and "failure rate 100%" in events[0].reason


def test_old_outcomes_fall_out_of_the_window():
    cfg = BreakerConfig(failure_threshold=100, window_seconds=300, minimum_calls=10)
    state = bk.initial_state(T0)
    for i in range(9):
        state, _ = fail(state, cfg, T0 + i)
    # 300.5 s after the first failure it has left the window: 8 old + 1 new = 9 < 10 calls.
    state, _ = fail(state, cfg, T0 + 300.5)
    assert state.state is CLOSED
    assert len(state.window) == 9 and state.window[0][0] == T0 + 1
    # Much later, the whole old window is gone.
    state, _ = bk.record_success(state, cfg, T0 + 10_000)
    assert state.window == ((T0 + 10_000, True),)


def test_the_window_is_capped():
    cfg = BreakerConfig(failure_threshold=100, minimum_calls=5, window_max_calls=20)
    state = bk.initial_state(T0)
    for i in range(100):
        state, _ = bk.record_success(state, cfg, T0 + i * 0.1)
    assert len(state.window) == 20 and state.window[-1][0] == pytest.approx(T0 + 9.9)


# -- OPEN, lazily HALF_OPEN, probes ------------------------------------------------------------------


def test_open_refuses_and_says_when_to_come_back():
    cfg = BreakerConfig()
    state = trip(cfg, T0)
    decision, new, events = bk.allow_request(state, cfg, T0 + 59.9)
    assert not decision.allowed and not decision.is_probe
    assert decision.retry_at == T0 + 60
    assert decision.reason.startswith("open:") and "consecutive failures" in decision.reason
    assert new == state and events == []


def test_timeout_passing_with_no_calls_reads_half_open():
    cfg = BreakerConfig()
    state = trip(cfg, T0)
    assert bk.current(state, cfg, T0 + 59.999)[0].state is OPEN
    seen, events = bk.current(state, cfg, T0 + 3600)  # nobody called for an hour
    assert seen.state is HALF_OPEN
    assert_events(events, (OPEN, HALF_OPEN))
    # The transition happened when the timeout ran out, not when someone looked.
    assert events[0].at == T0 + 60 and seen.since == T0 + 60
    assert "recovery timeout of 60s elapsed" in events[0].reason
    # Reading is pure: the input snapshot is untouched.
    assert state.state is OPEN


def test_half_open_grants_one_probe_at_a_time():
    cfg = BreakerConfig()
    state = trip(cfg, T0)
    decision, state, events = bk.allow_request(state, cfg, T0 + 60)
    assert decision.allowed and decision.is_probe
    assert_events(events, (OPEN, HALF_OPEN))
    assert state.half_open_probes_in_flight == 1
    second, state2, events2 = bk.allow_request(state, cfg, T0 + 61)
    assert not second.allowed and "1 probe(s) already in flight" in second.reason
    assert state2 == state and events2 == []


def test_several_probes_and_successes_when_configured():
    cfg = BreakerConfig(half_open_max_probes=2, half_open_success_threshold=3)
    state = trip(cfg, T0)
    d1, state, _ = bk.allow_request(state, cfg, T0 + 60)
    d2, state, _ = bk.allow_request(state, cfg, T0 + 60)
    d3, state, _ = bk.allow_request(state, cfg, T0 + 60)
    assert (d1.allowed, d2.allowed, d3.allowed) == (True, True, False)
    state, events = bk.record_success(state, cfg, T0 + 61)
    assert state.state is HALF_OPEN and state.half_open_successes == 1 and events == []
    assert state.half_open_probes_in_flight == 1
    d4, state, _ = bk.allow_request(state, cfg, T0 + 61)
    assert d4.allowed and d4.is_probe
    state, _ = bk.record_success(state, cfg, T0 + 62)
    assert state.state is HALF_OPEN
    state, events = bk.record_success(state, cfg, T0 + 63)
    assert state.state is CLOSED
    assert_events(events, (HALF_OPEN, CLOSED))
    assert "3 probe success(es)" in events[0].reason


def test_probe_success_closes_and_resets_everything():
    cfg = BreakerConfig()
    state = trip(cfg, T0)
    _, state, _ = bk.allow_request(state, cfg, T0 + 60)
    state, events = bk.record_success(state, cfg, T0 + 61)
    assert state.state is CLOSED and state.since == T0 + 61
    assert_events(events, (HALF_OPEN, CLOSED))
    assert (state.consecutive_failures, state.window, state.open_count, state.current_timeout) == (0, (), 0, 0)
    assert state.half_open_probes_in_flight == 0 and state.half_open_successes == 0
    # The old failures are forgotten: it takes a full new streak to trip again, with the base timeout.
    for i in range(4):
        state, _ = fail(state, cfg, T0 + 70 + i)
    assert state.state is CLOSED
    state, _ = fail(state, cfg, T0 + 80)
    assert state.state is OPEN and state.current_timeout == 60


def test_probe_failure_reopens_with_a_longer_timeout_capped():
    cfg = BreakerConfig(recovery_timeout=60, backoff_factor=2, max_recovery_timeout=300)
    state = trip(cfg, T0)
    now = T0
    expected = [120, 240, 300, 300]
    for timeout in expected:
        now += state.current_timeout
        decision, state, _ = bk.allow_request(state, cfg, now)
        assert decision.is_probe
        state, events = fail(state, cfg, now + 1, detail="still down")
        now += 1
        assert state.state is OPEN and state.current_timeout == timeout and state.since == now
        assert_events(events, (HALF_OPEN, OPEN))
        assert "probe failed (transient: still down)" in events[0].reason
        assert f"retry in {timeout}s" in events[0].reason
        # Just before the longer timeout it is still open.
        assert bk.current(state, cfg, now + timeout - 0.001)[0].state is OPEN
        assert bk.current(state, cfg, now + timeout)[0].state is HALF_OPEN
    assert state.open_count == 1 + len(expected)
    # Closing resets the backoff.
    now += state.current_timeout
    _, state, _ = bk.allow_request(state, cfg, now)
    state, _ = bk.record_success(state, cfg, now)
    for _ in range(5):
        state, _ = fail(state, cfg, now + 2)
    assert state.state is OPEN and state.current_timeout == 60 and state.open_count == 1


def test_a_failure_reported_after_the_timeout_without_a_probe_request_also_reopens():
    cfg = BreakerConfig()
    state = trip(cfg, T0)
    state, events = fail(state, cfg, T0 + 100)
    assert_events(events, (OPEN, HALF_OPEN), (HALF_OPEN, OPEN))
    assert state.state is OPEN and state.current_timeout == 120


def test_a_permanent_probe_failure_frees_the_slot_and_decides_nothing():
    cfg = BreakerConfig()
    state = trip(cfg, T0)
    _, state, _ = bk.allow_request(state, cfg, T0 + 60)
    state, events = fail(state, cfg, T0 + 61, ErrorClass.PERMANENT, "bad symbol")
    assert state.state is HALF_OPEN and state.half_open_probes_in_flight == 0 and events == []
    decision, state, _ = bk.allow_request(state, cfg, T0 + 62)
    assert decision.allowed and decision.is_probe


def test_a_lost_probe_frees_its_slot_after_the_probe_timeout():
    cfg = BreakerConfig(probe_timeout=30)
    state = trip(cfg, T0)
    _, state, _ = bk.allow_request(state, cfg, T0 + 60)
    refused, state, _ = bk.allow_request(state, cfg, T0 + 89)
    assert not refused.allowed and refused.retry_at == T0 + 90
    granted, state, events = bk.allow_request(state, cfg, T0 + 90)
    assert granted.allowed and granted.is_probe and events == []
    assert state.half_open_probes_in_flight == 1 and state.probe_started_at == T0 + 90


def test_outcomes_while_open_change_only_the_totals():
    cfg = BreakerConfig()
    state = trip(cfg, T0)
    later, events = bk.record_success(state, cfg, T0 + 1)
    assert later.state is OPEN and events == [] and later.successes == state.successes + 1
    later, events = fail(later, cfg, T0 + 2)
    assert later.state is OPEN and events == [] and later.since == T0 and later.failures == state.failures + 1


# -- operator states --------------------------------------------------------------------------------


def test_forced_open_ignores_successes_and_failures_until_reset():
    cfg = BreakerConfig()
    state = bk.initial_state(T0)
    state, events = bk.force_open(state, "alice", "exchange maintenance", T0)
    assert state.state is FORCED_OPEN and state.forced_by == "alice"
    assert_events(events, (CLOSED, FORCED_OPEN))
    assert events[0].reason == "forced open by alice: exchange maintenance"
    for i in range(20):
        state, events = bk.record_success(state, cfg, T0 + i)
        assert state.state is FORCED_OPEN and events == []
    for i in range(20):
        state, events = fail(state, cfg, T0 + 100 + i)
        assert state.state is FORCED_OPEN and events == []
    decision, state, _ = bk.allow_request(state, cfg, T0 + 10**6)  # no timeout ever frees it
    assert not decision.allowed and decision.retry_at is None
    assert "alice" in decision.reason and "exchange maintenance" in decision.reason
    assert state.consecutive_failures == 0 and state.window == ()
    state, events = bk.reset(state, "bob", "maintenance over", T0 + 200)
    assert state.state is CLOSED and state.forced_by is None
    assert_events(events, (FORCED_OPEN, CLOSED))
    assert events[0].reason == "reset by bob: maintenance over"
    assert (state.successes, state.failures) == (20, 20)  # totals survive a reset


def test_force_open_from_open_and_from_half_open():
    cfg = BreakerConfig()
    state = trip(cfg, T0)
    forced, events = bk.force_open(state, "ops", "hold", T0 + 1)
    assert_events(events, (OPEN, FORCED_OPEN))
    half = bk.current(state, cfg, T0 + 60)[0]
    _, half, _ = bk.allow_request(half, cfg, T0 + 60)
    forced, events = bk.force_open(half, "ops", "hold", T0 + 61)
    assert_events(events, (HALF_OPEN, FORCED_OPEN))
    assert forced.half_open_probes_in_flight == 0


def test_disabled_always_allows_and_never_trips():
    cfg = BreakerConfig(failure_threshold=1, minimum_calls=1, failure_rate_threshold=0.01)
    state = trip(cfg, T0)
    state, events = bk.disable(state, "carol", "breaker misfires", T0 + 1)
    assert_events(events, (OPEN, DISABLED))
    assert events[0].reason == "disabled by carol: breaker misfires"
    for i in range(100):
        state, events = fail(state, cfg, T0 + 2 + i, ErrorClass.SYSTEM)
        assert state.state is DISABLED and events == []
        decision, state, events = bk.allow_request(state, cfg, T0 + 2 + i)
        assert decision.allowed and not decision.is_probe and events == []
    assert state.failures == 101  # 1 from the trip + 100 while disabled
    state, events = bk.reset(state, "carol", "fixed", T0 + 500)
    assert_events(events, (DISABLED, CLOSED))


def test_reset_from_closed_is_logged_too():
    state, events = bk.reset(bk.initial_state(T0), "dave", "drill", T0 + 1)
    assert state.state is CLOSED
    assert_events(events, (CLOSED, CLOSED))


def test_closed_allows():
    cfg = BreakerConfig()
    state = bk.initial_state(T0)
    decision, new, events = bk.allow_request(state, cfg, T0)
    assert decision.allowed and not decision.is_probe and new == state and events == []


def test_the_injected_clock_drives_the_whole_cycle():
    cfg = BreakerConfig()
    clock = Clock()
    state = bk.initial_state(clock())
    log: list[Transition] = []
    for _ in range(5):
        state, ev = fail(state, cfg, clock.advance(1))
        log += ev
    clock.advance(59)
    assert bk.allow_request(state, cfg, clock())[0].allowed is False
    clock.advance(1)
    decision, state, ev = bk.allow_request(state, cfg, clock())
    log += ev
    assert decision.is_probe
    state, ev = bk.record_success(state, cfg, clock.advance(2))
    log += ev
    assert [(t.from_state, t.to_state) for t in log] == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert [t.at for t in log] == [T0 + 5, T0 + 65, T0 + 67]


# -- serialisation ----------------------------------------------------------------------------------


def test_state_round_trips_through_json():
    cfg = BreakerConfig(half_open_max_probes=2)
    state = trip(cfg, T0)
    state, _ = fail(state, cfg, T0 + 1, ErrorClass.PERMANENT)
    _, state, _ = bk.allow_request(state, cfg, T0 + 60)
    text = json.dumps(state.to_dict())
    back = BreakerState.from_dict(json.loads(text))
    assert back == state
    assert back.state is HALF_OPEN and back.half_open_probes_in_flight == 1
    assert json.loads(text)["state"] == "half_open"
    forced, _ = bk.force_open(back, "x", "y", T0 + 70)
    assert BreakerState.from_dict(json.loads(json.dumps(forced.to_dict()))) == forced


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"state": "ajar", "since": 0},
        {"state": "open", "since": "soon"},
        {"state": "closed", "since": 0, "consecutive_failures": -1},
        {"state": "closed", "since": 0, "v": 99},
    ],
)
def test_malformed_state_is_a_data_validation_error(data):
    with pytest.raises(DataValidationError) as info:
        BreakerState.from_dict(data, where="alphapulse_breakers[x]")
    assert info.value.where == "alphapulse_breakers[x]"


# -- property ----------------------------------------------------------------------------------------

operations = st.lists(
    st.tuples(
        st.sampled_from(["ok", "transient", "system", "permanent", "allow", "look", "force", "disable", "reset"]),
        st.floats(min_value=0, max_value=400, allow_nan=False),
    ),
    max_size=80,
)
configs = st.builds(
    BreakerConfig,
    failure_threshold=st.integers(1, 6),
    failure_rate_threshold=st.one_of(st.none(), st.floats(0.1, 1.0)),
    window_seconds=st.floats(1, 600),
    minimum_calls=st.integers(1, 12),
    recovery_timeout=st.floats(0, 120),
    backoff_factor=st.floats(1, 3),
    max_recovery_timeout=st.just(300.0),
    half_open_max_probes=st.integers(1, 3),
    half_open_success_threshold=st.integers(1, 3),
    probe_timeout=st.one_of(st.none(), st.floats(1, 200)),
)


@settings(max_examples=300, deadline=None)
@given(cfg=configs, ops=operations)
def test_property_states_and_counters_stay_sane(cfg, ops):
    now = T0
    state = bk.initial_state(now)
    reported = {"ok": 0, "counted": 0, "permanent": 0}
    for op, step in ops:
        now += step
        before = state
        if op == "ok":
            state, events = bk.record_success(state, cfg, now)
            reported["ok"] += 1
        elif op in ("transient", "system", "permanent"):
            state, events = bk.record_failure(state, cfg, now, ErrorClass(op))
            reported["permanent" if op == "permanent" else "counted"] += 1
        elif op == "allow":
            decision, state, events = bk.allow_request(state, cfg, now)
            if decision.is_probe:
                assert decision.allowed and state.state is HALF_OPEN
        elif op == "look":
            state, events = bk.current(state, cfg, now)
        elif op == "force":
            state, events = bk.force_open(state, "p", "prop", now)
        elif op == "disable":
            state, events = bk.disable(state, "p", "prop", now)
        else:
            state, events = bk.reset(state, "p", "prop", now)

        assert isinstance(state.state, CircuitState)
        counters = (
            state.consecutive_failures,
            state.half_open_probes_in_flight,
            state.half_open_successes,
            state.open_count,
            state.successes,
            state.failures,
            state.permanent_failures,
        )
        assert min(counters) >= 0
        assert state.half_open_probes_in_flight <= cfg.half_open_max_probes
        assert len(state.window) <= cfg.window_max_calls
        assert all(t <= now for t, _ in state.window)
        if op in ("ok", "transient", "system") and state.state is CLOSED:
            assert all(t > now - cfg.window_seconds for t, _ in state.window)
        if state.state is OPEN:
            assert state.open_count >= 1
            assert cfg.recovery_timeout <= state.current_timeout <= cfg.max_recovery_timeout
        if state.state is CLOSED:
            assert state.consecutive_failures < cfg.failure_threshold
        # The events chain from the old state to the new one, each with a reason, never in the future.
        chain = before.state
        for event in events:
            assert event.from_state is chain and event.reason and event.at <= now
            chain = event.to_state
        assert chain is state.state
        assert (state.successes, state.failures, state.permanent_failures) == (
            reported["ok"],
            reported["counted"],
            reported["permanent"],
        )
        assert BreakerState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
