"""The promotion gate: the rules a challenger must pass to replace the champion.

A champion's performance after promotion is judged, and rolled back, by live scoring (``live_scoring.py``).

The rules are reported together in one asset check, ``promotion_gate``, on the challenger's model asset:

- ``enough_validation_samples``: at least ``min_validation_samples`` out-of-sample rows;
- ``beats_baselines``: lower out-of-sample log loss than every calibrated naive baseline (base rate, and
  persistence of the last direction with its conditional rate), by a margin a paired moving-block bootstrap
  finds significant at ``alpha``. We use the bootstrap rather than Diebold-Mariano because it makes no
  normality assumption on the loss differential, and losses of overlapping labels are strongly
  autocorrelated, which the block resampling keeps; Diebold-Mariano with Newey-West variance is available
  in ``significance.py`` as a cross-check;
- ``not_worse_than_champion``: on the newest rows that neither model trained on, the challenger's log loss
  is at most the champion's times (1 + tolerance). The first model for a symbol has no champion;
- ``feature_drift``: the PSI and KS of the features that are stationary by construction (returns and volume
  as z-scores of their own recent history) between the training window and its newest quarter stay below
  their thresholds. Features that follow the market's regime (volatility levels, RSI, %B, momentum and
  autocorrelation measures) are left out of the gate on purpose: they move whenever the regime changes,
  which is when a freshly trained model is most needed, so gating on them would keep a stale champion.
  They are still monitored (the daily drift assets), and their drift requests a retrain. When the
  stationary features move, the inputs themselves have changed (a broken feed, another instrument's
  data), which is what this rule exists to catch.

And one rule that holds rather than rejects, the implausibility guard:

- ``plausible``: the challenger does not look too good for its market: its out-of-sample AUC is at most
  ``max_auc``, no baseline's AUC exceeds ``max_baseline_auc`` (a naive forecast that scores that well means the
  label or the data leak), and its log-loss edge over the best calibrated baseline is at most
  ``max_log_loss_edge``. Real returns are nearly unpredictable; a model far above that is what a leak (a
  feature that reads the future) looks like. A challenger that passes every other rule but fails this one
  is HELD for review: not promoted, not rejected; an operator approves it (``alphapulse models approve``)
  or leaves it. The defaults are well above what the bundled sample market gives (README, "Implausibility
  guard").

This module does not import Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alphapulse_assets.training.evaluation import classification_metrics, per_sample_log_loss
from alphapulse_assets.training.significance import SignificanceResult


@dataclass(frozen=True)
class GateConfig:
    min_validation_samples: int = 1000
    alpha: float = 0.05
    champion_tolerance: float = 0.01
    min_champion_overlap: int = 50
    psi_threshold: float = 0.25
    ks_threshold: float = 0.15
    max_auc: float = 0.80
    max_baseline_auc: float = 0.75
    max_log_loss_edge: float = 0.15


@dataclass
class RuleResult:
    rule: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # A failure of this rule holds the challenger for review instead of rejecting it.
    holds: bool = False


@dataclass
class GateResult:
    rules: list[RuleResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)

    @property
    def held(self) -> bool:
        """Every failed rule only holds: the challenger waits for an operator's review (not promoted)."""
        failed = [r for r in self.rules if not r.passed]
        return bool(failed) and all(r.holds for r in failed)

    @property
    def verdict(self) -> str:
        return "passed" if self.passed else "held" if self.held else "rejected"

    @property
    def reason(self) -> str:
        failed = [f"{r.rule}: {r.description}" for r in self.rules if not r.passed]
        return "; ".join(failed) if failed else "passed every rule"


@dataclass
class ChampionComparison:
    champion_version: int
    n: int
    challenger_log_loss: float
    champion_log_loss: float
    champion_metrics: dict[str, Any]
    # Set when the champion cannot score these rows at all (trained with features no longer configured).
    incomparable: str | None = None


DRIFT_GATE_FEATURES = ("ret_z_1", "volume_z")

GATE_RULES = ("enough_validation_samples", "beats_baselines", "not_worse_than_champion", "feature_drift", "plausible")
# Baselines whose log loss is a fair yardstick (the hard persistence forecast's is unbounded).
CALIBRATED_BASELINES = ("base_rate", "persistence_calibrated")
# The Dagster check (one per challenger) that reports the rules above and blocks promotion when any fails.
GATE_CHECK = "promotion_gate"


def compare_with_champion(
    oos_y: np.ndarray, challenger_proba: np.ndarray, champion_proba: np.ndarray, champion_version: int
) -> ChampionComparison:
    """Both models' log loss on the same rows (rows neither has trained on)."""
    return ChampionComparison(
        champion_version=champion_version,
        n=len(oos_y),
        challenger_log_loss=float(per_sample_log_loss(oos_y, challenger_proba).mean()) if len(oos_y) else float("nan"),
        champion_log_loss=float(per_sample_log_loss(oos_y, champion_proba).mean()) if len(oos_y) else float("nan"),
        champion_metrics=classification_metrics(oos_y, champion_proba) if len(oos_y) else {},
    )


def report_figures(report: Any) -> dict[str, Any]:
    """The figures of an ``evaluation.EvaluationReport`` that ``evaluate_gate`` reads, as its keyword arguments."""
    return {
        "model_log_loss": float(report.model["log_loss"]),
        "baseline_log_loss": {k: float(v["log_loss"]) for k, v in report.baselines.items()},
        "model_auc": report.model.get("auc"),
        "baseline_auc": {k: v.get("auc") for k, v in report.baselines.items()},
    }


