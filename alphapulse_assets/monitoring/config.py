"""Monitoring settings: sensor intervals, sample retention, mount points, health-check limits.

Env prefix ``ALPHAPULSE_MONITORING_``, for example ``ALPHAPULSE_MONITORING_MOUNT_POINTS=/,/data`` or
``ALPHAPULSE_MONITORING_RETENTION_HOURS=48``. Kept apart from ``settings.py`` so that monitoring can be
tuned without touching the platform's data and training settings. This module does not import Dagster.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from alphapulse_assets.settings import settings_error


class MonitoringSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALPHAPULSE_MONITORING_", extra="ignore")

    metrics_interval_seconds: int = Field(30, ge=5)
    health_interval_seconds: int = Field(60, ge=10)
    check_alert_interval_seconds: int = Field(30, ge=5)
    retention_hours: float = Field(24.0, gt=0)
    # Disk usage is sampled (and alerted on) for each of these paths.
    mount_points: tuple[str, ...] = ("/",)
    # A process whose command line contains this text counts as a Dagster process (webserver, daemon,
    # code server, run workers).
    process_match: str = "dagster"
    # The daemon writes a heartbeat every 30 s; five minutes without one means it is stuck or gone.
    heartbeat_max_age_seconds: float = Field(300.0, gt=0)
    source_check_timeout_seconds: float = Field(10.0, gt=0)
    # Slack on top of a cadence's schedule offset and budget before its newest partition counts as late.
    freshness_slack_seconds: float = Field(3600.0, ge=0)
    # Where the daily pipeline report is written as JSON (default: <home>/reports).
    report_dir: Path | None = None

    @field_validator("mount_points", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value


@lru_cache(maxsize=1)
def get_monitoring_settings() -> MonitoringSettings:
    """Read once from the environment; a bad value raises SettingsError naming the variable."""
    try:
        return MonitoringSettings()
    except ValidationError as exc:
        raise settings_error(exc, "ALPHAPULSE_MONITORING_", nested="_") from None
