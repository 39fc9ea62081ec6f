"""One typed configuration for the whole platform.

Every value has a default taken from the system AlphaPulse replaces (see the design guide) and can be
overridden from the environment with the ``ALPHAPULSE_`` prefix; nested fields use ``__``, for example
``ALPHAPULSE_SYMBOLS='["BTCUSDT","ETHUSDT"]'`` or ``ALPHAPULSE_QUALITY__MAX_MISSING_FRACTION=0.02``.
Dagster resources take their defaults from here, so run config can still override them per run.

This module does not import Dagster.
"""

from __future__ import annotations

import os
from datetime import date
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    timezone: str = "UTC"
    base_timeframe: str = "15m"
    # Sample data and partitions start here; the monthly cadence needs 18 months before its first key.
    start_date: date = date(2024, 1, 1)
    # Where candle partitions are written: a local path or an fsspec URL (s3://, gs://, memory://).
    storage_url: str | None = None
    # Source names in fallback order: sample, files, postgres, exchange.
    sources: tuple[str, ...] = ("sample",)
    files_dir: Path | None = None
    postgres_url_env: str = "ALPHAPULSE_MARKET_DB_URL"
    exchange_id: str = "binance"
    source_timeout_seconds: float = Field(30.0, gt=0)

    quality: QualitySettings = QualitySettings()
    retry: RetrySettings = RetrySettings()

    nightly: CadenceSettings = CadenceSettings(
        cron="0 2 * * *", timeframe="15m", window_days=16, budget_seconds=15 * 60, min_rows=100,
        min_validation_samples=150,
    )
    weekly: CadenceSettings = CadenceSettings(
        cron="0 3 * * 0", timeframe="1h", window_days=70, budget_seconds=3600, min_rows=1000
    )
    monthly: CadenceSettings = CadenceSettings(
        cron="0 3 1 * *", timeframe="4h", window_days=548, budget_seconds=4 * 3600, min_rows=5000
    )

    @field_validator("symbols", "sources", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        # Accept "BTCUSDT,ETHUSDT" from a shell as well as a JSON list.
        if isinstance(value, str) and not value.lstrip().startswith("["):
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
