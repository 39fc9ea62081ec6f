"""Is the model's out-of-sample loss really lower than the baseline's? Two paired tests.

Both work on the per-sample loss differential d_t = loss_model_t - loss_baseline_t (negative = model
better) and test H0: E[d] >= 0 against H1: E[d] < 0 (one-sided: promotion only cares about "better").

- ``paired_bootstrap``: moving-block bootstrap of the mean of d. Blocks of ``block`` consecutive
  samples keep the autocorrelation inside a block, which the i.i.d. bootstrap would destroy.
- ``diebold_mariano``: the classic DM statistic with a Newey-West (Bartlett) long-run variance, the
  Harvey-Leybourne-Newbold small-sample correction and a Student-t reference.

Which one the promotion gate should use: ``paired_bootstrap`` with a block of at least one day of bars
(and at least the label horizon). Loss differentials on market data are autocorrelated far beyond the
label horizon: volatility clusters and regimes last days, and stacked symbols share them. DM as usually
applied takes ``horizon - 1`` lags, i.e. none for a one-bar label, and then understates the variance and
promotes too often; the bootstrap's block sets the dependence length it respects directly, makes no
normality assumption about the heavy-tailed log-loss differential, and returns a confidence interval of
the edge that an operator can read. DM stays as a fast cross-check (pass ``lags`` as large as the block
to make it comparable).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from alphapulse_assets.recovery.errors import DataValidationError, PermanentError


@dataclass(frozen=True)
class SignificanceResult:
    """mean_diff = mean(loss_model - loss_baseline); CI of that mean; one-sided p-value of "model better"."""

    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    method: str
    statistic: float = float("nan")

    def significant(self, alpha: float = 0.05) -> bool:
        return bool(self.p_value < alpha and self.mean_diff < 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _differential(loss_model: Any, loss_baseline: Any, where: str) -> np.ndarray:
    a = np.asarray(loss_model, dtype="float64").ravel()
    b = np.asarray(loss_baseline, dtype="float64").ravel()
    if a.shape != b.shape:
        raise DataValidationError(f"{len(a)} model losses but {len(b)} baseline losses", where=where)
    d = a - b
    if np.isnan(d).any():
        raise DataValidationError("NaN in the losses", where=where)
    if len(d) < 2:
        raise DataValidationError(f"need at least 2 paired losses, got {len(d)}", where=where)
    return d


def default_block(n: int) -> int:
    """n ** (1/3), the usual rate for a block bootstrap of a mean; callers with known dependence pass more."""
    return max(1, int(round(n ** (1 / 3))))


def paired_bootstrap(
    loss_model: Any,
    loss_baseline: Any,
    n_boot: int = 1000,
    block: int | None = None,
    seed: int = 0,
    *,
    confidence: float = 0.95,
) -> SignificanceResult:
    """Moving-block bootstrap test of mean(loss_model - loss_baseline) < 0.

    Each replicate concatenates ceil(n / block) blocks of ``block`` consecutive differentials starting at
    uniform random positions and takes its mean. CI: percentile interval of the replicate means. p-value:
    share of replicates of the centred mean (mean* - mean) at or below the observed mean, i.e. how often a
    world with no edge would show an edge this large (with the +1 correction, so never 0).
    """
    where = "paired_bootstrap"
    d = _differential(loss_model, loss_baseline, where)
    n = len(d)
    block = default_block(n) if block is None else int(block)
    if not 1 <= block <= n:
        raise PermanentError(f"block must be between 1 and the {n} samples, got {block}", where=where)
    if n_boot < 1:
        raise PermanentError(f"n_boot must be >= 1, got {n_boot}", where=where)
    rng = np.random.default_rng(seed)
    n_blocks = -(-n // block)
    cumsum = np.r_[0.0, np.cumsum(d)]
    starts = rng.integers(0, n - block + 1, size=(n_boot, n_blocks))
    means = (cumsum[starts + block] - cumsum[starts]).sum(axis=1) / (n_blocks * block)
    mean = float(d.mean())
    # Centre on the block-bootstrap expectation (edges are under-sampled) so no-edge data sits at 0.
    expected = float((cumsum[block:] - cumsum[:-block]).mean() / block)
    centred = means - expected
    alpha = 1 - confidence
    lo, hi = np.quantile(means - expected + mean, [alpha / 2, 1 - alpha / 2])
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    p = (1 + np.sum(centred <= mean + tol)) / (1 + n_boot)
    return SignificanceResult(mean, float(lo), float(hi), float(p), n, f"moving-block bootstrap (block={block}, n_boot={n_boot}, seed={seed})")


def newey_west_variance(d: Any, lags: int) -> float:
    """Long-run variance of a series (Bartlett weights 1 - k/(lags+1)); never negative."""
    x = np.asarray(d, dtype="float64") - np.mean(d)
    n = len(x)
    var = float(x @ x / n)
    for k in range(1, min(lags, n - 1) + 1):
        var += 2 * (1 - k / (lags + 1)) * float(x[k:] @ x[:-k] / n)
    return max(var, 0.0)


def diebold_mariano(
    loss_a: Any,
    loss_b: Any,
    horizon: int = 1,
    *,
    lags: int | None = None,
    confidence: float = 0.95,
) -> SignificanceResult:
    """Diebold-Mariano test of mean(loss_a - loss_b) < 0 with a Newey-West variance.

    ``lags`` defaults to ``horizon - 1`` (the textbook choice for h-step forecasts, which assumes no
    dependence beyond the forecast overlap); pass more when the losses are otherwise autocorrelated.
    """
    where = "diebold_mariano"
    d = _differential(loss_a, loss_b, where)
    if horizon < 1:
        raise PermanentError(f"horizon must be >= 1, got {horizon}", where=where)
    n = len(d)
    lags = horizon - 1 if lags is None else int(lags)
    mean = float(d.mean())
    var = newey_west_variance(d, lags)
    se = np.sqrt(var / n)
    crit = stats.t.ppf(1 - (1 - confidence) / 2, df=n - 1)
    if se == 0:
        # Identical losses (or a constant shift): no sampling variability to test against.
        p = 1.0 if mean >= 0 else 0.0
        return SignificanceResult(mean, mean, mean, p, n, f"diebold-mariano (lags={lags})", float("nan"))
    statistic = mean / se
    # Harvey, Leybourne and Newbold (1997) correction for small samples and h-step overlap.
    correction = np.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    statistic *= correction
    p = float(stats.t.cdf(statistic, df=n - 1))
    return SignificanceResult(
        mean, mean - crit * se, mean + crit * se, p, n, f"diebold-mariano (lags={lags}, horizon={horizon})", float(statistic)
    )
