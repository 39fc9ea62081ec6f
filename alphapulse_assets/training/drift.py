"""Feature drift against a training reference compact enough to live in the model registry's ``info``.

A model's training window is summarised per feature by ``n_quantiles`` evenly spaced quantiles (101 floats
by default, so a few kilobytes of JSON for a typical feature set). Recent feature values are then compared
with that summary, never with the training rows themselves:

- ``psi``: Population Stability Index over ``bins`` bins whose edges are reference quantiles (deciles by
  default). With ``p_i`` the reference share and ``r_i`` the recent share of bin ``i``::

      PSI = sum_i (r_i - p_i) * ln(r_i / p_i),   p_i, r_i floored at EPSILON = 1e-4

  The floor keeps an empty bin finite (an empty bin then contributes a large but bounded term).
  Rule of thumb (and the platform default): < 0.1 stable, 0.1-0.25 moderate, > 0.25 drifted.

- ``ks_statistic``: the two-sample Kolmogorov-Smirnov statistic ``sup_x |F(x) - G(x)|`` where ``G`` is the
  exact empirical CDF of the recent values and ``F`` approximates the reference sample's empirical CDF by
  the piecewise-linear curve through the points ``(q_k, k / (m - 1))``, ``m = n_quantiles``.

  Error bound: for a reference sample of ``N`` values without ties and quantiles computed by
  ``reference_profile`` (NumPy's linear method), ``|F(x) - F_N(x)| <= 1/(m - 1) + 2/N`` for every ``x``
  (between two knots both CDFs rise by one quantile step, ``1/(m - 1)``, and at each knot ``F_N`` is
  within ``2/N`` of the knot's probability; outside the reference range both are 0 or 1). By the
  triangle inequality the statistic is within the same bound of the exact two-sample statistic
  (``scipy.stats.ks_2samp``): about 0.01 with the default 101 quantiles and a long training window.
  Ties in the reference (a discrete feature) become jumps of ``F`` at the tied value.

Defined values and errors:

- A constant reference feature is a point mass: ``F`` jumps from 0 to 1 at the constant. PSI then uses
  two bins (``<= c`` and ``> c``) and KS is the share of recent values away from ``c``; both are 0 when
  the recent values equal the constant too. Nothing is divided by a zero spread. As in standard PSI the
  outer bins are open, so recent values below a constant share its bin and only KS sees them.
- NaN and infinite values are dropped, in the reference and in recent data alike.
- No recent values (empty, or all NaN) is an error (``DataValidationError``), not a pass: drift that
  cannot be measured must not read as "no drift". So is a reference column with no finite values, or a
  feature of the profile missing from the recent data.

This module does not import Dagster.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from alphapulse_assets.recovery.errors import DataValidationError, PermanentError

EPSILON = 1e-4
DEFAULT_N_QUANTILES = 101
WHERE = "drift"

Profile = dict[str, list[float]]


# -- reference ---------------------------------------------------------------------------------------------
def _finite(values: Any, *, what: str) -> np.ndarray:
    try:
        arr = pd.to_numeric(pd.Series(np.asarray(values).ravel()), errors="raise").to_numpy(
            dtype=float, na_value=np.nan
        )
    except (ValueError, TypeError) as exc:
        raise DataValidationError(f"{what} is not numeric: {exc}", where=WHERE) from exc
    return arr[np.isfinite(arr)]


def reference_profile(features: pd.DataFrame, n_quantiles: int = DEFAULT_N_QUANTILES) -> Profile:
    """Per feature, ``n_quantiles`` evenly spaced quantiles (min to max) of the training window, NaN dropped.

    The result is plain JSON (``{name: [float, ...]}``), to be stored in the registry's ``info``.
    """
    if n_quantiles < 2:
        raise PermanentError(f"n_quantiles must be at least 2, got {n_quantiles}", where=WHERE)
    if features.shape[1] == 0:
        raise DataValidationError("cannot profile a frame with no feature columns", where=WHERE)
    probs = np.linspace(0.0, 1.0, n_quantiles)
    profile: Profile = {}
    for name in features.columns:
        values = _finite(features[name].to_numpy(), what=f"training feature {name!r}")
        if values.size == 0:
            raise DataValidationError(f"training feature {name!r} has no finite values to profile", where=WHERE)
        profile[str(name)] = [float(q) for q in np.quantile(values, probs)]
    return profile


class _ReferenceCDF:
    """The piecewise-linear CDF through the quantile knots, right-continuous, with jumps at tied knots."""

    def __init__(self, quantiles: Sequence[float]):
        q = np.asarray(quantiles, dtype=float)
        if q.ndim != 1 or q.size < 2:
            raise DataValidationError("a reference profile needs at least 2 quantiles per feature", where=WHERE)
        if not np.all(np.isfinite(q)) or np.any(np.diff(q) < 0):
            raise DataValidationError("reference quantiles must be finite and non-decreasing", where=WHERE)
        probs = np.linspace(0.0, 1.0, q.size)
        self.quantiles, self.probs = q, probs
        self.values, first = np.unique(q, return_index=True)
        last = np.r_[first[1:] - 1, q.size - 1]
        self.p_lo = probs[first]  # F just below a knot value (its left limit)
        self.p_hi = probs[last]  # F at a knot value (includes the jump of tied knots)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """F(x) = P(X <= x)."""
        x = np.asarray(x, dtype=float)
        v = self.values
        j = np.searchsorted(v, x, side="right") - 1  # the largest knot value <= x
        out = np.zeros_like(x)
        above = j >= v.size - 1
        out[above] = 1.0
        inside = (j >= 0) & ~above
        ji = j[inside]
        frac = (x[inside] - v[ji]) / (v[ji + 1] - v[ji])
        out[inside] = self.p_hi[ji] + frac * (self.p_lo[ji + 1] - self.p_hi[ji])
        return out

    def left_limit(self, x: np.ndarray) -> np.ndarray:
        """F(x-) = P(X < x): differs from F(x) only at knot values, where F jumps."""
        x = np.asarray(x, dtype=float)
        out = self(x)
        k = np.searchsorted(self.values, x, side="left")
        on_knot = (k < self.values.size) & (self.values[np.minimum(k, self.values.size - 1)] == x)
        out[on_knot] = self.p_lo[k[on_knot]]
        return out

    def inverse(self, p: np.ndarray) -> np.ndarray:
        return np.interp(p, self.probs, self.quantiles)


def _recent(values: Any, what: str = "recent values") -> np.ndarray:
    arr = _finite(values, what=what)
    if arr.size == 0:
        raise DataValidationError(f"{what}: no finite values to compare with the reference", where=WHERE)
    return arr


# -- statistics --------------------------------------------------------------------------------------------
def psi(profile_quantiles: Sequence[float], recent_values: Any, bins: int = 10) -> float:
    """Population Stability Index of ``recent_values`` against reference quantile bins (see module doc).

    Bin edges are the reference quantiles at ``1/bins, 2/bins, ...`` (deciles by default), so each bin holds
    ``1/bins`` of the reference; tied edges (discrete or constant features) are merged and the reference
    share of each merged bin is taken from the reference CDF, jumps included. Bins are ``(a, b]``.
    """
    if bins < 2:
        raise PermanentError(f"psi needs at least 2 bins, got {bins}", where=WHERE)
    cdf = _ReferenceCDF(profile_quantiles)
    recent = _recent(recent_values)
    inner = np.unique(cdf.inverse(np.arange(1, bins) / bins))
    ref_cum = np.r_[0.0, cdf(inner), 1.0]
    p = np.diff(ref_cum)
    counts = np.bincount(np.searchsorted(inner, recent, side="left"), minlength=inner.size + 1)
    r = counts / recent.size
    p, r = np.maximum(p, EPSILON), np.maximum(r, EPSILON)
    return float(np.sum((r - p) * np.log(r / p)))


def ks_statistic(profile_quantiles: Sequence[float], recent_values: Any) -> float:
    """Two-sample KS statistic approximated from the reference quantiles (see module doc for the bound).

    ``sup_x |F(x) - G(x)|`` is reached at a recent value: between two of them ``G`` is flat and ``F``
    non-decreasing, so only ``F(x_i) - G(x_i)`` and ``F(x_i-) - G(x_i-)`` need checking.
    """
    cdf = _ReferenceCDF(profile_quantiles)
    x = np.sort(_recent(recent_values))
    n = x.size
    g_at = np.searchsorted(x, x, side="right") / n  # G(x_i), ties included
    g_before = np.searchsorted(x, x, side="left") / n  # G(x_i-)
    d = max(np.max(np.abs(cdf(x) - g_at)), np.max(np.abs(cdf.left_limit(x) - g_before)))
    return float(d)


# -- report ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DriftReport:
    """Per-feature PSI and KS of recent data against a training profile, and the verdict.

    ``max_psi``, ``max_ks``, ``drifted`` and ``passed`` are derived from the per-feature values; a feature
    drifts when its PSI or KS is strictly above its threshold.
    """

    psi: dict[str, float]
    ks: dict[str, float]
    psi_threshold: float
    ks_threshold: float
    n_recent: dict[str, int] = field(default_factory=dict)
    max_psi: float = field(init=False)
    max_ks: float = field(init=False)
    drifted: list[str] = field(init=False)
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        if set(self.psi) != set(self.ks):
            raise PermanentError("a drift report needs PSI and KS for the same features", where=WHERE)
        drifted = [f for f in self.psi if self.psi[f] > self.psi_threshold or self.ks[f] > self.ks_threshold]
        object.__setattr__(self, "max_psi", max(self.psi.values(), default=0.0))
        object.__setattr__(self, "max_ks", max(self.ks.values(), default=0.0))
        object.__setattr__(self, "drifted", drifted)
        object.__setattr__(self, "passed", not drifted)

    def to_metadata(self) -> dict[str, float | int | bool | str]:
        """A flat dict of scalars, for Dagster metadata or the registry's ``info``."""
        meta: dict[str, float | int | bool | str] = {
            "drift_passed": self.passed,
            "drift_max_psi": self.max_psi,
            "drift_max_ks": self.max_ks,
            "drift_psi_threshold": self.psi_threshold,
            "drift_ks_threshold": self.ks_threshold,
            "drift_n_features": len(self.psi),
            "drift_n_drifted": len(self.drifted),
            "drift_drifted_features": ",".join(self.drifted),
        }
        for name in self.psi:
            meta[f"drift_psi/{name}"] = self.psi[name]
            meta[f"drift_ks/{name}"] = self.ks[name]
        return meta


