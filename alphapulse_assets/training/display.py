"""How a model and a champion read in the UI: the metadata of their materializations, as plain values.

Dagster plots every numeric metadata entry over time, so only measurements are numbers here (metrics,
rounded to 4 significant digits; sample counts). Identifiers (versions, digests) are text, an absent one
is left out or said in words (never ``-1``), and parameters and scores are tables. The Dagster assets wrap
these values (``training.assets``); this module does not import Dagster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

SIGNIFICANT_DIGITS = 4
MODEL_METRICS = ("log_loss", "brier", "auc", "accuracy", "precision", "recall", "f1", "sharpe")
CHAMPION_METRICS = ("log_loss", "auc", "f1", "accuracy")


class Markdown(str):
    """Text to show as Markdown (a table)."""


def figure(value: Any, digits: int = SIGNIFICANT_DIGITS) -> float | None:
    """``value`` rounded to ``digits`` significant digits; None when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if value == 0:
        return 0.0
    return round(float(value), digits - 1 - math.floor(math.log10(abs(value))))


def text_figure(value: Any) -> str:
    """A value for a table cell: numbers rounded as ``figure`` (and printed without float noise)."""
    rounded = figure(value)
    if rounded is None:
        return str(value).replace("|", "/")
    return f"{rounded:.{SIGNIFICANT_DIGITS}g}" if abs(rounded) < 10**SIGNIFICANT_DIGITS else f"{rounded:.0f}"


def costs_text(fee_bps: float, slippage_bps: float) -> str:
    """What the strategy behind a Sharpe figure pays, e.g. 'net of 10 bps fee + 2 bps slippage per position change'."""
    return f"net of {fee_bps:g} bps fee + {slippage_bps:g} bps slippage per position change"


def version_text(version: int | None) -> str | None:
    return None if version is None else f"v{version}"


def table(headers: tuple[str, str], rows: Mapping[str, Any] | list[tuple[str, Any]]) -> Markdown:
    items = list(rows.items()) if isinstance(rows, Mapping) else list(rows)
    lines = [f"| {headers[0]} | {headers[1]} |", "|---|---|"]
    lines += [f"| {str(k).replace('|', '/')} | {text_figure(v)} |" for k, v in items]
    return Markdown("\n".join(lines))


def _metrics(prefix: str, metrics: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for name in names:
        value = figure(metrics.get(name))
        if value is not None:
            out[f"{prefix}{name}"] = value
    return out


def model_fields(outcome: Any, code_version: str) -> dict[str, Any]:
    """The model materialization's metadata for a ``cadence.SymbolOutcome``."""
    report, ch = outcome.challenger.report, outcome.challenger
    out: dict[str, Any] = _metrics("model_", report.model, MODEL_METRICS)
    for baseline, metrics in report.baselines.items():
        out.update(_metrics(f"{baseline}_", metrics, ("log_loss",)))
    out.update(
        {
            "version": version_text(outcome.version.version),
            "sha256": outcome.version.sha256,
            "params": table(("parameter", "value"), ch.params) if ch.params else "defaults",
            "data_window": f"{ch.data_start} .. {ch.data_end}",
            "sharpe_costs": costs_text(ch.report.fee_bps, ch.report.slippage_bps),
            "sharpe_annualisation": ch.annualisation.describe() if ch.annualisation else "unknown",
            "n_train": int(ch.n_train),
            "n_validation": int(ch.n_validation),
            "features": ", ".join(outcome.version.info.get("features", [])),
            "code_version": code_version,
            "champion_before": version_text(outcome.champion_before.version) if outcome.champion_before else "none",
            "gate": "passed"
            if outcome.gate.passed
            else f"{'held for review' if outcome.gate.held else 'rejected'}: {outcome.gate.reason}",
        }
    )
    if ch.warm_started_from is not None:
        out["warm_started_from"] = version_text(ch.warm_started_from)
    realized = {k: v for k, v in outcome.realized.items() if figure(v) is not None}
    if realized:
        out["champion_realized"] = table(("champion metric on new rows", "value"), realized)
    if ch.search_scores:
        scores = sorted(ch.search_scores.items(), key=lambda kv: (figure(kv[1]) is None, kv[1]))
        out["search_scores"] = table(("parameters", "score"), scores)
    return out


def champion_fields(
    change: str,
    version: int | None,
    previous: int | None,
    by: str,
    reason: str,
    changed_at: str,
    metrics: Mapping[str, Any],
    *,
    sha256: str | None = None,
    promotions_in_run: int | None = None,
) -> dict[str, Any]:
    """A champion change's metadata: what changed, which version serves, which it replaced, who, why, when,
    and the serving version's metrics."""
    out: dict[str, Any] = {
        "change": change,
        "version": version_text(version) or "none serves",
        "previous_version": version_text(previous) or "none (first champion)",
        "by": by,
        "reason": reason,
        "changed_at": changed_at,
    }
    if sha256:
        out["sha256"] = sha256
    if promotions_in_run is not None:
        out["promotions_in_run"] = int(promotions_in_run)
    out.update(_metrics("model_", metrics, CHAMPION_METRICS))
    return out


__all__ = [
    "Markdown",
    "champion_fields",
    "costs_text",
    "figure",
    "model_fields",
    "table",
    "text_figure",
    "version_text",
]
