"""Out-of-sample metrics of a probabilistic classifier, side by side with naive baselines.

Everything takes plain arrays (``y_true`` in {0, 1}, ``proba`` = predicted P(y = 1)), so it serves the
Dagster assets, a plain benchmark loop and the tests alike. Metrics that are undefined on the given data
(AUC with one class, precision with no predicted positive) are NaN and explained in ``note`` instead of
raising: a degenerate validation window must produce a report that says so, and a NaN never passes a
promotion threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alphapulse_assets.recovery.errors import DataValidationError

PROBA_EPS = 1e-15  # clip before log, as scikit-learn does for float64


def _arrays(y_true: Any, proba: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype="float64").ravel()
    p = np.asarray(proba, dtype="float64").ravel()
    if y.shape != p.shape:
        raise DataValidationError(f"y_true has {len(y)} values but proba has {len(p)}", where=where)
    if np.isnan(y).any() or np.isnan(p).any():
        raise DataValidationError("NaN in labels or probabilities: drop unlabelled rows first", where=where)
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataValidationError(
            f"labels must be 0 or 1, found {sorted(set(np.unique(y)) - {0.0, 1.0})[:5]}", where=where
        )
    if (p < 0).any() or (p > 1).any():
        raise DataValidationError("probabilities must lie in [0, 1]", where=where)
    return y, p


def per_sample_log_loss(y_true: Any, proba: Any) -> np.ndarray:
    """-log P(observed class), per sample (probabilities clipped to [1e-15, 1 - 1e-15])."""
    y, p = _arrays(y_true, proba, "per_sample_log_loss")
    p = np.clip(p, PROBA_EPS, 1 - PROBA_EPS)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def per_sample_brier(y_true: Any, proba: Any) -> np.ndarray:
    """(proba - y)^2, per sample."""
    y, p = _arrays(y_true, proba, "per_sample_brier")
    return (p - y) ** 2


PER_SAMPLE_LOSSES = {"log_loss": per_sample_log_loss, "brier": per_sample_brier}


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count one half)."""
    # Imported on first use: scipy.stats is 0.57 s of every definitions load (bench/README.md, "Import time"),
    # and only training steps score a model; they import it with scikit-learn anyway.
    from scipy.stats import rankdata

    n_pos = y.sum()
    n_neg = len(y) - n_pos
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(y_true: Any, proba: Any, threshold: float = 0.5) -> dict[str, float | str]:
    """accuracy, precision, recall, f1 (of ``proba >= threshold``), log_loss, brier, auc, n, positive_rate.

    Undefined values are NaN, with the reason in ``note`` (empty string when all are defined). The figures
    equal scikit-learn's (the tests compare them with ``sklearn.metrics``), computed here because this runs
    for the model and every baseline of every symbol in every run: one pass over two arrays takes 0.4 ms on
    2,000 rows, the same seven ``sklearn.metrics`` calls 21 ms (their input validation), measured side by
    side in one process on this project's 2-core machine (2026-12-01).
    """
    y, p = _arrays(y_true, proba, "classification_metrics")
    notes: list[str] = []
    n = len(y)
    if n == 0:
        nan = float("nan")
        return {
            k: nan for k in ("accuracy", "precision", "recall", "f1", "log_loss", "brier", "auc", "positive_rate")
        } | {
            "n": 0,
            "note": "no samples",
        }
    pred = p >= threshold
    truth = y == 1
    tp = float(np.sum(pred & truth))
    fp = float(np.sum(pred & ~truth))
    fn = float(np.sum(~pred & truth))
    precision = tp / (tp + fp) if tp + fp > 0 else float("nan")
    if tp + fp == 0:
        notes.append("precision undefined: no predicted positive")
    recall = tp / (tp + fn) if tp + fn > 0 else float("nan")
    if tp + fn == 0:
        notes.append("recall undefined: no positive label")
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) > 0 else float("nan")
    if 2 * tp + fp + fn == 0:
        notes.append("f1 undefined: no positive label or prediction")
    n_pos = int(truth.sum())
    if 0 < n_pos < n:
        auc = _auc(y, p)
    else:
        auc = float("nan")
        notes.append(f"auc undefined: only class {int(y[0])} present")
    return {
        "accuracy": float(np.mean(pred == truth)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "log_loss": float(per_sample_log_loss(y, p).mean()),
        "brier": float(per_sample_brier(y, p).mean()),
        "auc": auc,
        "n": n,
        "positive_rate": n_pos / n,
        "note": "; ".join(notes),
    }


def strategy_returns(
    proba: Any,
    forward_returns: Any,
    threshold: float = 0.5,
    fee_bps: float = 10.0,
    *,
    groups: Any = None,
) -> np.ndarray:
    """Per-bar net returns of a long/flat strategy: long for the next bar when ``proba >= threshold``.

    ``forward_returns[t]`` is the simple return of holding from bar t to t+1. A fee of ``fee_bps`` basis
    points of notional is charged whenever the position changes (entering or leaving), including the
    entry at the first bar. ``groups`` (e.g. the symbol per row) starts each group flat, so stacked
    symbols do not inherit each other's positions.
    """
    p = np.asarray(proba, dtype="float64").ravel()
    r = np.asarray(forward_returns, dtype="float64").ravel()
    if p.shape != r.shape:
        raise DataValidationError(
            f"proba has {len(p)} values but forward_returns has {len(r)}", where="strategy_returns"
        )
    position = (p >= threshold).astype(float)
    previous = np.r_[0.0, position[:-1]]
    if groups is not None and len(p):
        g = np.asarray(groups)
        previous[np.r_[True, g[1:] != g[:-1]]] = 0.0
    fees = np.abs(position - previous) * fee_bps / 1e4
    return position * np.nan_to_num(r) - fees


def sharpe(returns: Any, periods_per_year: float) -> float:
    """Annualised Sharpe ratio (risk-free rate 0) of per-period returns; NaN if they do not vary."""
    r = np.asarray(returns, dtype="float64").ravel()
    r = r[~np.isnan(r)]
    if len(r) < 2:
        return float("nan")
    sd = r.std(ddof=1)
    if not sd > 1e-15:
        return float("nan")
    return float(r.mean() / sd * np.sqrt(periods_per_year))


def naive_baselines(
    y_train: Any,
    y_test: Any,
    last_direction: Any,
    *,
    last_direction_train: Any = None,
) -> dict[str, np.ndarray]:
    """Predictions of naive models for the test rows, as P(y = 1) arrays of ``len(y_test)``.

    - ``base_rate``: the training positive rate for every row (the best constant forecast).
    - ``persistence``: the last observed direction (``last_direction``, 0/1 per test row, known at t)
      as a hard forecast: fine for accuracy/F1, punished by log loss for its confident misses.
    - ``persistence_calibrated`` (when ``last_direction_train`` is given): P(y = 1 | last direction)
      estimated on the training rows, so it competes fairly on log loss and Brier.

    ``y_test`` is used only for its length: a baseline never sees test labels.
    """
    y_tr = np.asarray(y_train, dtype="float64").ravel()
    n_test = len(np.asarray(y_test).ravel())
    d = np.asarray(last_direction, dtype="float64").ravel()
    if len(d) != n_test:
        raise DataValidationError(f"last_direction has {len(d)} values for {n_test} test rows", where="naive_baselines")
    if len(y_tr) == 0:
        raise DataValidationError("no training labels to estimate a base rate from", where="naive_baselines")
    base = float(np.nanmean(y_tr))
    out = {
        "base_rate": np.full(n_test, base),
        "persistence": np.where(np.isnan(d), base, (d > 0).astype(float)),
    }
    if last_direction_train is not None:
        d_tr = np.asarray(last_direction_train, dtype="float64").ravel()
        if len(d_tr) != len(y_tr):
            raise DataValidationError(
                f"last_direction_train has {len(d_tr)} values for {len(y_tr)} training rows", where="naive_baselines"
            )
        ok = ~np.isnan(d_tr) & ~np.isnan(y_tr)
        # Laplace-smoothed conditional rates: never exactly 0 or 1.
        rate = {v: (y_tr[ok & (d_tr == v)].sum() + 1) / ((ok & (d_tr == v)).sum() + 2) for v in (0.0, 1.0)}
        out["persistence_calibrated"] = np.where(np.isnan(d), base, np.where(d > 0, rate[1.0], rate[0.0]))
    return out


@dataclass
class EvaluationReport:
    """Model and baseline metrics on the same out-of-sample rows."""

    model: dict[str, float | str]
    baselines: dict[str, dict[str, float | str]]
    n: int
    threshold: float
    fee_bps: float
    notes: list[str] = field(default_factory=list)
    slippage_bps: float = 0.0
    periods_per_year: float | None = None

    def edge(self, baseline: str, metric: str = "log_loss") -> float:
        """Baseline loss minus model loss (positive = model better) for a lower-is-better metric."""
        return float(self.baselines[baseline][metric]) - float(self.model[metric])

    def to_dict(self) -> dict[str, float | int | str]:
        """Flat ``{"model/f1": ..., "base_rate/log_loss": ..., "edge/base_rate/log_loss": ...}``."""
        flat: dict[str, float | int | str] = {
            "n": self.n,
            "threshold": self.threshold,
            "fee_bps": self.fee_bps,
            "slippage_bps": self.slippage_bps,
        }
        for key, value in self.model.items():
            flat[f"model/{key}"] = value
        for name, metrics in self.baselines.items():
            for key, value in metrics.items():
                flat[f"{name}/{key}"] = value
            for metric in ("log_loss", "brier"):
                flat[f"edge/{name}/{metric}"] = self.edge(name, metric)
        flat["notes"] = "; ".join(self.notes)
        return flat


def _all_metrics(
    y: np.ndarray,
    p: np.ndarray,
    fwd: np.ndarray,
    threshold: float,
    fee_bps: float,
    periods_per_year: float,
    groups: Any,
) -> dict[str, float | str]:
    metrics = classification_metrics(y, p, threshold)
    net = strategy_returns(p, fwd, threshold, fee_bps, groups=groups)
    position = (p >= threshold).astype(float)
    metrics["sharpe"] = sharpe(net, periods_per_year)
    metrics["mean_return"] = float(net.mean()) if len(net) else float("nan")
    metrics["total_return"] = float(np.prod(1 + net) - 1) if len(net) else float("nan")
    metrics["exposure"] = float(position.mean()) if len(net) else float("nan")
    return metrics


def evaluate(
    y_true: Any,
    proba: Any,
    forward_returns: Any,
    baselines: Mapping[str, Any],
    periods_per_year: float,
    *,
    threshold: float = 0.5,
    fee_bps: float = 10.0,
    slippage_bps: float = 0.0,
    groups: Any = None,
) -> EvaluationReport:
    """Classification and long/flat strategy metrics for the model and every baseline, on the same rows.

    The strategy pays ``fee_bps + slippage_bps`` of notional per position change; its Sharpe ratio is
    annualised with ``periods_per_year`` (``market_data.calendars.bars_per_year`` of the bar size and market)."""
    y, p = _arrays(y_true, proba, "evaluate")
    fwd = np.asarray(forward_returns, dtype="float64").ravel()
    if len(fwd) != len(y):
        raise DataValidationError(f"forward_returns has {len(fwd)} values for {len(y)} rows", where="evaluate")
    notes = []
    if np.isnan(fwd).any():
        notes.append(f"{int(np.isnan(fwd).sum())} missing forward return(s) counted as 0")
    cost_bps = fee_bps + slippage_bps
    model = _all_metrics(y, p, fwd, threshold, cost_bps, periods_per_year, groups)
    base = {}
    for name, bp in baselines.items():
        yb, pb = _arrays(y, bp, f"evaluate (baseline {name})")
        base[name] = _all_metrics(yb, pb, fwd, threshold, cost_bps, periods_per_year, groups)
    return EvaluationReport(
        model=model,
        baselines=base,
        n=len(y),
        threshold=threshold,
        fee_bps=fee_bps,
        notes=notes,
        slippage_bps=slippage_bps,
        periods_per_year=float(periods_per_year),
    )
