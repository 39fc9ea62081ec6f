"""One typed configuration for the whole platform.

Every value has a default taken from the system AlphaPulse replaces (see the design guide) and can be
overridden from the environment with the ``ALPHAPULSE_`` prefix; nested fields use ``__``, for example
``ALPHAPULSE_SYMBOLS='["BTCUSDT","ETHUSDT"]'`` or ``ALPHAPULSE_QUALITY__MAX_MISSING_FRACTION=0.02``.
Dagster resources take their defaults from here, so run config can still override them per run.

A bad value is refused when the settings are read (the definitions' import, the CLI's start) with a
:class:`SettingsError` naming the environment variable and the value. This module does not import Dagster.
"""

from __future__ import annotations

import json
import os
from datetime import date
from functools import lru_cache
from pathlib import Path

from typing import Annotated, Mapping
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from alphapulse_assets.market_data.schema import timeframe_to_timedelta
from alphapulse_assets.recovery.errors import DataValidationError

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT")


class SettingsError(DataValidationError):
    """A setting is invalid. The message names each environment variable and its bad value."""


def _timeframe(value: str) -> str:
    timeframe_to_timedelta(value)  # ValueError naming the bad value
    return value


def _time_zone(value: str | None) -> str | None:
    if value is not None:
        try:
            ZoneInfo(value)
        except Exception:
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as UTC or Europe/Berlin") from None
    return value


PositiveInt = Annotated[int, Field(gt=0)]


class CadenceSettings(BaseModel):
    """One retraining cadence: when it runs, on what bars, over what window, within what budget."""

    cron: str
    timeframe: str
    window_days: PositiveInt
    budget_seconds: PositiveInt
    min_rows: PositiveInt
    # Out-of-sample rows a challenger needs before the promotion gate will judge it.
    min_validation_samples: PositiveInt = 1000

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"{value!r} is not a cron expression of five fields (minute hour day month weekday)")
        return value

    _check_timeframe = field_validator("timeframe")(_timeframe)


class NightlySettings(CadenceSettings):
    """02:00, incremental update on the last day of 15m bars, 15 min budget."""

    cron: str = "0 2 * * *"
    timeframe: str = "15m"
    window_days: PositiveInt = 16
    budget_seconds: PositiveInt = 15 * 60
    min_rows: PositiveInt = 100
    min_validation_samples: PositiveInt = 150


class WeeklySettings(CadenceSettings):
    """Sunday 03:00, quick retrain on 10 weeks of 1h bars, 1 h budget."""

    cron: str = "0 3 * * 0"
    timeframe: str = "1h"
    window_days: PositiveInt = 70
    budget_seconds: PositiveInt = 3600
    min_rows: PositiveInt = 1000


class MonthlySettings(CadenceSettings):
    """1st of the month 03:00, full retrain on 18 months of 4h bars with a hyper-parameter search, 4 h budget."""

    cron: str = "0 3 1 * *"
    timeframe: str = "4h"
    window_days: PositiveInt = 548
    budget_seconds: PositiveInt = 4 * 3600
    min_rows: PositiveInt = 5000


class QualitySettings(BaseModel):
    """Data-quality thresholds for candle partitions."""

    max_missing_fraction: float = Field(0.05, ge=0, le=1)
    # A 15m return beyond this many robust standard deviations is an outlier (a warning, not a block).
    outlier_zscore: float = Field(12.0, gt=0)
    max_outlier_fraction: float = Field(0.001, ge=0, le=1)
    # A price moving by more than this factor within one bar is a broken feed: a blocking failure.
    max_bar_move_factor: float = Field(10.0, gt=1)


class GateSettings(BaseModel):
    """The promotion gate's thresholds (``training/promotion.py`` GateConfig), shared by every cadence and by
    ``alphapulse evaluate``; each cadence sets its own minimum of validation samples."""

    alpha: float = Field(0.05, gt=0, lt=1)
    champion_tolerance: float = Field(0.01, ge=0, lt=1)
    min_champion_overlap: int = Field(50, ge=1)
    psi_threshold: float = Field(0.25, gt=0)
    ks_threshold: float = Field(0.15, gt=0, le=1)
    rollback_drop: float = Field(0.15, gt=0, le=1)
    rollback_min_rows: int = Field(500, ge=1)


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

    # Opt-in for a store that forgets on exit (memory://, an in-memory SQLite): tests only.
    allow_ephemeral_storage: bool = False

    quality: QualitySettings = QualitySettings()
    gate: GateSettings = GateSettings()
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

    _check_base_timeframe = field_validator("base_timeframe")(_timeframe)
    _check_time_zones = field_validator("timezone", "files_timezone")(_time_zone)

    @field_validator("symbols")
    @classmethod
    def _symbols_upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one symbol is required")
        return tuple(s.upper() for s in value)

    @property
    def candle_store_url(self) -> str:
        return self.storage_url or str(self.home / "candles")


def settings_error(exc: ValidationError, prefix: str, env: Mapping[str, str] | None = None,
                   nested: str = "__") -> SettingsError:
    """A pydantic error, told as the environment variables that caused it and their values."""
    env = os.environ if env is None else env
    problems = []
    for error in exc.errors():
        path = [str(p) for p in error["loc"]]
        name = prefix + nested.join(p.upper() for p in path)
        # A nested value may come from its parent's JSON (ALPHAPULSE_NIGHTLY='{"min_rows": 5}').
        while name not in env and len(path) > 1:
            path = path[:-1]
            parent = prefix + nested.join(p.upper() for p in path)
            if parent in env:
                name = f"{parent} ({'.'.join(str(p) for p in error['loc'][len(path):])})"
                break
        value = error.get("input")
        shown = "(missing)" if isinstance(value, dict) and not value else repr(value)
        problems.append(f"{name}={shown}: {error['msg']}")
    return SettingsError("invalid settings: " + "; ".join(problems), where="environment")


@lru_cache(maxsize=1)
def get_settings() -> AlphaPulseSettings:
    """The process-wide settings, read once from the environment; a bad value raises SettingsError."""
    try:
        return AlphaPulseSettings()
    except ValidationError as exc:
        raise settings_error(exc, "ALPHAPULSE_") from None