def evaluate_gate(
    *,
    n_validation: int,
    model_log_loss: float,
    baseline_log_loss: dict[str, float],
    significance: dict[str, SignificanceResult],
    champion: ChampionComparison | None,
    drift: Any | None,
    cfg: GateConfig,
    model_auc: float | None = None,
    baseline_auc: dict[str, float] | None = None,
) -> GateResult:
    rules = []
    rules.append(
        RuleResult(
            "enough_validation_samples",
            n_validation >= cfg.min_validation_samples,
            f"{n_validation} out-of-sample rows (need {cfg.min_validation_samples})",
            {"n_validation": n_validation, "required": cfg.min_validation_samples},
        )
    )

    beaten, lost = [], []
    meta: dict[str, Any] = {"model_log_loss": model_log_loss}
    for name, sig in significance.items():
        meta[f"{name}_log_loss"] = baseline_log_loss.get(name, float("nan"))
        meta[f"{name}_mean_diff"] = sig.mean_diff
        meta[f"{name}_p_value"] = sig.p_value
        (beaten if sig.significant(cfg.alpha) else lost).append(
            f"{name} (diff {sig.mean_diff:+.4f}, p={sig.p_value:.3f})"
        )
    rules.append(
        RuleResult(
            "beats_baselines",
            not lost and bool(beaten),
            f"significantly better than {', '.join(beaten)}"
            if not lost
            else f"not significantly better (alpha {cfg.alpha}) than {', '.join(lost)}",
            meta,
        )
    )

    if champion is not None and champion.incomparable:
        rules.append(
            RuleResult(
                "not_worse_than_champion",
                True,
                f"{champion.incomparable}: judged against the baselines only",
                {"champion_version": champion.champion_version},
            )
        )
    elif champion is None:
        rules.append(
            RuleResult(
                "not_worse_than_champion",
                True,
                "first model for this symbol: no champion to beat",
                {"champion_version": -1},
            )
        )
    elif champion.n < cfg.min_champion_overlap:
        rules.append(
            RuleResult(
                "not_worse_than_champion",
                False,
                f"only {champion.n} rows unseen by both v{champion.champion_version} and the challenger "
                f"(need {cfg.min_champion_overlap}): cannot compare fairly",
                {"champion_version": champion.champion_version, "overlap": champion.n},
            )
        )
    else:
        limit = champion.champion_log_loss * (1 + cfg.champion_tolerance)
        ok = champion.challenger_log_loss <= limit
        rules.append(
            RuleResult(
                "not_worse_than_champion",
                ok,
                f"log loss {champion.challenger_log_loss:.4f} vs champion v{champion.champion_version} "
                f"{champion.champion_log_loss:.4f} on {champion.n} new rows (limit {limit:.4f})",
                {
                    "champion_version": champion.champion_version,
                    "overlap": champion.n,
                    "challenger_log_loss": champion.challenger_log_loss,
                    "champion_log_loss": champion.champion_log_loss,
                },
            )
        )

    if drift is None:
        rules.append(RuleResult("feature_drift", True, "no drift reference (too few recent rows)", {}))
    else:
        drifted = list(getattr(drift, "drifted", []))
        rules.append(
            RuleResult(
                "feature_drift",
                not drifted,
                f"max PSI {drift.max_psi:.3f}, max KS {drift.max_ks:.3f}"
                + (f"; drifted: {', '.join(drifted)}" if drifted else ""),
                {"max_psi": drift.max_psi, "max_ks": drift.max_ks, "drifted": ", ".join(drifted)},
            )
        )
    rules.append(plausibility(model_log_loss, baseline_log_loss, model_auc, baseline_auc or {}, cfg))
    return GateResult(rules)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def plausibility(
    model_log_loss: float,
    baseline_log_loss: dict[str, float],
    model_auc: float | None,
    baseline_auc: dict[str, float],
    cfg: GateConfig,
) -> RuleResult:
    """The implausibility guard (see the module docstring): too good for its market is held for review."""
    problems = []
    meta: dict[str, Any] = {
        "max_auc": cfg.max_auc,
        "max_baseline_auc": cfg.max_baseline_auc,
        "max_log_loss_edge": cfg.max_log_loss_edge,
    }
    if _finite(model_auc):
        meta["model_auc"] = float(model_auc)
        if model_auc > cfg.max_auc:
            problems.append(f"direction AUC {model_auc:.3f} is above {cfg.max_auc:.3f}")
    for name, auc in sorted(baseline_auc.items()):
        if _finite(auc):
            meta[f"{name}_auc"] = float(auc)
            if auc > cfg.max_baseline_auc:
                problems.append(f"baseline {name} scores AUC {auc:.3f} (above {cfg.max_baseline_auc:.3f})")
    fair = {k: v for k, v in baseline_log_loss.items() if k in CALIBRATED_BASELINES and _finite(v)}
    if fair and _finite(model_log_loss):
        best = min(fair, key=fair.get)
        edge = fair[best] - model_log_loss
        meta["log_loss_edge"] = edge
        if edge > cfg.max_log_loss_edge:
            problems.append(f"log-loss edge {edge:.4f} over {best} is above {cfg.max_log_loss_edge:.4f}")
    if problems:
        description = "too good for its market, held for review (a leak looks like this): " + "; ".join(problems)
    else:
        description = "within what its market allows"
    return RuleResult("plausible", not problems, description, meta, holds=True)