def drift_report(
    profile: Mapping[str, Sequence[float]],
    recent_features: pd.DataFrame,
    psi_threshold: float = 0.25,
    ks_threshold: float = 0.15,
) -> DriftReport:
    """PSI and KS of every profiled feature; a feature drifts if PSI > psi_threshold or KS > ks_threshold.

    Columns of ``recent_features`` that are not in the profile are ignored; a profiled feature missing
    from it, or with no finite recent values, is a ``DataValidationError`` naming the feature.
    """
    if not profile:
        raise DataValidationError("the reference profile has no features", where=WHERE)
    if not (math.isfinite(psi_threshold) and math.isfinite(ks_threshold)):
        raise PermanentError("drift thresholds must be finite numbers", where=WHERE)
    missing = [f for f in profile if f not in recent_features.columns]
    if missing:
        raise DataValidationError(f"recent data lacks profiled features {missing}", where=WHERE)
    psis: dict[str, float] = {}
    kss: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name, quantiles in profile.items():
        values = _recent(recent_features[name].to_numpy(), what=f"recent feature {name!r}")
        psis[name] = psi(quantiles, values)
        kss[name] = ks_statistic(quantiles, values)
        counts[name] = int(values.size)
    return DriftReport(psis, kss, float(psi_threshold), float(ks_threshold), counts)


