"""Recovery configuration in one place: breakers per dependency, escalation, host limits, heavy cadences.

Defaults follow the design guide (breaker: 5 failures, 60 s recovery timeout; escalation: 5 critical errors
within 1 h; critical memory / disk: 95 % / 95 %; the monthly cadence is the heavy one). The values are read
from the one settings tree (``settings.py``: ``breaker``, ``escalation``, ``host``, ``heavy_cadences``), so
every one can be overridden from the environment::

    ALPHAPULSE_BREAKER__RECOVERY_TIMEOUT=120                 every breaker
    ALPHAPULSE_BREAKER__MARKET_DATA__FAILURE_THRESHOLD=3     one breaker (any BreakerConfig field)
    ALPHAPULSE_BREAKER__DEPENDENCIES=market_data,training,db the protected dependencies
                                                             (alias: ALPHAPULSE_BREAKER_DEPENDENCIES)
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
from dataclasses import dataclass, field, replace

from alphapulse_assets.recovery.breaker import BreakerConfig, BreakerConfigError
from alphapulse_assets.recovery.errors import DataValidationError
from alphapulse_assets.settings import AlphaPulseSettings, SettingsError, load_settings

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
            raise DataValidationError(
                f"window_seconds={self.window_seconds!r}: must be positive and finite",
                where="EscalationConfig.window_seconds",
            )


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


def load_recovery_config(env: Mapping[str, str] | None = None) -> RecoveryConfig:
    """The recovery configuration read now from the environment (``os.environ`` by default).

    A bad value raises SettingsError (a DataValidationError) naming the environment variable(s) that set it and the
    value: the definitions and the CLI load this at start, so it never surfaces first as a failing sensor tick."""
    return recovery_config(load_settings(env), env)


def recovery_config(settings: AlphaPulseSettings, env: Mapping[str, str] | None = None) -> RecoveryConfig:
    """The recovery configuration from the settings tree; BreakerConfig's rules are told as the variables."""
    b = settings.breaker
    try:
        default = replace(BreakerConfig(), **b.values())
    except BreakerConfigError as exc:
        raise _named(exc, None, settings, env) from None
    breakers: dict[str, BreakerConfig] = {}
    for dep in dict.fromkeys(b.dependencies + b.named()):
        own = b.own(dep)
        try:
            breakers[dep] = replace(default, **own.values()) if own else default
        except BreakerConfigError as exc:
            raise _named(exc, dep, settings, env) from None
    unknown = [d for d in b.named() if d not in b.dependencies]
    if unknown:  # most likely a typo in the dependency's name: its overrides would silently do nothing
        env = os.environ if env is None else env
        names = [f"ALPHAPULSE_BREAKER__{d.upper()}__{f.upper()}" for d in unknown for f in b.own(d).values()]
        shown = ", ".join(f"{n}={env.get(n, '')!r}" for n in names)
        raise SettingsError(
            f"invalid recovery settings: {shown}: {', '.join(unknown)} is not in "
            f"ALPHAPULSE_BREAKER__DEPENDENCIES ({', '.join(b.dependencies)})",
            where=names[0] if len(names) == 1 else "environment",
        )
    return RecoveryConfig(
        dependencies=b.dependencies,
        default_breaker=default,
        breakers={d: breakers[d] for d in b.dependencies},
        escalation=EscalationConfig(settings.escalation.threshold, settings.escalation.window_seconds),
        host=HostLimits(settings.host.memory_critical_percent, settings.host.disk_critical_percent),
        heavy_cadences=settings.heavy_cadences,
    )


def _named(
    exc: BreakerConfigError, dependency: str | None, settings: AlphaPulseSettings, env: Mapping[str, str] | None
) -> SettingsError:
    # A rule on one field (or between two): name the variable that set the field, for that breaker.
    field_name = (exc.where or "").removeprefix("BreakerConfig.")
    own = settings.breaker.own(dependency) if dependency else None
    if own is not None and field_name in own.values():
        var = f"ALPHAPULSE_BREAKER__{dependency.upper()}__{field_name.upper()}"
        value = own.values()[field_name]
    else:
        var = f"ALPHAPULSE_BREAKER__{field_name.upper()}"
        value = settings.breaker.values().get(field_name)
    raw = (os.environ if env is None else env).get(var, str(value))  # as the operator typed it
    return SettingsError(f"invalid recovery settings: {var}={raw!r}: {exc.message}", where=var)


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
    "recovery_config",
]
