"""One typed settings tree for the whole platform.

Every value has a default taken from the system AlphaPulse replaces (see the design guide) and can be
overridden from the environment with the ``ALPHAPULSE_`` prefix; nested groups use ``__``, for example
``ALPHAPULSE_SYMBOLS='["BTCUSDT","ETHUSDT"]'``, ``ALPHAPULSE_QUALITY__MAX_MISSING_FRACTION=0.02``,
``ALPHAPULSE_MONITORING__RETENTION_HOURS=48``, ``ALPHAPULSE_BREAKER__MARKET_DATA__FAILURE_THRESHOLD=3`` or
``ALPHAPULSE_ALERTS__REPEAT_SECONDS=600``. The names operators used before the groups existed
(``ALPHAPULSE_MONITORING_RETENTION_HOURS``, ``ALPHAPULSE_SLACK_WEBHOOK_URL``, ``ALPHAPULSE_SMTP_HOST``, ...) are
aliases (:data:`LEGACY_NAMES`); when both are set, the nested name wins. An empty variable counts as unset.
Dagster resources take their defaults from here, so run config can still override them per run.

A bad value is refused when the settings are read (the definitions' import, the CLI's start) with a
:class:`SettingsError` naming the environment variable and the value; secrets (webhook URLs, the SMTP
password) are ``SecretStr`` and never shown. This module does not import Dagster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pandas as pd
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from alphapulse_assets.recovery.errors import DataValidationError

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT")


class SettingsError(DataValidationError):
    """A setting is invalid. The message names each environment variable and its bad value."""


# Bar sizes: the grammar every timeframe setting and the candle schema share. Canonical spelling is a
# number and one of m, h, d, w in the largest whole unit ("60m" -> "1h"); canonical_timeframe reads others.
TIMEFRAME_UNITS = {"m": "min", "h": "h", "d": "D", "w": "W"}
_UNIT_WORDS = {
    "m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m", "t": "m",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "d": "d", "day": "d", "days": "d",
    "w": "w", "wk": "w", "week": "w", "weeks": "w",
}  # fmt: skip
_BAR_WORDS = {"minutely": "1m", "hourly": "1h", "daily": "1d", "weekly": "1w"}
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 10080}


def canonical_timeframe(timeframe: str) -> str:
    """Any usual spelling of a bar size as ``<N><m|h|d|w>`` in its largest whole unit.

    '15m', '15min', '15 minutes', '15T' (pandas) -> '15m'; '1H', '60min', '60T' -> '1h'; '1D', 'daily',
    '24h' -> '1d'; '1W', 'weekly', '7d' -> '1w'; '90m' stays '90m'. Raises ValueError naming the bad value."""
    text = str(timeframe).strip().lower().replace(" ", "")
    text = _BAR_WORDS.get(text, text)
    number = text[: len(text) - len(text.lstrip("0123456789"))]
    unit = _UNIT_WORDS.get(text[len(number) :])
    if unit is None or (number and int(number) <= 0):
        raise ValueError(
            f"unknown bar size {timeframe!r}: use a number and one of m, h, d, w (e.g. 15m, 1h, 1d; "
            "also 15min, 1H, 60T, daily, hourly)"
        )
    minutes = int(number or 1) * _UNIT_MINUTES[unit]
    for name in ("w", "d", "h", "m"):
        if minutes % _UNIT_MINUTES[name] == 0:
            return f"{minutes // _UNIT_MINUTES[name]}{name}"
    raise AssertionError("unreachable: every bar is a whole number of minutes")


def timeframe_to_timedelta(timeframe: str) -> pd.Timedelta:
    """'15m' -> 15 minutes, '1h', '4h', '1d' (any spelling canonical_timeframe reads). Raises ValueError."""
    tf = canonical_timeframe(timeframe)
    return pd.Timedelta(int(tf[:-1]), unit=TIMEFRAME_UNITS[tf[-1]])


def _timeframe(value: str) -> str:
    return canonical_timeframe(value)  # ValueError naming the bad value


def _cron(value: str) -> str:
    if len(value.split()) != 5:
        raise ValueError(f"{value!r} is not a cron expression of five fields (minute hour day month weekday)")
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
    # The classifier: a built-in ("sgd" | "hgb" | "hgb_search"; default: the cadence's own) or any
    # scikit-learn compatible class by dotted path ("sklearn.ensemble.RandomForestClassifier",
    # "mypkg.models:MyClassifier"), built with ``estimator_params`` (JSON). Checked at start
    # (training/estimators.py): importable, has fit and predict_proba.
    estimator: str | None = None
    estimator_params: dict[str, Any] = Field(default_factory=dict)

    _check_cron = field_validator("cron")(_cron)

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

    # Refuse a name that is not here, such as the removed ALPHAPULSE_GATE__ROLLBACK_DROP / __ROLLBACK_MIN_ROWS:
    # rollback is decided by live scoring now (the ``live`` group), so those values would be silently unused.
    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.05, gt=0, lt=1)
    champion_tolerance: float = Field(0.01, ge=0, lt=1)
    min_champion_overlap: int = Field(50, ge=1)
    psi_threshold: float = Field(0.25, gt=0)
    ks_threshold: float = Field(0.15, gt=0, le=1)
    # The implausibility guard: a challenger that looks too good for its market is held for review, not
    # promoted (a leak looks like this). Bounds set well above what the bundled sample market gives (see
    # training/promotion.py ``plausibility``); set one to 1 (AUC) or a large edge to turn it off.
    max_auc: float = Field(0.80, gt=0.5, le=1)
    max_baseline_auc: float = Field(0.75, gt=0.5, le=1)
    max_log_loss_edge: float = Field(0.15, gt=0)


class LiveSettings(BaseModel):
    """Live scoring of the champions (``training/live_scoring.py``) and its rollback rule."""

    model_config = ConfigDict(extra="forbid")

    # The rolling window, in the cadence's bars: scores over it, and the stretch the rule judges.
    window_bars: int = Field(500, ge=2)
    # The rule judges a champion on at least this many labelled bars since it became champion.
    min_bars: int = Field(200, ge=2)
    # One-sided level of the paired block-bootstrap test "live log loss worse than the best baseline". Stricter
    # than the gate's 5 %: the rule looks again every day over overlapping windows.
    alpha: float = Field(0.01, gt=0, lt=1)
    n_boot: int = Field(1000, ge=100)
    # Newest challengers registered since the champion's promotion scored in shadow beside it.
    max_shadows: int = Field(2, ge=0)
    # Roll an underperforming champion back (true), or only alert (false).
    rollback: bool = True
    # When the live_scoring job runs (UTC): after the day's candles (ingestion 01:30) and the 02:00 nightly.
    cron: str = "45 3 * * *"

    _check_cron = field_validator("cron")(_cron)

    @model_validator(mode="after")
    def _window_holds_min_bars(self) -> LiveSettings:
        if self.min_bars > self.window_bars:
            raise ValueError(
                f"ALPHAPULSE_LIVE__MIN_BARS ({self.min_bars}) must not exceed ALPHAPULSE_LIVE__WINDOW_BARS "
                f"({self.window_bars}): the rule judges bars inside the window"
            )
        if self.alpha <= 1 / (self.n_boot + 1):
            raise ValueError(
                f"ALPHAPULSE_LIVE__ALPHA ({self.alpha}) must exceed 1 / (ALPHAPULSE_LIVE__N_BOOT + 1) = "
                f"{1 / (self.n_boot + 1):.5f}, the smallest p-value {self.n_boot} bootstrap replicates can give"
            )
        return self


class CostSettings(BaseModel):
    """Trading costs charged by the long/flat strategy behind every Sharpe figure (cadences and ``evaluate``),
    in basis points of notional per position change (entering or leaving)."""

    model_config = ConfigDict(extra="forbid")

    fee_bps: float = Field(10.0, ge=0, le=1000, allow_inf_nan=False)
    slippage_bps: float = Field(0.0, ge=0, le=1000, allow_inf_nan=False)

    @property
    def total_bps(self) -> float:
        return self.fee_bps + self.slippage_bps


MARKET_CALENDARS = ("auto", "crypto", "fx", "exchange")


def _calendar_name(value: str) -> str:
    name = str(value).strip().lower()
    if name not in MARKET_CALENDARS:
        raise ValueError(f"unknown market calendar {value!r}; use one of {', '.join(MARKET_CALENDARS)}")
    return name


class CalendarSettings(BaseModel):
    """When each market trades (``market_data/calendars.py``): it sets the Sharpe annualisation and which bars
    the coverage rule of ``alphapulse evaluate`` expects. ``auto`` infers it per symbol from the bars."""

    model_config = ConfigDict(extra="forbid")

    market: str = "auto"
    # Per-symbol choices, "SPY=exchange,EURUSD=fx" (or a JSON object); they win over ``market``.
    by_symbol: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # Regular session of an exchange (NYSE and Nasdaq: 09:30-16:00, 6.5 h), for intraday exchange bars.
    session_hours: float = Field(6.5, gt=0, le=24, allow_inf_nan=False)

    _check_market = field_validator("market")(_calendar_name)

    @field_validator("by_symbol", mode="before")
    @classmethod
    def _pairs(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                return json.loads(text)
            pairs = {}
            for item in filter(None, (p.strip() for p in text.split(","))):
                symbol, sep, calendar = item.partition("=")
                if not sep or not symbol.strip():
                    raise ValueError(f"{item!r} is not SYMBOL=CALENDAR (e.g. SPY=exchange,EURUSD=fx)")
                pairs[symbol.strip()] = calendar.strip()
            return pairs
        return value

    @field_validator("by_symbol")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        return {symbol.upper(): _calendar_name(calendar) for symbol, calendar in value.items()}

    def for_symbol(self, symbol: str) -> str:
        return self.by_symbol.get(symbol.upper(), self.market)


class MaxDataAge(BaseModel):
    """The oldest data a prediction may be made from, in bars of each cadence's own bar size: the newest stored
    bar must have closed at most this many bars ago. The defaults are 28 hours each: candles are ingested once
    a day (01:30 UTC for the day before), so data is up to about 26 hours old just before the next ingestion,
    and one missed ingestion makes every prediction refuse."""

    nightly: PositiveInt = 112  # 15m bars
    weekly: PositiveInt = 28  # 1h bars
    monthly: PositiveInt = 7  # 4h bars


class ServingSettings(BaseModel):
    """Serving the champions (``alphapulse predict``, ``serving.Predictor``, the ``signals/<cadence>`` assets)."""

    max_data_age: MaxDataAge = MaxDataAge()


def _csv(value: object) -> object:
    """A comma-separated list from a shell ("a, b") as well as a JSON list."""
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            return tuple(json.loads(value))
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return value


# A list setting: NoDecode, so that a comma-separated list from a shell is split by _csv, not parsed as JSON.
CsvTuple = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_csv)]


class FeatureSettings(BaseModel):
    """Features users add without editing the package (``features/user.py``): dotted paths of functions
    decorated with ``@alphapulse_assets.features.feature(lookback=N)``, checked at start."""

    extra: CsvTuple = ()

    _split_extra = field_validator("extra", mode="before")(_csv)


class RetrySettings(BaseModel):
    """Step retries for transient faults (``recovery/policies.py``): Dagster's exponential backoff waits
    (2^n - 1) x ``base_delay_seconds`` before retry n (1, 3, 7 s by default), plus or minus one base delay of jitter."""

    # Refuse a name that is not here, such as the removed ALPHAPULSE_RETRY__BACKOFF_FACTOR / __MAX_DELAY_SECONDS:
    # Dagster's RetryPolicy has a fixed exponential form and no cap, so those values could not be honoured.
    model_config = ConfigDict(extra="forbid")

    max_retries: int = Field(3, ge=0)
    base_delay_seconds: float = Field(1.0, ge=0)


class MonitoringSettings(BaseModel):
    """Sensor intervals, sample retention, mount points, health-check limits (``ALPHAPULSE_MONITORING__*``)."""

    metrics_interval_seconds: int = Field(30, ge=5)
    health_interval_seconds: int = Field(60, ge=10)
    check_alert_interval_seconds: int = Field(30, ge=5)
    # How often the run-failure alert and run-success resolve sensors look for new run outcomes, and how
    # often dead_run_sensor looks for runs whose owner process died (Dagster's default for sensors: 30 s).
    run_status_interval_seconds: int = Field(30, ge=5)
    dead_run_interval_seconds: int = Field(30, ge=5)
    retention_hours: float = Field(24.0, gt=0)
    # Disk usage is sampled (and alerted on) for each of these paths.
    mount_points: CsvTuple = ("/",)
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


def _number(value: object) -> object:
    """A number given as text, checked before a field typed ``float | Literal["off"] | None`` sees it: pydantic
    would answer a bad one with an error per member of the union; this says "'five minutes' is not a number"."""
    if isinstance(value, str):
        text = value.strip()
        try:
            float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        return text
    return value


class BreakerOverrides(BaseModel):
    """Values that replace ``recovery.breaker.BreakerConfig``'s defaults; unset fields keep them. The ranges
    (and rules between values) are checked by BreakerConfig when the recovery configuration is built."""

    failure_threshold: int | None = None
    # "none" or "off" turns the failure-rate rule off.
    failure_rate_threshold: float | Literal["off"] | None = None
    window_seconds: float | None = None
    minimum_calls: int | None = None
    window_max_calls: int | None = None
    recovery_timeout: float | None = None
    backoff_factor: float | None = None
    max_recovery_timeout: float | None = None
    half_open_max_probes: int | None = None
    half_open_success_threshold: int | None = None
    # "none" or "off": a probe slot is never presumed lost.
    probe_timeout: float | Literal["off"] | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _numbers(cls, value: object, info) -> object:
        if info.field_name not in BreakerOverrides.model_fields:  # BreakerSettings' own fields (dependencies)
            return value
        if (
            info.field_name in ("failure_rate_threshold", "probe_timeout")
            and isinstance(value, str)
            and value.strip().lower() in ("none", "off")
        ):
            return "off"
        return _number(value)

    def values(self) -> dict[str, float | int | None]:
        """The fields that were set, ready for ``dataclasses.replace(BreakerConfig(), **values)``."""
        return {
            k: (None if v == "off" else v) for k in BreakerOverrides.model_fields if (v := getattr(self, k)) is not None
        }


class BreakerSettings(BreakerOverrides):
    """Circuit breakers: ``ALPHAPULSE_BREAKER__<FIELD>`` for every breaker,
    ``ALPHAPULSE_BREAKER__<DEPENDENCY>__<FIELD>`` for one, ``ALPHAPULSE_BREAKER__DEPENDENCIES`` for the list."""

    model_config = ConfigDict(extra="allow")
    # Any other key is a dependency's own overrides (ALPHAPULSE_BREAKER__MARKET_DATA__FAILURE_THRESHOLD).
    __pydantic_extra__: dict[str, BreakerOverrides] = Field(init=False)

    dependencies: CsvTuple = ("market_data", "training")

    @field_validator("dependencies", mode="after")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.lower() for v in value)

    def own(self, dependency: str) -> BreakerOverrides | None:
        """The overrides set for one dependency only."""
        return (self.__pydantic_extra__ or {}).get(dependency.lower())

    def named(self) -> tuple[str, ...]:
        """Every dependency with overrides of its own."""
        return tuple(self.__pydantic_extra__ or {})


class EscalationSettings(BaseModel):
    """``threshold`` critical errors within ``window_seconds`` raise one escalated alert."""

    threshold: int = Field(5, ge=1)
    window_seconds: float = Field(3600.0, gt=0, allow_inf_nan=False)


class HostSettings(BaseModel):
    """A heavy cadence does not start at or above these (the guide's critical memory / disk levels)."""

    memory_critical_percent: float = Field(95.0, gt=0, le=100)
    disk_critical_percent: float = Field(95.0, gt=0, le=100)


SEVERITIES = ("info", "warning", "error", "critical")


class MinSeverity(BaseModel):
    """The least severe alert each channel receives: a pager wakes someone only for critical ones."""

    log: str = "info"
    slack: str = "warning"
    webhook: str = "critical"
    email: str = "warning"

    @field_validator("*")
    @classmethod
    def _severity(cls, value: str) -> str:
        if value.strip().lower() not in SEVERITIES:
            raise ValueError(f"unknown severity {value!r}; expected one of {', '.join(SEVERITIES)}")
        return value.strip().lower()


class AlertSettings(BaseModel):
    """Alert channels and routing. A channel is on when its URL or host is set; the log channel always is."""

    slack_webhook_url: SecretStr | None = None
    # A generic JSON webhook, e.g. a pager.
    webhook_url: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    email_from: str | None = None
    email_to: CsvTuple = ()
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    min_severity: MinSeverity = MinSeverity()
    # De-duplication: an unchanged alert is sent again after this long (alerting/alerts.py DEFAULT_REPEAT_INTERVAL).
    repeat_seconds: float = Field(4 * 3600.0, ge=0, allow_inf_nan=False)
    group_window_seconds: float = Field(60.0, ge=0, allow_inf_nan=False)
    timeout_seconds: float = Field(5.0, ge=0, allow_inf_nan=False)

    @field_validator("slack_webhook_url", "webhook_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The message must not repeat the URL: a webhook's token is in its path.
        if value is not None and urlsplit(value.get_secret_value().strip()).scheme not in ("http", "https"):
            raise ValueError("is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _email_needs_addresses(self) -> AlertSettings:
        if self.smtp_host and (not self.email_from or not self.email_to):
            raise ValueError(
                "ALPHAPULSE_SMTP_HOST is set but ALPHAPULSE_ALERT_EMAIL_FROM / ALPHAPULSE_ALERT_EMAIL_TO "
                "are not (or their nested names ALPHAPULSE_ALERTS__EMAIL_FROM / __EMAIL_TO)"
            )
        return self


class ScaleSettings(BaseModel):
    """How a cadence's symbols are split into runs, and how a run's per-symbol work uses its machine
    (``training/fanout.py``): worker processes, each capped to one numeric thread (scikit-learn's OpenMP and
    BLAS), the work spread over them by symbol."""

    model_config = ConfigDict(extra="forbid")

    # ALPHAPULSE_SCALE__WORKERS: worker processes per models step; unset = the cores this process may use
    # (its CPU affinity); 1 = every symbol in the step's own process, no pool.
    workers: int | None = Field(None, ge=1)
    # ALPHAPULSE_SCALE__MIN_POOL_SECONDS: starting workers costs about a second each (a new Python importing
    # scikit-learn and pandas): a step whose work would take less than this in its own process (estimated
    # from the symbols done so far) stays there.
    min_pool_seconds: float = Field(4.0, ge=0)
    # ALPHAPULSE_SCALE__SYMBOLS_PER_RUN: a cadence partition runs as one run per this many contiguous symbols
    # (spread over workers by the run launcher; the run coordinator's limits apply); 0 = all symbols in one run.
    symbols_per_run: int = Field(0, ge=0)


STORE_KINDS = ("candles", "training_sets", "models", "signals")


class StoreSettings(BaseModel):
    """Where files a later run needs live: one root URL (a folder or an fsspec URL such as s3://bucket/prefix)
    with a folder per kind, or a URL per kind. Unset, everything stays under ALPHAPULSE_HOME."""

    # ALPHAPULSE_STORE__URL (or ALPHAPULSE_STORE_URL): <url>/candles, /training_sets, /models, /signals
    url: str | None = None
    candles_url: str | None = None  # ALPHAPULSE_STORE__CANDLES_URL (or the older ALPHAPULSE_STORAGE_URL)
    training_sets_url: str | None = None
    models_url: str | None = None
    signals_url: str | None = None  # the champions' answers per day (serving)
    # An S3-compatible server (MinIO, Ceph, a moto server): its http(s) endpoint. Credentials are never
    # settings: s3fs reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE and roles as botocore does.
    endpoint_url: str | None = None

    @field_validator("url", "candles_url", "training_sets_url", "models_url", "signals_url", "endpoint_url")
    @classmethod
    def _no_blank(cls, value: str | None) -> str | None:
        value = (value or "").strip().rstrip("/")
        return value or None

    @field_validator("endpoint_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL (the S3-compatible server's endpoint)")
        return value


EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")


class CelerySettings(BaseModel):
    """The Celery broker and result backend (``ALPHAPULSE_EXECUTOR=celery``). Their URLs may carry a password, so
    they are secrets: read from the environment by each run worker, never written into a job or a log."""

    broker_url: SecretStr | None = None  # e.g. redis://:password@redis.internal:6379/0
    backend_url: SecretStr | None = None  # the result backend; unset, the broker's URL
    # The Celery queue the model-training steps go to (the rest go to Celery's "dagster" queue): run workers
    # listening on it on the machines meant for training (`celery ... worker -Q training`).
    training_queue: str | None = None

    @field_validator("broker_url", "backend_url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        # The message must not repeat the URL: it may hold a password.
        if value is None or not value.get_secret_value().strip():
            return None
        if "://" not in value.get_secret_value():
            raise ValueError("is not a URL (e.g. redis://host:6379/0)")
        return value

    @field_validator("training_queue")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        return value or None


class AlphaPulseSettings(BaseSettings):
    """Platform-wide settings (env prefix ``ALPHAPULSE_``)."""

    model_config = SettingsConfigDict(env_prefix="ALPHAPULSE_", env_nested_delimiter="__", extra="ignore")

    # Project state (candles, models, the platform database) sits beside the local Dagster instance,
    # whose dagster.yaml keeps its SQLite files under DAGSTER_HOME/.alphapulse too.
    home: Path = Field(default_factory=lambda: (Path(os.environ.get("DAGSTER_HOME") or ".") / ".alphapulse").absolute())
    symbols: CsvTuple = DEFAULT_SYMBOLS
    timezone: str = "UTC"
    base_timeframe: str = "15m"
    # Sample data and partitions start here; the monthly cadence needs 18 months before its first key.
    start_date: date = date(2024, 1, 1)
    # Where candles, training sets and model artifacts live (see StoreSettings); ALPHAPULSE_STORAGE_URL, the
    # older name of the candles' URL, is read as ALPHAPULSE_STORE__CANDLES_URL.
    store: StoreSettings = StoreSettings()
    # Source names in fallback order: sample, files, postgres, exchange.
    sources: CsvTuple = ("sample",)
    files_dir: Path | None = None
    # Time zone of naive timestamps in the files (an exchange's local time, a broker's server time).
    files_timezone: str | None = None
    postgres_url_env: str = "ALPHAPULSE_MARKET_DB_URL"
    exchange_id: str = "binance"
    # Symbols fetched from the exchange at once (threads), all within one rate limit: requests start at least
    # max(ALPHAPULSE_EXCHANGE_RATE_LIMIT_MS, the exchange's own rateLimit x the endpoint's weight) apart.
    exchange_concurrency: int = Field(4, ge=1, le=64)
    exchange_rate_limit_ms: float | None = Field(None, ge=0)
    source_timeout_seconds: float = Field(30.0, gt=0)

    # Opt-in for a store that forgets on exit (memory://, an in-memory SQLite): tests only.
    allow_ephemeral_storage: bool = False

    quality: QualitySettings = QualitySettings()
    gate: GateSettings = GateSettings()
    costs: CostSettings = CostSettings()
    calendar: CalendarSettings = CalendarSettings()
    features: FeatureSettings = FeatureSettings()
    live: LiveSettings = LiveSettings()
    retry: RetrySettings = RetrySettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    breaker: BreakerSettings = BreakerSettings()
    escalation: EscalationSettings = EscalationSettings()
    host: HostSettings = HostSettings()
    # Cadences that do not start while the host is critically short of memory or disk.
    heavy_cadences: CsvTuple = ("monthly",)
    alerts: AlertSettings = AlertSettings()
    serving: ServingSettings = ServingSettings()
    # Where a run's steps execute (definitions.py): in the run's own process (the default: steps are small),
    # a process per step, Celery workers on other machines (ALPHAPULSE_CELERY__*), or a Kubernetes Job per step.
    executor: Literal["in_process", "multiprocess", "celery", "k8s"] = "in_process"
    celery: CelerySettings = CelerySettings()
    scale: ScaleSettings = ScaleSettings()

    # One class per cadence, so that overriding one field from the environment keeps the others' defaults.
    nightly: NightlySettings = NightlySettings()
    weekly: WeeklySettings = WeeklySettings()
    monthly: MonthlySettings = MonthlySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        **others: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Arguments first, then the environment read by _EnvTree (nested names and their legacy aliases).
        return init_settings, _EnvTree(settings_cls)

    @field_validator("executor", mode="before")
    @classmethod
    def _executor_name(cls, value: object) -> object:
        return value.strip().lower().replace("-", "_") if isinstance(value, str) else value

    @field_validator("heavy_cadences")
    @classmethod
    def _cadences(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in ("nightly", "weekly", "monthly")]
        if unknown:
            raise ValueError(f"unknown cadence(s) {', '.join(unknown)}; use nightly, weekly, monthly")
        return value

    _check_base_timeframe = field_validator("base_timeframe")(_timeframe)
    _check_time_zones = field_validator("timezone", "files_timezone")(_time_zone)

    @field_validator("symbols")
    @classmethod
    def _symbols_upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one symbol is required")
        return tuple(s.upper() for s in value)

    def store_url(self, kind: str) -> str:
        """Where files of ``kind`` (candles, training_sets, models, signals) live: its own URL, else under the store's
        root URL, else under ALPHAPULSE_HOME."""
        if kind not in STORE_KINDS:
            raise ValueError(f"unknown store kind {kind!r}; choose from {', '.join(STORE_KINDS)}")
        own = getattr(self.store, f"{kind}_url")
        if own:
            return own
        return f"{self.store.url}/{kind}" if self.store.url else str(self.home / kind)

    @property
    def storage_url(self) -> str | None:
        """The candles' URL when one is set (the older name of ALPHAPULSE_STORE__CANDLES_URL)."""
        return self.store.candles_url

    @property
    def candle_store_url(self) -> str:
        return self.store_url("candles")


# -- the environment ------------------------------------------------------------------------------------

PREFIX = "ALPHAPULSE_"

# Names operators set before the settings were one tree, and where they now live. Each still works.
LEGACY_NAMES: dict[str, tuple[str, ...]] = {
    **{f"{PREFIX}MONITORING_{name.upper()}": ("monitoring", name) for name in MonitoringSettings.model_fields},
    f"{PREFIX}BREAKER_DEPENDENCIES": ("breaker", "dependencies"),
    f"{PREFIX}STORAGE_URL": ("store", "candles_url"),
    f"{PREFIX}STORE_URL": ("store", "url"),
    f"{PREFIX}SLACK_WEBHOOK_URL": ("alerts", "slack_webhook_url"),
    f"{PREFIX}ALERT_WEBHOOK_URL": ("alerts", "webhook_url"),
    f"{PREFIX}SMTP_HOST": ("alerts", "smtp_host"),
    f"{PREFIX}SMTP_PORT": ("alerts", "smtp_port"),
    f"{PREFIX}SMTP_USERNAME": ("alerts", "smtp_username"),
    f"{PREFIX}SMTP_PASSWORD": ("alerts", "smtp_password"),
    f"{PREFIX}SMTP_STARTTLS": ("alerts", "smtp_starttls"),
    f"{PREFIX}ALERT_EMAIL_FROM": ("alerts", "email_from"),
    f"{PREFIX}ALERT_EMAIL_TO": ("alerts", "email_to"),
    **{
        f"{PREFIX}ALERT_MIN_SEVERITY_{name.upper()}": ("alerts", "min_severity", name)
        for name in MinSeverity.model_fields
    },
    f"{PREFIX}ALERT_REPEAT_SECONDS": ("alerts", "repeat_seconds"),
    f"{PREFIX}ALERT_GROUP_WINDOW_SECONDS": ("alerts", "group_window_seconds"),
    f"{PREFIX}ALERT_TIMEOUT_SECONDS": ("alerts", "timeout_seconds"),
}
_LEGACY_BY_PATH = {path: name for name, path in LEGACY_NAMES.items()}
# Values never shown in an error or a log line.
SECRET_PATHS = {
    ("alerts", "slack_webhook_url"),
    ("alerts", "webhook_url"),
    ("alerts", "smtp_password"),
    ("celery", "broker_url"),
    ("celery", "backend_url"),
}

_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("alphapulse_settings_env", default=None)


def env_name(path: tuple[str, ...], env: Mapping[str, str] | None = None) -> str:
    """The variable that sets ``path`` (e.g. ``("alerts", "smtp_host")``): the nested name, or its legacy
    alias when only the alias is set."""
    env = os.environ if env is None else env
    nested = PREFIX + "__".join(p.upper() for p in path)
    legacy = _LEGACY_BY_PATH.get(tuple(path))
    return legacy if legacy and not (env.get(nested) or "").strip() and (env.get(legacy) or "").strip() else nested


def _decode(raw: str) -> Any:
    text = raw.strip()
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass  # not JSON after all: the field's validator says what is wrong with it
    return raw


def env_tree(env: Mapping[str, str]) -> dict[str, Any]:
    """The ``ALPHAPULSE_*`` variables as nested values: ``A__B__C=1`` becomes ``{"a": {"b": {"c": "1"}}}``.

    Legacy aliases are applied first, so that a nested name set as well wins; empty values count as unset."""
    tree: dict[str, Any] = {}

    def put(path: tuple[str, ...], value: Any) -> None:
        node = tree
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        old = node.get(path[-1])
        if isinstance(old, dict) and isinstance(value, dict):  # ALPHAPULSE_WEEKLY='{..}' and ALPHAPULSE_WEEKLY__X
            node[path[-1]] = {**value, **old}
        elif not isinstance(old, dict):
            node[path[-1]] = value

    items = [(k.upper(), v) for k, v in env.items() if k.upper().startswith(PREFIX) and v is not None and v.strip()]
    for key, raw in items:
        if key in LEGACY_NAMES:
            put(LEGACY_NAMES[key], _decode(raw))
    # Shorter names first, so that ALPHAPULSE_WEEKLY='{...}' is merged under ALPHAPULSE_WEEKLY__MIN_ROWS.
    for key, raw in sorted(items, key=lambda item: item[0].count("__")):
        if key not in LEGACY_NAMES:
            path = tuple(p.lower() for p in key[len(PREFIX) :].split("__"))
            if all(path):
                put(path, _decode(raw))
    return tree


class _EnvTree(PydanticBaseSettingsSource):
    """Reads the environment (or the mapping given to :func:`load_settings`) with :func:`env_tree`."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        env = _ENV.get()
        return env_tree(os.environ if env is None else env)


@contextmanager
def _reading(env: Mapping[str, str] | None) -> Iterator[None]:
    token = _ENV.set(env)
    try:
        yield
    finally:
        _ENV.reset(token)


def settings_error(
    exc: ValidationError, prefix: str = PREFIX, env: Mapping[str, str] | None = None, nested: str = "__"
) -> SettingsError:
    """A pydantic error, told as the environment variables that caused it and their values (secrets hidden)."""
    env = os.environ if env is None else env
    problems, names = [], []
    for error in exc.errors():
        loc = tuple(str(p) for p in error["loc"])
        path = loc
        name = env_name(path, env) if prefix == PREFIX else prefix + nested.join(p.upper() for p in path)
        # A nested value may come from its parent's JSON (ALPHAPULSE_NIGHTLY='{"min_rows": 5}').
        while name not in env and len(path) > 1:
            path = path[:-1]
            parent = prefix + nested.join(p.upper() for p in path)
            if parent in env:
                name = f"{parent} ({'.'.join(loc[len(path) :])})"
                break
        value = error.get("input")
        if loc in SECRET_PATHS:
            shown = "'**********'"
        elif isinstance(value, dict) and not value:
            shown = "(missing)"
        elif isinstance(value, dict):  # a rule between a group's values: the message names them
            shown = None
        else:
            shown = repr(value)
        msg = error["msg"].removeprefix("Value error, ")
        problems.append(f"{name}: {msg}" if shown is None else f"{name}={shown}: {msg}")
        names.append(name)
    where = names[0] if len(names) == 1 else "environment"
    return SettingsError("invalid settings: " + "; ".join(problems), where=where)


def load_settings(env: Mapping[str, str] | None = None) -> AlphaPulseSettings:
    """The settings read now from ``env`` (``os.environ`` by default); a bad value raises SettingsError."""
    try:
        with _reading(env):
            return AlphaPulseSettings()
    except ValidationError as exc:
        raise settings_error(exc, PREFIX, env) from None


@lru_cache(maxsize=1)
def get_settings() -> AlphaPulseSettings:
    """The process-wide settings, read once from the environment; a bad value raises SettingsError."""
    return load_settings()