# -- many symbols from one read ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SymbolDrift:
    """One symbol's drift verdict: a ``report``, or the ``note`` saying why there is none (no reference to
    compare with, too few recent rows), which is not a failure."""

    symbol: str
    recent_rows: int
    report: DriftReport | None = None
    note: str = ""


def drift_by_symbol(
    candles: pd.DataFrame,
    profiles: Mapping[str, Mapping[str, Sequence[float]] | None],
    build_features: Callable[[pd.DataFrame], pd.DataFrame],
    recent_start: pd.Timestamp,
    *,
    min_rows: int = 20,
    psi_threshold: float = 0.25,
    ks_threshold: float = 0.15,
) -> dict[str, SymbolDrift]:
    """Drift of every symbol in ``profiles`` from ONE frame of candles holding all of them.

    ``candles`` (columns ``symbol``, ``timestamp``, ...) is split by symbol once, so the cost is one pass over
    the rows whatever the number of symbols (reading the candles once per symbol made a run quadratic in
    symbols). ``build_features`` turns one symbol's candles (warm-up included) into its feature rows, with the
    candles' index; rows from ``recent_start`` on are compared with the symbol's profile. A profile of None
    means no reference (no champion yet); fewer than ``min_rows`` recent rows are too few to judge.
    """
    by_symbol = dict(tuple(candles.groupby("symbol", sort=False))) if len(candles) else {}
    out: dict[str, SymbolDrift] = {}
    for symbol, profile in profiles.items():
        if not profile:
            out[symbol] = SymbolDrift(symbol, 0, note="no reference profile to compare against")
            continue
        rows = by_symbol.get(symbol)
        features = build_features(rows).dropna() if rows is not None and len(rows) else pd.DataFrame()
        if len(features):
            recent = features[(rows.loc[features.index, "timestamp"] >= recent_start).to_numpy()]
        else:
            recent = features
        if len(recent) < min_rows:
            out[symbol] = SymbolDrift(
                symbol, len(recent), note=f"only {len(recent)} recent rows: too few to judge drift"
            )
            continue
        report = drift_report(profile, recent[[f for f in profile if f in recent.columns]], psi_threshold, ks_threshold)
        out[symbol] = SymbolDrift(symbol, len(recent), report)
    return out
