"""The breaker sensor on a real instance with real runs: cursor, classification, breakers, alerts, escalation."""

import json

import dagster as dg
import pytest

from alphapulse_assets.alerting.alerts import iso_utc
from alphapulse_assets.recovery.breaker_store import BreakerStore
from alphapulse_assets.recovery.config import DEPENDENCY_TAG, load_recovery_config
from alphapulse_assets.recovery.gating import gate_run_request
from alphapulse_assets.recovery.sensors import (
    BREAKERS_ASSET_KEY,
    ESCALATION_KEY,
    breaker_alert_key,
    build_breaker_sensor,
    evaluate_tick,
)
from alphapulse_assets_tests.recovery_harness import (
    FakeClock,
    SwitchableSource,
    fast_ingestion_retries,
    ingestion_defs,
    router_with_capture,
    run_ingestion,
    tick,
)

KEY = breaker_alert_key("market_data")


@pytest.fixture
def env(tmp_path, monkeypatch):
    fast_ingestion_retries(monkeypatch)
    monkeypatch.setattr(SwitchableSource, "mode", "up")
    db = f"sqlite:///{tmp_path / 'platform.db'}"
    clock = FakeClock()
    store = BreakerStore(db, clock=clock)
    router, capture = router_with_capture(db, clock)
    config = load_recovery_config(
        {
            "ALPHAPULSE_BREAKER__MARKET_DATA__FAILURE_THRESHOLD": "2",
            "ALPHAPULSE_BREAKER__RECOVERY_TIMEOUT": "60",
            "ALPHAPULSE_ESCALATION__THRESHOLD": "2",
            "ALPHAPULSE_ESCALATION__WINDOW_SECONDS": "600",
        }
    )
    sensor = build_breaker_sensor(store=lambda: store, router=lambda: router, config=lambda: config, clock=clock)
    with dg.instance_for_test() as instance:
        yield {
            "instance": instance,
            "defs": ingestion_defs(tmp_path),
            "store": store,
            "capture": capture,
            "sensor": sensor,
            "clock": clock,
            "config": config,
            "router": router,
        }


def run(env, mode, day=1):
    SwitchableSource.mode = mode
    return run_ingestion(env["defs"], env["instance"], f"2024-03-{day:02d}")


def step(env, cursor):
    env["clock"].advance(30)
    return tick(env["sensor"], env["instance"], env["defs"], cursor)


def test_first_tick_skips_history_and_the_cursor_only_reads_new_runs(env):
    run(env, "down")  # before the sensor existed: not replayed
    first = step(env, None)
    assert json.loads(first.cursor)["runs"] > 0
    assert "outcome" not in first.skip_reason.skip_message
    assert env["store"].all() == {}
    assert first.asset_events and first.asset_events[0].asset_key == BREAKERS_ASSET_KEY  # initial state shown

    run(env, "down", day=2)
    second = step(env, first.cursor)
    assert json.loads(second.cursor)["runs"] > json.loads(first.cursor)["runs"]
    assert "1 outcome(s) from 1 run(s)" in second.skip_reason.skip_message
    state = env["store"].get("market_data")
    assert state.failures == 1 and state.consecutive_failures == 1 and state.state.value == "closed"

    third = step(env, second.cursor)  # nothing new: nothing recorded, cursor unchanged, nothing observed
    assert json.loads(third.cursor)["runs"] == json.loads(second.cursor)["runs"]
    assert env["store"].get("market_data").failures == 1
    assert third.asset_events == []


def test_threshold_opens_with_one_alert_and_the_observation_carries_the_state(env):
    cursor = step(env, None).cursor
    for day in (1, 2):
        run(env, "down", day)
    result = step(env, cursor)
    state = env["store"].get("market_data")
    assert state.state.value == "open" and state.failures == 2
    assert "market_data: closed -> open" in result.skip_reason.skip_message
    assert "market_data OPEN since" in result.skip_reason.skip_message
    assert env["capture"].count(KEY, "firing") == 1
    meta = result.asset_events[0].metadata
    entry = meta["market_data"].value
    assert entry["state"] == "open" and entry["retry_at"] is not None and "2 consecutive failures" in entry["reason"]
    assert meta["market_data/state"].value == "open"
    assert "transient" in entry["reason"] and "exchange unreachable" in entry["reason"]

    # Timeout passes with no call: the sensor makes HALF_OPEN durable. The probe fails: it reopens, and the
    # router does not send the same alert again.
    env["clock"].advance(61)
    result = step(env, result.cursor)
    assert "open -> half_open" in result.skip_reason.skip_message
    request = gate_run_request(
        ["market_data"],
        dg.RunRequest(partition_key="2024-03-05"),
        env["clock"](),
        store=env["store"],
        config=env["config"],
    )
    assert isinstance(request, dg.RunRequest) and request.tags["alphapulse/probe"] == "true"
    run(env, "down", day=5)
    result = step(env, result.cursor)
    assert "half_open -> open" in result.skip_reason.skip_message
    assert env["store"].get("market_data").current_timeout == 120  # backoff doubled the wait
    assert env["capture"].count(KEY, "firing") == 1


