"""End to end on a real instance: an exchange goes down, the breaker opens, schedules skip, one alert goes
out, the exchange comes back, a probe run succeeds, the breaker closes and scheduled runs resume.

The schedule and sensor are the ones in the platform's definitions (the sensor with an injected clock and a
capturing alert channel); runs are real runs of the candle job on the test instance, launched from the
schedule's RunRequest with its partition and tags as the daemon would. A short recovery timeout comes from
configuration; the clock is advanced, nothing sleeps.
"""

from datetime import datetime, timezone

import dagster as dg
import pytest

from alphapulse_assets.definitions import ingest_market_data_schedule
from alphapulse_assets.recovery import gating
from alphapulse_assets.recovery.config import PROBE_TAG, load_recovery_config
from alphapulse_assets.recovery.gating import default_store
from alphapulse_assets.recovery.sensors import BREAKERS_ASSET_KEY, breaker_alert_key, build_breaker_sensor
from alphapulse_assets_tests.recovery_harness import (
    FakeClock,
    SwitchableSource,
    fast_ingestion_retries,
    ingestion_defs,
    router_with_capture,
    run_ingestion,
    tick,
)


@pytest.fixture
def platform(tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path / 'platform.db'}"
    monkeypatch.setenv("ALPHAPULSE_PLATFORM_DB_URL", db)
    monkeypatch.setenv("ALPHAPULSE_BREAKER__MARKET_DATA__FAILURE_THRESHOLD", "3")
    monkeypatch.setenv("ALPHAPULSE_BREAKER__MARKET_DATA__RECOVERY_TIMEOUT", "120")
    clock = FakeClock()
    monkeypatch.setattr(gating, "clock", clock)
    fast_ingestion_retries(monkeypatch)
    monkeypatch.setattr(SwitchableSource, "mode", "up")
    return db, clock


def schedule_tick(instance, day: int):
    when = datetime(2024, 3, day, 1, 30, tzinfo=timezone.utc)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as context:
        return ingest_market_data_schedule(context)


def observed_states(instance) -> list[str]:
    records = instance.fetch_observations(BREAKERS_ASSET_KEY, limit=100, ascending=True).records
    return [
        r.asset_observation.metadata["market_data/state"].value
        for r in records
        if "market_data/state" in r.asset_observation.metadata
    ]


@pytest.mark.slow
def test_outage_opens_the_breaker_skips_alerts_once_probes_and_recovers(tmp_path, platform):
    db, clock = platform
    router, capture = router_with_capture(db, clock)
    sensor = build_breaker_sensor(router=lambda: router, clock=clock)
    defs = ingestion_defs(tmp_path)
    key = breaker_alert_key("market_data")
    with dg.instance_for_test() as instance:
        cursor = tick(sensor, instance, defs, None).cursor  # starts watching

        # The exchange goes down: three scheduled runs go out and fail; the third failure opens the breaker.
        SwitchableSource.mode = "down"
        for day in (2, 3, 4):
            request = schedule_tick(instance, day)
            assert isinstance(request, dg.RunRequest) and PROBE_TAG not in request.tags
            assert not run_ingestion(defs, instance, request.partition_key, request.tags).success
            clock.advance(30)
            result = tick(sensor, instance, defs, cursor)
            cursor = result.cursor
        store = default_store()
        assert (
            store.current("market_data", load_recovery_config().breaker("market_data"), clock()).state.value == "open"
        )
        assert "closed -> open" in result.skip_reason.skip_message
        opened_at = clock()

        # While open the schedule skips with a reason naming the breaker, since when and when it readers.
        for day in (5, 6):
            clock.advance(30)
            skip = schedule_tick(instance, day)
            assert isinstance(skip, dg.SkipReason)
            text = skip.skip_message
            assert "'market_data' is OPEN since" in text and "3 consecutive failures" in text
            assert "will probe at" in text and "exchange unreachable" in text
            cursor = tick(sensor, instance, defs, cursor).cursor
        assert capture.count(key, "firing") == 1 and capture.count(key, "resolved") == 0

        # The exchange recovers; once the timeout has passed the sensor shows HALF_OPEN by itself.
        SwitchableSource.mode = "up"
        clock.t = opened_at + 121
        result = tick(sensor, instance, defs, cursor)
        cursor = result.cursor
        assert "open -> half_open" in result.skip_reason.skip_message
        probe = schedule_tick(instance, 7)
        assert isinstance(probe, dg.RunRequest) and probe.tags[PROBE_TAG] == "true"
        second = schedule_tick(instance, 7)  # one probe at a time
        assert isinstance(second, dg.SkipReason) and "probe run is in flight" in second.skip_message
        probe_run = run_ingestion(defs, instance, probe.partition_key, probe.tags)
        assert probe_run.success
        clock.advance(30)
        result = tick(sensor, instance, defs, cursor)
        cursor = result.cursor
        assert "half_open -> closed" in result.skip_reason.skip_message
        assert capture.count(key, "firing") == 1 and capture.count(key, "resolved") == 1

        # Normal scheduled runs resume.
        normal = schedule_tick(instance, 8)
        assert isinstance(normal, dg.RunRequest) and PROBE_TAG not in normal.tags
        assert run_ingestion(defs, instance, normal.partition_key, normal.tags).success
        clock.advance(30)
        cursor = tick(sensor, instance, defs, cursor).cursor

        # Dagster's own records show it all: the runs, the probe's tag and every state of the breaker.
        runs = instance.get_runs(dg.RunsFilter(job_name="ingest_market_data"))
        statuses = sorted(r.status.value for r in runs)
        assert statuses == ["FAILURE"] * 3 + ["SUCCESS"] * 2
        probes = instance.get_runs(dg.RunsFilter(tags={PROBE_TAG: "true"}))
        assert [r.run_id for r in probes] == [probe_run.run_id] and probes[0].status is dg.DagsterRunStatus.SUCCESS
        states = observed_states(instance)
        assert states[0] == "closed" and states[-1] == "closed"
        assert "open" in states and "half_open" in states
        assert states.index("open") < states.index("half_open") < len(states) - 1
        assert capture.count(key, "firing") == 1
