"""Features users add without editing the package, and the feature set a cadence trains with.

A user feature is a function in the user's own module, named by dotted path in
``ALPHAPULSE_FEATURES__EXTRA`` (``'["mypkg.features:spread_z"]'``) and declaring how many bars before ``t`` it
reads (its look-back)::

    from alphapulse_assets.features import feature

    @feature(lookback=20)
    def spread_z(candles):                      # one symbol's candles, in time order
        spread = (candles["high"] - candles["low"]) / candles["close"]
        return (spread - spread.rolling(21).mean()) / spread.rolling(21).std()

It receives one symbol's candles (``timestamp, open, high, low, close, volume``, a fresh 0..n-1 index) and
returns one column (a Series or array, named after the function) or several named ones (a DataFrame; its
column names are the feature names, and ``@feature(lookback=..., names=(...))`` declares them). Its declared
look-back enters the purge/embargo exactly as the built-in features' ``MAX_LOOKBACK`` does.

:func:`load_user_features` checks each path at start (importable, a callable, a declared look-back that is a
non-negative integer, names that clash with no other feature); errors name the setting and the path. The
look-ahead check (``features/lookahead.py``) then runs every feature on the bundled sample market.
This module does not import Dagster.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from alphapulse_assets.features.indicators import FEATURE_LOOKBACK, build_features, symbol_slices
from alphapulse_assets.recovery.errors import DataValidationError

EXTRA_SETTING = "ALPHAPULSE_FEATURES__EXTRA"
# A look-back beyond this many bars is almost certainly a mistake (a year of 15m bars is 35 040).
MAX_DECLARED_LOOKBACK = 10_000
CANDLE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


class FeatureError(DataValidationError):
    """A user feature is unusable: not importable, no look-back, a clashing name, or it looks ahead."""


def feature(lookback: int, names: Sequence[str] | None = None) -> Callable[[Callable], Callable]:
    """Declare a function as a feature that reads ``lookback`` bars before ``t`` (and ``t`` itself).

    ``names``: the columns it returns when it returns several (a DataFrame); default: the function's name.
    The function is returned unchanged, with ``alphapulse_lookback`` (and ``alphapulse_names``) set on it.
    """

    def mark(func: Callable) -> Callable:
        func.alphapulse_lookback = lookback
        if names is not None:
            func.alphapulse_names = tuple(names)
        return func

    return mark


@dataclass(frozen=True)
class UserFeature:
    path: str  # as configured, "module:function" or "module.function"
    func: Callable[[pd.DataFrame], Any]
    lookback: int
    names: tuple[str, ...]


def _import(path: str, setting: str) -> Any:
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise FeatureError(
            f"{setting}: {path!r} is not a dotted path (use 'package.module:name')", where=f"{setting} ({path})"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - an import error of any kind is the user's to see, named
        raise FeatureError(
            f"{setting}: cannot import module {module_name!r} of {path!r}: {type(exc).__name__}: {exc}",
            where=f"{setting} ({path})",
        ) from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise FeatureError(
                f"{setting}: module {module_name!r} has no {attr!r} (from {path!r})", where=f"{setting} ({path})"
            )
        obj = getattr(obj, part)
    return obj


def import_object(path: str, setting: str) -> Any:
    """The object named by ``path`` ('package.module:name' or 'package.module.name'); errors name ``setting``."""
    return _import(path, setting)


def load_user_features(paths: Sequence[str], setting: str = EXTRA_SETTING) -> tuple[UserFeature, ...]:
    """Import and check every configured feature function (see the module docstring)."""
    loaded: list[UserFeature] = []
    taken = {name: "built-in" for name in FEATURE_LOOKBACK}
    for path in paths:
        where = f"{setting} ({path})"
        func = _import(path, setting)
        if not callable(func):
            raise FeatureError(f"{setting}: {path!r} is a {type(func).__name__}, not a function", where=where)
        lookback = getattr(func, "alphapulse_lookback", None)
        if lookback is None:
            raise FeatureError(
                f"{setting}: {path!r} declares no look-back: decorate it with "
                "@alphapulse_assets.features.feature(lookback=N) (N = bars before t it reads)",
                where=where,
            )
        if isinstance(lookback, bool) or not isinstance(lookback, (int, np.integer)):
            raise FeatureError(f"{setting}: {path!r} look-back {lookback!r} is not an integer", where=where)
        if not 0 <= lookback <= MAX_DECLARED_LOOKBACK:
            raise FeatureError(
                f"{setting}: {path!r} look-back {lookback} is outside 0..{MAX_DECLARED_LOOKBACK} bars", where=where
            )
        names = tuple(getattr(func, "alphapulse_names", None) or (getattr(func, "__name__", path),))
        for name in names:
            if not isinstance(name, str) or not name.isidentifier():
                raise FeatureError(f"{setting}: {path!r} feature name {name!r} is not an identifier", where=where)
            if name in taken:
                raise FeatureError(
                    f"{setting}: {path!r} feature name {name!r} is already used by {taken[name]}", where=where
                )
            taken[name] = path
        loaded.append(UserFeature(path, func, int(lookback), names))
    return tuple(loaded)


def _columns(result: Any, uf: UserFeature, n: int) -> dict[str, np.ndarray]:
    where = f"feature {uf.path}"
    if isinstance(result, pd.DataFrame):
        if tuple(result.columns) != uf.names:
            raise FeatureError(
                f"{uf.path} returned columns {list(result.columns)}, declared {list(uf.names)}", where=where
            )
        arrays = {name: np.asarray(result[name], dtype="float64") for name in uf.names}
    else:
        if len(uf.names) != 1:
            raise FeatureError(f"{uf.path} returned one column, declared {list(uf.names)}", where=where)
        try:
            arrays = {uf.names[0]: np.asarray(result, dtype="float64").reshape(-1)}
        except (TypeError, ValueError) as exc:
            raise FeatureError(f"{uf.path} returned {type(result).__name__}, not numbers: {exc}", where=where) from exc
    for name, values in arrays.items():
        if len(values) != n:
            raise FeatureError(f"{uf.path} returned {len(values)} values for {n} bars ({name})", where=where)
    return arrays


@dataclass(frozen=True)
class FeatureSet:
    """The built-in features plus the user's: their names, look-backs, and how to build them."""

    user: tuple[UserFeature, ...] = field(default=())

    @property
    def lookback(self) -> dict[str, int]:
        return {**FEATURE_LOOKBACK, **{n: uf.lookback for uf in self.user for n in uf.names}}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.lookback)

    @property
    def max_lookback(self) -> int:
        return max(self.lookback.values())

    def build(self, candles: pd.DataFrame) -> pd.DataFrame:
        """One float64 column per feature (``names`` order), indexed like ``candles`` (see ``build_features``)."""
        out = build_features(candles)
        if not self.user:
            return out
        extra = {n: np.full(len(candles), np.nan) for uf in self.user for n in uf.names}
        for sl in symbol_slices(candles):
            bars = candles.iloc[sl][list(CANDLE_COLUMNS)].reset_index(drop=True)
            for uf in self.user:
                for name, values in _columns(uf.func(bars.copy()), uf, len(bars)).items():
                    extra[name][sl] = values
        out = pd.concat([out, pd.DataFrame(extra, index=candles.index)], axis=1)
        return out.replace([np.inf, -np.inf], np.nan)


BUILT_IN = FeatureSet()


@lru_cache(maxsize=8)
def configured_feature_set(paths: tuple[str, ...]) -> FeatureSet:
    """The built-in features plus those at ``paths`` (``ALPHAPULSE_FEATURES__EXTRA``), imported and checked once."""
    return FeatureSet(load_user_features(paths))
