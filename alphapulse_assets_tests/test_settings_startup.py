"""Settings and arguments are checked before anything runs: a bad value is refused when the definitions load
and when the CLI starts, naming the environment variable and the value; bad arguments exit non-zero."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from alphapulse_assets.config_check import check_configuration
from alphapulse_assets.settings import SettingsError, get_settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture
def fresh_settings(monkeypatch):
    """Settings read again from this test's environment, and the process's own restored afterwards."""
    for key in list(os.environ):
        if key.startswith("ALPHAPULSE_"):
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


BAD = [
    ("ALPHAPULSE_SOURCES", "sample,exchnage", "unknown source 'exchnage'"),
    ("ALPHAPULSE_STORAGE_URL", "memory://candles", "keeps nothing after the process ends"),
    ("ALPHAPULSE_STORAGE_URL", "nosuchfs://bucket/candles", "nosuchfs"),
    ("ALPHAPULSE_STORE__URL", "nosuchfs://bucket/alphapulse", "nosuchfs"),
    ("ALPHAPULSE_STORE_URL", "memory://alphapulse", "keeps nothing after the process ends"),
    ("ALPHAPULSE_STORE__MODELS_URL", "memory://models", "keeps nothing after the process ends"),
    ("ALPHAPULSE_STORE__ENDPOINT_URL", "minio:9000", "http:// or https://"),
    ("ALPHAPULSE_PLATFORM_DB_URL", "sqlite:///:memory:", "in-memory database"),
    ("ALPHAPULSE_NIGHTLY__MIN_ROWS", "-1", "greater than 0"),
    ("ALPHAPULSE_WEEKLY__MIN_VALIDATION_SAMPLES", "-5", "greater than 0"),
    ("ALPHAPULSE_WEEKLY__WINDOW_DAYS", "0", "greater than 0"),
    ("ALPHAPULSE_MONTHLY__TIMEFRAME", "4x", "unknown bar size"),
    ("ALPHAPULSE_NIGHTLY__CRON", "0 2 *", "cron expression"),
    ("ALPHAPULSE_GATE__ALPHA", "1.5", "less than 1"),
    ("ALPHAPULSE_GATE__KS_THRESHOLD", "-0.1", "greater than 0"),
    ("ALPHAPULSE_QUALITY__MAX_MISSING_FRACTION", "-0.1", "greater than or equal to 0"),
    ("ALPHAPULSE_QUALITY__MAX_BAR_MOVE_FACTOR", "0.5", "greater than 1"),
    ("ALPHAPULSE_TIMEZONE", "Mars/Olympus_Mons", "unknown time zone"),
    ("ALPHAPULSE_BREAKER__FAILURE_THRESHOLD", "0", "must be >= 1"),
    ("ALPHAPULSE_BREAKER__MARKET_DATA__FAILURE_RATE_THRESHOLD", "1.5", "in (0, 1]"),
    ("ALPHAPULSE_BREAKER__WINDOW_SECONDS", "five minutes", "not a number"),
    ("ALPHAPULSE_ESCALATION__THRESHOLD", "0", "greater than or equal to 1"),
    ("ALPHAPULSE_HOST__DISK_CRITICAL_PERCENT", "150", "less than or equal to 100"),
    ("ALPHAPULSE_HEAVY_CADENCES", "yearly", "unknown cadence"),
    ("ALPHAPULSE_MONITORING_RETENTION_HOURS", "0", "greater than 0"),
]


@pytest.mark.parametrize("name, value, why", BAD, ids=[f"{n}={v}" for n, v, _ in BAD])
def test_a_bad_setting_is_refused_naming_the_variable_and_the_value(fresh_settings, name, value, why):
    fresh_settings.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        check_configuration()
    message = str(refused.value)
    assert name in message and value in message and why in message, message


def test_nested_json_values_are_named_through_their_parent(fresh_settings):
    fresh_settings.setenv("ALPHAPULSE_WEEKLY", '{"min_rows": -3}')
    with pytest.raises(SettingsError, match=r"ALPHAPULSE_WEEKLY \(min_rows\)=-3"):
        check_configuration()


def test_good_settings_and_the_explicit_opt_in_for_an_ephemeral_store_pass(fresh_settings):
    fresh_settings.setenv("ALPHAPULSE_TIMEZONE", "Europe/Berlin")
    fresh_settings.setenv("ALPHAPULSE_SOURCES", "exchange,sample")
    fresh_settings.setenv("ALPHAPULSE_BREAKER__MARKET_DATA__FAILURE_THRESHOLD", "3")
    settings = check_configuration()
    assert settings.timezone == "Europe/Berlin" and settings.sources == ("exchange", "sample")
    get_settings.cache_clear()
    fresh_settings.setenv("ALPHAPULSE_STORAGE_URL", "memory://candles")
    fresh_settings.setenv("ALPHAPULSE_ALLOW_EPHEMERAL_STORAGE", "true")
    assert check_configuration().storage_url == "memory://candles"


# -- through the real entry points, in subprocesses ---------------------------------------------------------


def _env(home: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHAPULSE_", "DAGSTER_"))}
    return {**env, "DAGSTER_HOME": str(home), **settings}


@pytest.fixture
def home(tmp_path) -> Path:
    """A private local instance: the project's dagster.yaml in a temporary DAGSTER_HOME."""
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    return tmp_path


