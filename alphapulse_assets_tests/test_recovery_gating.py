"""The cadence schedules consult the breakers (through build_schedule_context on a test instance)."""

from datetime import datetime, timezone

import dagster as dg
import pytest

from alphapulse_assets.recovery import gating
from alphapulse_assets.recovery.config import (
    PROBE_BREAKERS_TAG,
    PROBE_TAG,
    HostLimits,
    host_pressure,
    load_recovery_config,
)
from alphapulse_assets.recovery.errors import ErrorClass
from alphapulse_assets.recovery.gating import default_store
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training.schedules import SCHEDULES
from alphapulse_assets_tests.recovery_harness import FakeClock

SCHEDULE = {s.name: s for s in SCHEDULES}
WHEN = datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHAPULSE_PLATFORM_DB_URL", f"sqlite:///{tmp_path / 'platform.db'}")
    monkeypatch.setenv("ALPHAPULSE_BREAKER__TRAINING__FAILURE_THRESHOLD", "2")
    clock = FakeClock()
    monkeypatch.setattr(gating, "clock", clock)
    monkeypatch.setattr(gating, "host_usage", lambda: (40.0, 50.0))
    with dg.instance_for_test() as instance:
        yield instance, clock, default_store(), load_recovery_config().breaker("training")


def evaluate(instance, name="nightly_schedule"):
    # Closed here: a context left open keeps the instance it opened from the ref as Dagster's current one.
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=WHEN) as context:
        return SCHEDULE[name](context)


def test_closed_breaker_passes_the_request_through(env):
    instance, *_ = env
    request = evaluate(instance)
    assert isinstance(request, dg.RunRequest) and PROBE_TAG not in request.tags
    assert request.tags["alphapulse/trigger"] == "schedule"
    assert request.tags["dagster/asset_partition_range_start"].endswith(f"|{get_settings().symbols[0]}")


def test_open_breaker_skips_naming_it_since_when_and_the_probe_time(env):
    instance, clock, store, cfg = env
    for _ in range(2):
        store.record("training", cfg, False, ErrorClass.SYSTEM, now=clock(), detail="out of memory")
    clock.advance(10)
    skip = evaluate(instance)
    assert isinstance(skip, dg.SkipReason)
    text = skip.skip_message
    assert "'training' is OPEN since 2023-11-14T22:13:20Z" in text
    assert "out of memory" in text and "will probe at 2023-11-14T22:14:20Z (in 50s)" in text


def test_half_open_sends_exactly_one_probe_tagged_as_such(env):
    instance, clock, store, cfg = env
    for _ in range(2):
        store.record("training", cfg, False, ErrorClass.TRANSIENT, now=clock())
    clock.advance(cfg.recovery_timeout)  # nobody asked meanwhile: it reads HALF_OPEN all the same
    probe = evaluate(instance)
    assert isinstance(probe, dg.RunRequest)
    assert probe.tags[PROBE_TAG] == "true" and probe.tags[PROBE_BREAKERS_TAG] == "training"
    assert probe.tags["alphapulse/trigger"] == "schedule"
    again = evaluate(instance, "weekly_schedule")
    assert isinstance(again, dg.SkipReason) and "probe run is in flight" in again.skip_message
    store.record("training", cfg, True, now=clock())  # the probe succeeded
    assert isinstance(evaluate(instance), dg.RunRequest)
    assert store.get("training").state.value == "closed"


def test_forced_open_skips_and_says_how_to_reset_and_disabled_lets_runs_through(env):
    instance, clock, store, _ = env
    store.force_open("training", "alice", "GPU driver upgrade", clock())
    skip = evaluate(instance)
    assert isinstance(skip, dg.SkipReason)
    assert "FORCED_OPEN" in skip.skip_message and "alice: GPU driver upgrade" in skip.skip_message
    assert "alphapulse breaker reset training" in skip.skip_message
    store.disable("training", "alice", "breaker misbehaving", clock())
    assert isinstance(evaluate(instance), dg.RunRequest)


def test_heavy_cadence_skips_while_the_host_is_critically_short(env, monkeypatch):
    instance, *_ = env
    monkeypatch.setattr(gating, "host_usage", lambda: (96.5, 40.0))
    skip = evaluate(instance, "monthly_schedule")
    assert isinstance(skip, dg.SkipReason)
    assert "host critically short of memory 96.5% >= 95%" in skip.skip_message
    assert isinstance(evaluate(instance, "nightly_schedule"), dg.RunRequest)  # not heavy
    monkeypatch.setattr(gating, "host_usage", lambda: (50.0, 50.0))
    assert isinstance(evaluate(instance, "monthly_schedule"), dg.RunRequest)


def test_market_data_breaker_gates_the_ingestion_schedule(env):
    from alphapulse_assets.definitions import ingest_market_data_schedule

    instance, clock, store, _ = env
    store.force_open("market_data", "bob", "exchange maintenance", clock())
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=WHEN) as ctx:
        skip = ingest_market_data_schedule(ctx)
    assert isinstance(skip, dg.SkipReason) and "'market_data' is FORCED_OPEN" in skip.skip_message
    assert isinstance(evaluate(instance), dg.RunRequest)  # training is not gated by market_data


def test_host_pressure_rules():
    limits = HostLimits()
    assert host_pressure(94.9, 94.9, limits) is None
    assert host_pressure(95.0, 10, limits) == "host critically short of memory 95.0% >= 95%"
    assert host_pressure(10, 99.0, limits) == "host critically short of disk 99.0% >= 95%"
    assert "memory" in host_pressure(99, 99, limits) and "disk" in host_pressure(99, 99, limits)


def test_real_host_usage_reads_percentages():
    memory, disk = gating.host_usage()
    assert 0 < memory <= 100 and 0 < disk <= 100


@dg.op
def _cadence_stub_op():
    if _CADENCE_STUB["fail"]:
        raise RuntimeError("the earlier tick's run failed")


_CADENCE_STUB = {"fail": False}


@dg.job(name="nightly_cadence")  # the cadence job's name: the schedule looks for earlier runs of its job
def _nightly_cadence_stub():
    _cadence_stub_op()


def test_a_later_tick_for_a_partition_an_earlier_tick_ran_skips_unless_that_run_failed(env):
    """A run key dedupes a schedule's runs within one tick only; a cron ticking again on the same newest partition
    must not train it twice, but may ask again once the earlier run failed."""
    instance, *_ = env
    first = evaluate(instance)
    assert isinstance(first, dg.RunRequest)
    done = _nightly_cadence_stub.execute_in_process(instance=instance, tags=first.tags)
    again = evaluate(instance)
    assert isinstance(again, dg.SkipReason), again
    assert done.run_id in again.skip_message and "SUCCESS" in again.skip_message
    assert "already asked for by an earlier tick" in again.skip_message
    assert isinstance(evaluate(instance, "weekly_schedule"), dg.RunRequest)  # another cadence: its own partitions

    _CADENCE_STUB["fail"] = True
    try:
        failed = _nightly_cadence_stub.execute_in_process(instance=instance, tags=first.tags, raise_on_error=False)
    finally:
        _CADENCE_STUB["fail"] = False
    assert not failed.success
    instance.delete_run(done.run_id)  # only the failed run is left for this partition
    retry = evaluate(instance)
    assert isinstance(retry, dg.RunRequest) and retry.tags == first.tags
