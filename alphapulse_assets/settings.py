"""One typed configuration for the whole platform.

Every value has a default taken from the system AlphaPulse replaces (see the design guide) and can be
overridden from the environment with the ``ALPHAPULSE_`` prefix; nested fields use ``__``, for example
``ALPHAPULSE_SYMBOLS='["BTCUSDT","ETHUSDT"]'`` or ``ALPHAPULSE_QUALITY__MAX_MISSING_FRACTION=0.02``.
Dagster resources take their defaults from here, so run config can still override them per run.

This module does not import Dagster.
"""

from __future__ import annotations

import json
import os
from datetime import date
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, field_validator
from typing import Annotated

from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT")


class CadenceSettings(BaseModel):
    """One retraining cadence: when it runs, on what bars, over what window, within what budget."""

    cron: str
    timeframe: str
    window_days: int
    budget_seconds: int
    min_rows: int
    # Out-of-sample rows a challenger needs before the promotion gate will judge it.
    min_validation_samples: int = 1000


class NightlySettings(CadenceSettings):
    """02:00, incremental update on the last day of 15m bars, 15 min budget."""

    cron: str = "0 2 * * *"
    timeframe: str = "15m"
    window_days: int = 16
    budget_seconds: int = 15 * 60
    min_rows: int = 100
    min_validation_samples: int = 150


class WeeklySettings(CadenceSettings):
    """Sunday 03:00, quick retrain on 10 weeks of 1h bars, 1 h budget."""

    cron: str = "0 3 * * 0"
    timeframe: str = "1h"
    window_days: int = 70
    budget_seconds: int = 3600
    min_rows: int = 1000


class MonthlySettings(CadenceSettings):
    """1st of the month 03:00, full retrain on 18 months of 4h bars with a hyper-parameter search, 4 h budget."""

    cron: str = "0 3 1 * *"
    timeframe: str = "4h"
    window_days: int = 548
    budget_seconds: int = 4 * 3600
    min_rows: int = 5000


class QualitySettings(BaseModel):
    """Data-quality thresholds for candle partitions."""

    max_missing_fraction: float = Field(0.05, ge=0, le=1)
    # A 15m return beyond this many robust standard deviations is an outlier (a warning, not a block).
    outlier_zscore: float = Field(12.0, gt=0)
    max_outlier_fraction: float = Field(0.001, ge=0, le=1)


class RetrySettings(BaseModel):
    """Retry policy for transient faults: exponential backoff with jitter."""

    max_retries: int = Field(3, ge=0)
    base_delay_seconds: float = Field(1.0, ge=0)
    backoff_factor: float = Field(2.0, ge=1)
    max_delay_seconds: float = Field(60.0, ge=0)


class AlphaPulseSettings(BaseSettings):
    """Platform-wide settings (env prefix ``ALPHAPULSE_``)."""

    model_config = SettingsConfigDict(env_prefix="ALPHAPULSE_", env_nested_delimiter="__", extra="ignore")

    # Project state (candles, models, the platform database) sits beside the local Dagster instance,
    # whose dagster.yaml keeps its SQLite files under DAGSTER_HOME/.alphapulse too.
    home: Path = Field(default_factory=lambda: (Path(os.environ.get("DAGSTER_HOME") or ".") / ".alphapulse").absolute())
    # NoDecode: a comma-separated list from a shell is parsed by the validator below, not as JSON.
    symbols: Annotated[tuple[str, ...], NoDecode] = DEFAULT_SYMBOLS
    timezone: str = "UTC"
    base_timeframe: str = "15m"
    # Sample data and partitions start here; the monthly cadence needs 18 months before its first key.
    start_date: date = date(2024, 1, 1)
    # Where candle partitions are written: a local path or an fsspec URL (s3://, gs://, memory://).
    storage_url: str | None = None
    # Source names in fallback order: sample, files, postgres, exchange.
    sources: Annotated[tuple[str, ...], NoDecode] = ("sample",)
    files_dir: Path | None = None
    # Time zone of naive timestamps in the files (an exchange's local time, a broker's server time).
    files_timezone: str | None = None
    postgres_url_env: str = "ALPHAPULSE_MARKET_DB_URL"
    exchange_id: str = "binance"
    source_timeout_seconds: float = Field(30.0, gt=0)

    quality: QualitySettings = QualitySettings()
    retry: RetrySettings = RetrySettings()

    # One class per cadence, so that overriding one field from the environment keeps the others' defaults.
    nightly: NightlySettings = NightlySettings()
    weekly: WeeklySettings = WeeklySettings()
    monthly: MonthlySettings = MonthlySettings()

    @field_validator("symbols", "sources", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        # Accept "BTCUSDT,ETHUSDT" from a shell as well as a JSON list.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return tuple(json.loads(value))
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @field_validator("symbols")
    @classmethod
    def _symbols_upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one symbol is required")
        return tuple(s.upper() for s in value)

    @property
    def candle_store_url(self) -> str:
        return self.storage_url or str(self.home / "candles")


@lru_cache(maxsize=1)
def get_settings() -> AlphaPulseSettings:
    """The process-wide settings, read once from the environment."""
    return AlphaPulseSettings()