def alphapulse(home: Path, *args: str, timeout: float = 120, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "alphapulse"), *args],
        env=_env(home, **settings),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_definitions_refuse_a_bad_breaker_setting_when_they_load(home):
    # Today the breaker sensor would fail on every tick while `status` says fine: refused at load instead.
    out = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "alphapulse_assets.definitions"],
        env=_env(home, ALPHAPULSE_BREAKER__FAILURE_RATE_THRESHOLD="2"),
        cwd=home,  # the project folder, as `make` runs it: dagster.yaml's base_dir is relative to it
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode != 0
    assert "ALPHAPULSE_BREAKER__FAILURE_RATE_THRESHOLD='2'" in out.stdout + out.stderr


def test_the_cli_refuses_a_memory_store_at_start(home):
    out = alphapulse(home, "ingest", "--start", "2024-03-01", ALPHAPULSE_STORAGE_URL="memory://candles")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "ALPHAPULSE_STORAGE_URL='memory://candles'" in out.stderr
    assert "market data" not in out.stdout  # nothing ran
    assert not (home / ".alphapulse" / "storage").exists() or not any((home / ".alphapulse" / "storage").rglob("*.db"))


def test_end_before_start_is_an_error(home):
    out = alphapulse(home, "ingest", "--start", "2024-03-05", "--end", "2024-03-01")
    assert out.returncode == 2 and "--end 2024-03-01 is before --start 2024-03-05" in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["ingest", "--start", "2024-03-01", "--days-per-run", "0"],
        ["demo", "--days-per-run", "0"],
        ["demo", "--days", "-3"],
    ],
)
def test_a_non_positive_count_is_an_error_not_an_endless_loop(home, args):
    out = alphapulse(home, *args, timeout=60)
    assert out.returncode == 2 and "must be at least 1" in out.stderr, out.stdout + out.stderr


@pytest.mark.slow
def test_demo_exits_non_zero_when_its_cadences_fail(home):
    # Two days of candles cannot feed any cadence: each one fails for missing days, and the demo says so.
    out = alphapulse(home, "demo", "--days", "2", "--end", "2024-03-02", timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "monthly, weekly, nightly cadence(s) failed" in out.stderr


BERLIN_SCRIPT = r"""
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from alphapulse_assets.definitions import defs
from alphapulse_assets.market_data.assets import DAILY, candle_assets
from alphapulse_assets.market_data.resources import MarketDataResource, PartitionedParquetIOManager
from alphapulse_assets.market_data.storage import ParquetPartitionStore

store = sys.argv[1]
assert DAILY.timezone == "UTC", DAILY.timezone
schedules = {s.name: s for s in defs.schedules}
assert schedules["nightly_schedule"].execution_timezone == "Europe/Berlin"
assert schedules["weekly_schedule"].execution_timezone == "Europe/Berlin"
assert schedules["ingest_market_data_schedule"].execution_timezone == "UTC"

# Ingestion of a day works, and the day is a UTC day.
result = dg.materialize(candle_assets, partition_key="2024-07-09", instance=dg.DagsterInstance.ephemeral(),
                        resources={"market_data": MarketDataResource(sources=["sample"], symbols=["BTCUSDT"]),
                                   "candle_io_manager": PartitionedParquetIOManager(base_url=store)},
                        raise_on_error=False)
assert result.success, [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
bars = ParquetPartitionStore(store).read_days("market_candles", ["2024-07-09"])
assert len(bars) == 96 and bars["timestamp"].min() == pd.Timestamp("2024-07-09", tz="UTC")

# 02:00 in Berlin in summer is 00:00 UTC, before the 01:30 UTC ingestion of the day that just ended: the nightly
# asks for the newest day already ingested; in winter (01:00 UTC) likewise.
with dg.instance_for_test() as instance:
    for tick, expected in ((datetime(2024, 7, 10, 2, 0), "2024-07-08"), (datetime(2025, 1, 10, 2, 0), "2025-01-08")):
        context = dg.build_schedule_context(instance=instance,
                                            scheduled_execution_time=tick.replace(tzinfo=ZoneInfo("Europe/Berlin")))
        request = schedules["nightly_schedule"](context)
        assert not isinstance(request, dg.SkipReason), request.skip_message
        # One run over the day x every active symbol (the seed, on a new instance).
        start = request.tags["dagster/asset_partition_range_start"]
        assert start.split("|")[0] == expected, (tick, start)
print("ok")
"""


@pytest.mark.slow
def test_a_local_time_zone_moves_the_schedules_and_partitions_stay_utc_days(home, tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", BERLIN_SCRIPT, str(tmp_path / "candles")],
        cwd=home,
        timeout=180,
        env=_env(
            home, ALPHAPULSE_TIMEZONE="Europe/Berlin", ALPHAPULSE_PLATFORM_DB_URL=f"sqlite:///{tmp_path}/platform.db"
        ),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout[-2000:] + out.stderr[-4000:]
