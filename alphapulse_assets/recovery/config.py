"""Recovery configuration in one place: breakers per dependency, escalation, host limits, heavy cadences.

Defaults follow the design guide (breaker: 5 failures, 60 s recovery timeout; escalation: 5 critical errors
within 1 h; critical memory / disk: 95 % / 95 %; the monthly cadence is the heavy one). Every value can be
overridden from the environment, nested with ``__`` like the rest of the settings::

    ALPHAPULSE_BREAKER__RECOVERY_TIMEOUT=120                 every breaker
    ALPHAPULSE_BREAKER__MARKET_DATA__FAILURE_THRESHOLD=3     one breaker (any BreakerConfig field)
    ALPHAPULSE_BREAKER_DEPENDENCIES=market_data,training,db  the protected dependencies
    ALPHAPULSE_ESCALATION__THRESHOLD=5  ALPHAPULSE_ESCALATION__WINDOW_SECONDS=3600
    ALPHAPULSE_HOST__MEMORY_CRITICAL_PERCENT=95  ALPHAPULSE_HOST__DISK_CRITICAL_PERCENT=95
    ALPHAPULSE_HEAVY_CADENCES=monthly

A *dependency* is what an asset names in its ``alphapulse/dependency`` tag; the breaker sensor feeds the
breaker of that name from the outcomes of the asset's steps. This module does not import Dagster.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from alphapulse_assets.recovery.breaker import BreakerConfig, BreakerConfigError
from alphapulse_assets.recovery.errors import DataValidationError
from alphapulse_assets.settings import SettingsError

DEPENDENCY_TAG = "alphapulse/dependency"
PROBE_TAG = "alphapulse/probe"
PROBE_BREAKERS_TAG = "alphapulse/probe_breakers"
CADENCE_TAG = "alphapulse/cadence"

DEFAULT_DEPENDENCIES = ("market_data", "training")
# Which breakers gate which schedule. A cadence reads stored candles, so it is gated by its own work
# (training); ingestion by the market-data sources. A probe slot is only taken by the job that exercises it.
SCHEDULE_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "ingest_market_data_schedule": ("market_data",),
    "nightly_schedule": ("training",),
    "weekly_schedule": ("training",),
    "monthly_schedule": ("training",),
}
# When a run's steps cannot be mapped to assets (no definitions at hand), its job still names its dependency.
JOB_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "ingest_market_data": ("market_data",),
    "nightly_cadence": ("training",),
    "weekly_cadence": ("training",),
    "monthly_cadence": ("training",),
}


@dataclass(frozen=True)
class EscalationConfig:
    """``threshold`` critical errors within ``window_seconds`` raise one escalated alert."""

    threshold: int = 5
    window_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise DataValidationError(f"threshold={self.threshold!r}: must be >= 1", where="EscalationConfig.threshold")
        if not (self.window_seconds > 0 and math.isfinite(self.window_seconds)):
            raise DataValidationError(f"window_seconds={self.window_seconds!r}: must be positive and finite",
                                      where="EscalationConfig.window_seconds")


@dataclass(frozen=True)
class HostLimits:
    """A heavy cadence does not start at or above these (the guide's critical memory / disk levels)."""

    memory_critical_percent: float = 95.0
    disk_critical_percent: float = 95.0


@dataclass(frozen=True)
class RecoveryConfig:
    dependencies: tuple[str, ...] = DEFAULT_DEPENDENCIES
    default_breaker: BreakerConfig = field(default_factory=BreakerConfig)
    breakers: Mapping[str, BreakerConfig] = field(default_factory=dict)
    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    host: HostLimits = field(default_factory=HostLimits)
    heavy_cadences: tuple[str, ...] = ("monthly",)

    def breaker(self, name: str) -> BreakerConfig:
        """The configuration of breaker ``name`` (the default for a name with no override)."""
        return self.breakers.get(name, self.default_breaker)

    def known(self, name: str) -> bool:
        return name in self.dependencies or name in self.breakers


def host_pressure(memory_percent: float, disk_percent: float, limits: HostLimits) -> str | None:
    """Why a heavy cadence must not start now, or None when the host has room."""
    short = []
    if memory_percent >= limits.memory_critical_percent:
        short.append(f"memory {memory_percent:.1f}% >= {limits.memory_critical_percent:g}%")
    if disk_percent >= limits.disk_critical_percent:
        short.append(f"disk {disk_percent:.1f}% >= {limits.disk_critical_percent:g}%")
    return "host critically short of " + " and ".join(short) if short else None


_BREAKER_FIELDS = {f.name: f.type for f in fields(BreakerConfig)}


def _parse(value: str, name: str, where: str) -> object:
    text = value.strip()
    if name in ("failure_rate_threshold", "probe_timeout") and text.lower() in ("", "none", "off"):
        return None
    kind = str(_BREAKER_FIELDS.get(name, "float"))
    try:
        return int(text) if kind.startswith("int") else float(text)
    except ValueError:
        raise DataValidationError(f"{text!r} is not a number", where=where) from None


def _overrides(env: Mapping[str, str], prefix: str, where_prefix: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in env.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):].lower()
        if name in _BREAKER_FIELDS:
            out[name] = _parse(value, name, where=f"{where_prefix}{name.upper()}")
    return out


