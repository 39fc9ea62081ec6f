"""Every setting checked before anything runs: the definitions call this when they load, the CLI when it starts.

The settings tree refuses its own bad values when it is read (``settings.get_settings``), and the recovery
configuration built from it refuses breaker rules (``recovery.config.recovery_config``); this module reads them
and adds the rules that span modules: source names, stores that would forget what they are given, user
features (importable, a declared look-back, no clashing name, and no look-ahead on the bundled sample market)
and user estimators (importable, with fit and predict_proba).
Problems raise :class:`SettingsError` naming the environment variable and its value. This module does not
import Dagster.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping

import pandas as pd
from fsspec.registry import get_filesystem_class
from fsspec.utils import get_protocol

from alphapulse_assets.features.lookahead import look_ahead_problems
from alphapulse_assets.features.user import EXTRA_SETTING, FeatureError, FeatureSet, load_user_features
from alphapulse_assets.market_data.sources import known_source_names
from alphapulse_assets.market_data.sources.sample import SampleSource
from alphapulse_assets.platform_db import PLATFORM_DB_ENV
from alphapulse_assets.recovery.config import recovery_config
from alphapulse_assets.settings import STORE_KINDS, AlphaPulseSettings, SettingsError, env_name, get_settings
from alphapulse_assets.training.estimators import check_estimator

CADENCES = ("nightly", "weekly", "monthly")
# The look-ahead check's data: two symbols of the bundled sample market, long enough for every look-back.
LOOK_AHEAD_SYMBOLS = ("BTCUSDT", "ETHUSDT")
LOOK_AHEAD_START = pd.Timestamp("2024-03-01", tz="UTC")

# Stores that keep nothing once the process ends: every candle written there is lost while runs report ok.
EPHEMERAL_PROTOCOLS = ("memory",)
OPT_IN = "ALPHAPULSE_ALLOW_EPHEMERAL_STORAGE=true"


def _store_variable(settings: AlphaPulseSettings, kind: str, env: Mapping[str, str]) -> str | None:
    """The variable that set ``kind``'s store URL (None when it defaults to ALPHAPULSE_HOME)."""
    if getattr(settings.store, f"{kind}_url"):
        return env_name(("store", f"{kind}_url"), env)
    return env_name(("store", "url"), env) if settings.store.url else None


def _store_problems(settings: AlphaPulseSettings, env: Mapping[str, str]) -> list[str]:
    problems = []
    seen = set()
    for kind in STORE_KINDS:
        variable = _store_variable(settings, kind, env)
        url = settings.store_url(kind)
        if variable is None or (variable, url.rsplit("/", 1)[0]) in seen:
            continue
        seen.add((variable, url.rsplit("/", 1)[0]))
        value = getattr(settings.store, f"{kind}_url") or settings.store.url
        protocol = get_protocol(url)
        if protocol in EPHEMERAL_PROTOCOLS and not settings.allow_ephemeral_storage:
            problems.append(
                f"{variable}={value!r}: {protocol}:// keeps nothing after the "
                f"process ends; use a folder or a persistent URL (s3://, gs://), or set {OPT_IN} in tests"
            )
            continue
        try:
            get_filesystem_class(protocol)
        except (ValueError, ImportError) as exc:
            problems.append(f"{variable}={value!r}: {exc}")
    db_url = env.get(PLATFORM_DB_ENV, "")
    if db_url.startswith("sqlite") and (db_url.rstrip("/") in ("sqlite:", "sqlite+pysqlite:") or ":memory:" in db_url):
        if not settings.allow_ephemeral_storage:
            problems.append(
                f"{PLATFORM_DB_ENV}={db_url!r}: an in-memory database loses breakers, alerts and models' "
                f"history on exit; use a file or PostgreSQL, or set {OPT_IN} in tests"
            )
    return problems


CELERY_BROKER_ENV = "ALPHAPULSE_CELERY__BROKER_URL"
CELERY_BACKEND_ENV = "ALPHAPULSE_CELERY__BACKEND_URL"
# The optional extra each executor needs, and the module it brings.
EXECUTOR_EXTRAS = {"celery": ("dagster_celery", "celery"), "k8s": ("dagster_k8s", "k8s")}


def _executor_problems(settings: AlphaPulseSettings, env: Mapping[str, str]) -> list[str]:
    problems = []
    if settings.executor in EXECUTOR_EXTRAS:
        module, extra = EXECUTOR_EXTRAS[settings.executor]
        if importlib.util.find_spec(module) is None:
            problems.append(
                f"ALPHAPULSE_EXECUTOR={settings.executor!r} needs {module}: pip install 'alphapulse-assets[{extra}]'"
            )
    # The run workers read the broker's URL from this very variable (executors.py), so it must be set by name.
    if settings.executor == "celery" and not env.get(CELERY_BROKER_ENV, "").strip():
        problems.append(
            f"ALPHAPULSE_EXECUTOR='celery' needs {CELERY_BROKER_ENV} (e.g. redis://host:6379/0), "
            "the broker the Celery workers listen to"
        )
    return problems


def _source_problems(settings: AlphaPulseSettings) -> list[str]:
    known = known_source_names()
    problems = [
        f"ALPHAPULSE_SOURCES={','.join(settings.sources)!r}: unknown source {name!r}; choose from {', '.join(known)}"
        for name in settings.sources
        if name not in known
    ]
    if not settings.sources:
        problems.append("ALPHAPULSE_SOURCES='': at least one source is required")
    if "files" in settings.sources and settings.files_dir is None:
        problems.append(
            "ALPHAPULSE_SOURCES includes 'files' but ALPHAPULSE_FILES_DIR is not set (a folder of CSV/Parquet files)"
        )
    return problems


def sample_candles(bars_per_symbol: int) -> pd.DataFrame:
    """The bundled sample market's 15m bars, ``bars_per_symbol`` (rounded up to days) per symbol."""
    days = -(-bars_per_symbol // 96)
    return SampleSource().fetch(list(LOOK_AHEAD_SYMBOLS), LOOK_AHEAD_START, LOOK_AHEAD_START + pd.Timedelta(days=days))


def check_features(paths: tuple[str, ...]) -> FeatureSet:
    """Load the user's features and refuse any that looks ahead on the sample market (names the feature, the
    setting and the first bar where its value changes when later bars are present)."""
    features = FeatureSet(load_user_features(paths))
    if not features.user:
        return features  # the built-in features are checked by the test suite
    candles = sample_candles(max(4 * features.max_lookback, 8 * 96))
    problems = look_ahead_problems(features.build, candles)
    if problems:
        by_name = {n: uf.path for uf in features.user for n in uf.names}
        raise FeatureError(
            f"{EXTRA_SETTING}: "
            + "; ".join(f"{by_name.get(p.feature, 'built-in')}: {p}" for p in problems)
            + " (a feature at bar t may read bars up to t only)",
            where=EXTRA_SETTING,
        )
    return features


def check_configuration(env: Mapping[str, str] | None = None) -> AlphaPulseSettings:
    """Read every settings object and refuse the first invalid one, or the cross-module problems, all named."""
    env = os.environ if env is None else env
    settings = get_settings()
    recovery_config(settings, env)
    problems = _source_problems(settings) + _store_problems(settings, env) + _executor_problems(settings, env)
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems), where="environment")
    check_features(tuple(settings.features.extra))
    for cadence in CADENCES:
        cfg = getattr(settings, cadence)
        if cfg.estimator:
            check_estimator(cadence, cfg.estimator, cfg.estimator_params)
    return settings
