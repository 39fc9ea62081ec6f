"""Threshold rules: hold times, single spikes, flapping, hysteresis, with sample times as the clock."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from alphapulse_assets.monitoring.thresholds import (
    DEFAULT_RULES,
    Level,
    RuleState,
    ThresholdRule,
    evaluate,
)
from alphapulse_assets.recovery.errors import DataValidationError, Severity

STEP = 30.0  # the metrics interval


def run(rule, values, start=0.0, step=STEP, state=None):
    """Feed values at start, start+step, ...; return the final state and (time, event) pairs."""
    state = state or RuleState()
    events = []
    for i, v in enumerate(values):
        t = start + i * step
        state, evs = evaluate(rule, state, v, t)
        events += [(t, e) for e in evs]
    return state, events


def test_defaults_match_the_design_guide():
    r = DEFAULT_RULES
    assert (r["cpu_percent"].warning, r["cpu_percent"].critical) == (80, 90)
    assert (r["memory_percent"].warning, r["memory_percent"].critical) == (85, 95)
    assert (r["disk_percent"].warning, r["disk_percent"].critical) == (85, 95)
    assert (r["pipeline_failure_rate_percent"].warning, r["pipeline_failure_rate_percent"].critical) == (10, 20)
    assert (r["run_duration_seconds"].warning, r["run_duration_seconds"].critical) == (1800, 3600)
    assert all(rule.direction == "above" for rule in r.values())


def test_fires_only_after_the_level_held_for_the_hold_time():
    rule = ThresholdRule("cpu", 80, 90, for_seconds=120)
    # 85 from t=0: held 0, 30, 60, 90 s -> nothing; at t=120 it has held 120 s -> fires.
    state, events = run(rule, [85, 85, 85, 85])
    assert events == [] and state.level is Level.OK
    state, evs = evaluate(rule, state, 85, 120.0)
    assert len(evs) == 1
    ev = evs[0]
    assert (ev.status, ev.level, ev.severity, ev.threshold, ev.at) == (
        "firing",
        Level.WARNING,
        Severity.WARNING,
        80,
        120.0,
    )
    assert "cpu" in ev.title and "80" in ev.title
    # Still above: no second event.
    _, more = run(rule, [85] * 20, start=150.0, state=state)
    assert more == []


def test_single_spike_does_not_alert():
    rule = ThresholdRule("cpu", 80, 90, for_seconds=120)
    _, events = run(rule, [50, 50, 99, 50, 50, 50, 50, 50, 50])
    assert events == []


def test_escalation_and_de_escalation_fire_once_per_level_change():
    rule = ThresholdRule("cpu", 80, 90, for_seconds=60)
    values = [85] * 4 + [95] * 4 + [85] * 4
    _, events = run(rule, values)
    assert [(e.status, e.level) for _, e in events] == [
        ("firing", Level.WARNING),
        ("firing", Level.CRITICAL),
        ("firing", Level.WARNING),
    ]
    # critical fired at the third 95 sample (held 60 s), warning again after 60 s back under 90.
    assert [t for t, _ in events] == [60.0, 180.0, 300.0]
    assert "escalated" in events[1][1].title and "de-escalated" in events[2][1].title


def test_straight_to_critical_is_one_event():
    rule = ThresholdRule("disk", 85, 95, for_seconds=60)
    _, events = run(rule, [99] * 5)
    assert [(t, e.level) for t, e in events] == [(60.0, Level.CRITICAL)]


def test_flapping_within_the_hold_time_never_alerts():
    rule = ThresholdRule("mem", 85, 95, for_seconds=120)
    _, events = run(rule, [90, 80] * 20)
    assert events == []


def test_flapping_while_firing_neither_resolves_nor_refires():
    rule = ThresholdRule("mem", 85, 95, for_seconds=90)
    state, events = run(rule, [90] * 4)
    assert [e.level for _, e in events] == [Level.WARNING]
    # Dips below warning shorter than the hold time: no resolve, and no second firing on the way back up.
    _, more = run(rule, [80, 90, 80, 90, 80, 80, 90, 90, 80, 90], start=4 * STEP, state=state)
    assert more == []


def test_resolves_only_after_staying_below_warning_for_the_hold_time():
    rule = ThresholdRule("cpu", 80, 90, for_seconds=60)
    state, events = run(rule, [95] * 3)
    assert [e.level for _, e in events] == [Level.CRITICAL]
    # 90 s below warning but with a bounce back to 85 in between: de-escalates to warning, no resolve.
    state, more = run(rule, [50, 50, 85, 50], start=90.0, state=state)
    assert [(t, e.status, e.level) for t, e in more] == [(150.0, "firing", Level.WARNING)]
    assert state.level is Level.WARNING
    state, more = run(rule, [50, 50, 50], start=210.0, state=state)
    resolved = [(t, e) for t, e in more if e.status == "resolved"]
    assert [t for t, _ in resolved] == [240.0]  # below warning since 180, held 60 s at 240
    resolved = [e for _, e in resolved]
    assert resolved[0].level is Level.OK
    assert resolved[0].severity is Severity.WARNING  # it resolves what was firing
    # And it stays resolved.
    _, more = run(rule, [50] * 10, start=300.0, state=state)
    assert more == []


def test_clear_seconds_can_differ_from_for_seconds():
    rule = ThresholdRule("cpu", 80, 90, for_seconds=0, clear_seconds=300)
    state, events = run(rule, [85])
    assert len(events) == 1  # for_seconds=0 fires on the first sample
    _, more = run(rule, [10] * 10, start=30.0, state=state)  # 30 .. 300: held 270 s, not yet 300
    assert more == []
    _, more = run(rule, [10] * 11, start=30.0, state=state)  # reaches t=330, held 300 s
    assert [e.status for _, e in more] == ["resolved"]


def test_direction_below():
    rule = ThresholdRule("free_disk_gb", warning=20, critical=5, for_seconds=0, direction="below")
    _, events = run(rule, [50, 15, 3, 30])
    assert [(e.status, e.level) for _, e in events] == [
        ("firing", Level.WARNING),
        ("firing", Level.CRITICAL),
        ("resolved", Level.OK),
    ]


def test_thresholds_are_inclusive():
    rule = ThresholdRule("cpu", 80, 90)
    assert rule.level_of(79.999) is Level.OK
    assert rule.level_of(80) is Level.WARNING
    assert rule.level_of(90) is Level.CRITICAL


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(warning=90, critical=80),
        dict(warning=10, critical=20, direction="below"),
        dict(warning=80, critical=90, direction="sideways"),
        dict(warning=80, critical=90, for_seconds=-1),
        dict(warning=math.nan, critical=90),
    ],
)
def test_invalid_rules_are_refused_with_the_metric_named(kwargs):
    with pytest.raises(DataValidationError) as info:
        ThresholdRule("cpu", **kwargs)
    assert info.value.where == "ThresholdRule('cpu')"


def test_missing_and_out_of_order_samples_change_nothing():
    rule = ThresholdRule("cpu", 80, 90, for_seconds=60)
    state, _ = run(rule, [85, 85])
    for value, t in [(None, 60.0), (math.nan, 60.0), (99.0, 10.0)]:
        new, events = evaluate(rule, state, value, t)
        assert new == state and events == []
    _, events = evaluate(rule, state, 85, 60.0)
    assert len(events) == 1


def test_state_survives_a_json_round_trip_mid_episode():
    """Sensors keep the state in their cursor: a fresh process must carry on where the last one stopped."""
    rule = ThresholdRule("cpu", 80, 90, for_seconds=90)
    state, _ = run(rule, [85, 85, 85])
    restored = RuleState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    _, events = evaluate(rule, restored, 85, 90.0)
    assert [e.level for e in events] == [Level.WARNING]
    assert RuleState.from_dict(None) == RuleState()


@settings(max_examples=200, deadline=None)
@given(
    values=hst.lists(hst.sampled_from([10.0, 82.0, 95.0]), min_size=1, max_size=60),
    hold=hst.sampled_from([0.0, 30.0, 90.0]),
)
def test_every_event_is_backed_by_a_full_hold_time_of_samples(values, hold):
    rule = ThresholdRule("cpu", 80, 90, for_seconds=hold)
    _, events = run(rule, values)
    times = [i * STEP for i in range(len(values))]
    previous = Level.OK
    for t, e in events:
        assert e.level != previous  # one event per level change
        assert e.previous_level == previous
        window = [v for ti, v in zip(times, values, strict=False) if t - hold <= ti <= t]
        if e.status == "resolved":
            assert all(v < 80 for v in window)
        elif e.level > previous:
            assert all(rule.level_of(v) >= e.level for v in window)
        else:  # de-escalation: below the higher threshold for the whole hold time
            assert all(rule.level_of(v) < previous for v in window)
        previous = e.level


def test_a_busy_cpu_alerts_only_when_sustained_for_fifteen_minutes_and_clears_in_two():
    """A 2-core machine training models is busy for minutes at a time: that is not an incident."""
    rule = DEFAULT_RULES["cpu_percent"]
    _state, events = run(rule, [100.0] * 21)  # ten minutes at 100 %
    assert events == []
    state, events = run(rule, [100.0] * 32)  # fifteen and a half
    assert [(t, e.level.name) for t, e in events] == [(900.0, "CRITICAL")]
    _state, events = run(rule, [20.0] * 6, start=960.0, state=state)
    assert [(t, e.status) for t, e in events] == [(960.0 + 120, "resolved")]