def load_recovery_config(env: Mapping[str, str] | None = None) -> RecoveryConfig:
    """The recovery configuration from the environment (``os.environ`` by default).

    A bad value raises SettingsError (a DataValidationError) naming the environment variable(s) that set it and the value:
    the definitions and the CLI load this at start, so it never surfaces first as a failing sensor tick."""
    env = os.environ if env is None else env
    try:
        return _load_recovery_config(env)
    except (DataValidationError, BreakerConfigError) as exc:
        where = exc.where or ""
        if where.startswith(("BreakerConfig.", "EscalationConfig.")):  # a rule between values: name them all
            field_name = where.split(".", 1)[1].upper()
            named = sorted(k for k in env if k.startswith(("ALPHAPULSE_BREAKER__", "ALPHAPULSE_ESCALATION__"))
                           and k.endswith("__" + field_name))
            where = ", ".join(f"{k}={env[k]!r}" for k in named) or where
        raise SettingsError(f"invalid recovery settings: {exc.message}", where=where) from None


def _load_recovery_config(env: Mapping[str, str]) -> RecoveryConfig:
    deps_raw = env.get("ALPHAPULSE_BREAKER_DEPENDENCIES")
    dependencies = tuple(d.strip() for d in deps_raw.split(",") if d.strip()) if deps_raw else DEFAULT_DEPENDENCIES

    common = {k: v for k, v in env.items() if k.startswith("ALPHAPULSE_BREAKER__") and k.count("__") == 1}
    default = replace(BreakerConfig(), **_overrides(common, "ALPHAPULSE_BREAKER__", "ALPHAPULSE_BREAKER__"))
    breakers: dict[str, BreakerConfig] = {}
    for dep in dependencies:
        prefix = f"ALPHAPULSE_BREAKER__{dep.upper()}__"
        own = _overrides(env, prefix, prefix)
        breakers[dep] = replace(default, **own) if own else default

    def number(name: str, default: float) -> float:
        raw = env.get(name)
        if raw is None or not raw.strip():
            return default
        try:
            return float(raw)
        except ValueError:
            raise DataValidationError(f"{raw!r} is not a number", where=name) from None

    threshold = number("ALPHAPULSE_ESCALATION__THRESHOLD", 5)
    if threshold != int(threshold):
        raise DataValidationError(f"{threshold!r} is not a whole number", where="ALPHAPULSE_ESCALATION__THRESHOLD")
    escalation = EscalationConfig(
        threshold=int(threshold),
        window_seconds=number("ALPHAPULSE_ESCALATION__WINDOW_SECONDS", 3600.0),
    )
    host = HostLimits(
        memory_critical_percent=number("ALPHAPULSE_HOST__MEMORY_CRITICAL_PERCENT", 95.0),
        disk_critical_percent=number("ALPHAPULSE_HOST__DISK_CRITICAL_PERCENT", 95.0),
    )
    heavy_raw = env.get("ALPHAPULSE_HEAVY_CADENCES")
    heavy = tuple(h.strip() for h in heavy_raw.split(",") if h.strip()) if heavy_raw is not None else ("monthly",)
    unknown = [h for h in heavy if h not in ("nightly", "weekly", "monthly")]
    if unknown:
        raise DataValidationError(f"{heavy_raw!r}: unknown cadence(s) {', '.join(unknown)}; use nightly, weekly, monthly",
                                  where="ALPHAPULSE_HEAVY_CADENCES")
    for name, value in (("ALPHAPULSE_HOST__MEMORY_CRITICAL_PERCENT", host.memory_critical_percent),
                        ("ALPHAPULSE_HOST__DISK_CRITICAL_PERCENT", host.disk_critical_percent)):
        if not 0 < value <= 100:
            raise DataValidationError(f"{value!r}: must be a percentage in (0, 100]", where=name)
    return RecoveryConfig(dependencies=dependencies, default_breaker=default, breakers=breakers,
                          escalation=escalation, host=host, heavy_cadences=heavy)


__all__ = [
    "CADENCE_TAG",
    "DEFAULT_DEPENDENCIES",
    "DEPENDENCY_TAG",
    "JOB_DEPENDENCIES",
    "PROBE_BREAKERS_TAG",
    "PROBE_TAG",
    "SCHEDULE_DEPENDENCIES",
    "EscalationConfig",
    "HostLimits",
    "RecoveryConfig",
    "host_pressure",
    "load_recovery_config",
]