def test_permanent_errors_are_tallied_but_never_trip(env):
    cursor = step(env, None).cursor
    for day in (1, 2, 3):
        run(env, "bad", day)
    step(env, cursor)
    state = env["store"].get("market_data")
    assert state.state.value == "closed" and state.permanent_failures == 3 and state.failures == 0
    assert env["capture"].sent == []


@dg.asset(tags={DEPENDENCY_TAG: "training"}, check_specs=[dg.AssetCheckSpec("gate", asset="toy_model")])
def toy_model():
    yield dg.Output(1)
    yield dg.AssetCheckResult(check_name="gate", passed=False, description="challenger is worse than the champion")


TOY = dg.Definitions(
    assets=[toy_model],
    jobs=[dg.define_asset_job("toy_cadence", selection=[toy_model])],
    executor=dg.in_process_executor,
)


def test_a_promotion_gate_rejection_is_not_an_outage(env):
    instance = env["instance"]
    cursor = tick(env["sensor"], instance, TOY, None).cursor
    for _ in range(3):
        result = TOY.resolve_job_def("toy_cadence").execute_in_process(instance=instance, raise_on_error=False)
        assert result.success  # the gate check is not blocking: a rejection does not fail the run
        assert not result.get_asset_check_evaluations()[0].passed
    env["clock"].advance(30)
    tick(env["sensor"], instance, TOY, cursor)
    state = env["store"].get("training")
    assert state.state.value == "closed" and state.failures == 0 and state.successes == 3


@pytest.mark.slow
def test_critical_errors_escalate_once_and_resolve_when_the_window_clears(env):
    cursor = step(env, None).cursor
    for day in (1, 2, 3):  # disk full: system errors, critical
        run(env, "full", day)
        cursor = step(env, cursor).cursor
    capture = env["capture"]
    assert capture.count(ESCALATION_KEY, "firing") == 1
    assert json.loads(cursor)["esc"]["escalated"] is True
    run(env, "full", 4)  # the condition still holds: no second escalation
    cursor = step(env, cursor).cursor
    assert capture.count(ESCALATION_KEY, "firing") == 1 and capture.count(ESCALATION_KEY, "resolved") == 0
    env["clock"].advance(601)
    result = step(env, cursor)
    assert capture.count(ESCALATION_KEY, "resolved") == 1
    assert "escalation resolve" in result.skip_reason.skip_message


@pytest.mark.slow
def test_a_small_batch_limit_never_skips_a_run(env):
    instance, store = env["instance"], env["store"]
    cursor = step(env, None).cursor
    run(env, "down", 1)
    run(env, "up", 2)
    run(env, "down", 3)
    seen = []
    for _ in range(4):
        report = evaluate_tick(
            instance,
            env["defs"].get_repository_def(),
            cursor,
            store=store,
            router=env["router"],
            config=env["config"],
            now=env["clock"].advance(1),
            batch_limit=1,
        )
        seen.extend(o.ok for _, o in report.outcomes)
        cursor = report.cursor
    assert seen == [False, True, False]
    state = store.get("market_data")
    assert state.successes == 1 and state.failures == 2 and state.consecutive_failures == 1


def test_operator_actions_alert_and_resolve(env):
    cursor = step(env, None).cursor
    env["store"].force_open("market_data", "alice", "exchange maintenance", env["clock"]())
    cursor = step(env, cursor).cursor
    sent = [a for n in env["capture"].sent for a in n.alerts if a.key == KEY]
    assert len(sent) == 1 and sent[0].severity.value == "warning" and "alice" in sent[0].body
    env["store"].reset("market_data", "alice", "maintenance over", env["clock"]())
    result = step(env, cursor)
    assert env["capture"].count(KEY, "resolved") == 1
    assert "forced_open -> closed" in result.skip_reason.skip_message


def test_since_is_the_time_of_the_last_transition_and_the_observation_follows_every_change(env):
    """Ticks hours apart: a breaker's "since" stays the moment it changed state, never the tick's time, and
    platform/breakers is observed as soon as what it shows changes (a failure counted), not an hour later."""
    first = step(env, None)
    never_fed = first.asset_events[0].metadata["market_data"].value
    assert never_fed["state"] == "closed" and never_fed["since"] is None  # no transition has happened yet
    run(env, "down", day=1)
    env["clock"].advance(3 * 3600)
    later = step(env, first.cursor)
    [observation] = later.asset_events  # one failure counted: shown at once
    created = env["store"].get("market_data").since  # the breaker was created by the first outcome it saw
    assert observation.metadata["market_data"].value["consecutive_failures"] == 1
    assert observation.metadata["market_data"].value["since"] == iso_utc(created)

    run(env, "down", day=2)  # the second failure opens it
    opened = step(env, later.cursor)
    opened_at = env["store"].get("market_data").since
    assert opened.asset_events[0].metadata["market_data"].value["since"] == iso_utc(opened_at)
    env["clock"].advance(3600 * 5)  # long past the recovery timeout: half-open since timeout's end, not now
    result = step(env, opened.cursor)
    shown = result.asset_events[0].metadata["market_data"].value
    assert shown["state"] == "half_open" and shown["since"] == iso_utc(opened_at + 60)
    again = step(env, result.cursor)  # nothing changed: the same since, and nothing new to observe
    assert again.asset_events == [] and f"HALF_OPEN since {iso_utc(opened_at + 60)}" in again.skip_reason.skip_message
