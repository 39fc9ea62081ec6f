"""``alphapulse evaluate``: the pipeline on a folder of history a user brings, one symbol at a time.

Each symbol found in the folder (files source layout) is read, checked with the cadences' quality rules
(coverage judged against the symbol's market calendar), trained and evaluated out of sample next to the naive
baselines, and judged by the promotion gate's rules. A file or symbol that cannot be read, is refused by a
blocking quality rule or cannot be trained is reported in its own row, naming the file and the problem, and
the others go on. The result is one plain document (``evaluate_folder``) that the command prints as a table
or as JSON. This module does not import Dagster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from alphapulse_assets.features.user import FeatureSet, load_user_features
from alphapulse_assets.market_data import quality
from alphapulse_assets.market_data.calendars import annualisation
from alphapulse_assets.market_data.schema import timeframe_to_timedelta
from alphapulse_assets.market_data.sources.files import FileSource
from alphapulse_assets.recovery.errors import describe
from alphapulse_assets.settings import AlphaPulseSettings
from alphapulse_assets.training.challenger import CadenceSpec, train_challenger
from alphapulse_assets.training.promotion import GateConfig, evaluate_gate, report_figures

REPORTED_METRICS = ("log_loss", "brier", "auc", "accuracy", "precision", "recall", "f1", "sharpe", "total_return")


@dataclass(frozen=True)
class FolderEvaluation:
    """What to evaluate: the folder, its bar size, the window and the walk-forward's sizes."""

    files: Path
    timeframe: str
    start: pd.Timestamp
    end: pd.Timestamp
    symbols: tuple[str, ...] | None = None  # None: every symbol in the folder
    source_timezone: str | None = None
    n_splits: int = 4
    min_train_bars: int = 300
    min_validation: int = 500
    calendar: str | None = None  # None: the settings' (per symbol, or auto)
    fee_bps: float | None = None  # None: the settings'
    slippage_bps: float | None = None


def _number(value: Any) -> float | int | None:
    """A JSON-safe figure: None for NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _metrics(values: dict[str, Any]) -> dict[str, float | int | None]:
    return {k: _number(values.get(k)) for k in REPORTED_METRICS}


def quality_results(
    candles: pd.DataFrame, symbol: str, timeframe: str, settings: AlphaPulseSettings, calendar: str
) -> list[quality.QualityResult]:
    """The cadences' quality rules over a symbol's whole history (its own first to last bar); coverage is
    judged against ``calendar``."""
    if candles.empty:
        return []
    ts = pd.DatetimeIndex(candles["timestamp"])
    q = settings.quality
    return quality.run_all(
        candles,
        symbols=[symbol],
        start=ts.min(),
        end=ts.max() + timeframe_to_timedelta(timeframe),
        timeframe=timeframe,
        max_missing_fraction=q.max_missing_fraction,
        outlier_zscore=q.outlier_zscore,
        max_outlier_fraction=q.max_outlier_fraction,
        max_bar_move_factor=q.max_bar_move_factor,
        calendars={symbol: calendar},
        session_hours=settings.calendar.session_hours,
    )


def _error_row(symbol: str | None, file: str | None, status: str, exc: BaseException | str) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "file": file,
        "status": status,
        "bars": None,  # unknown: the file could not be read
        "error": exc if isinstance(exc, str) else describe(exc),
    }


VERDICTS = {"passed": "would be promoted", "held": "would be held for review", "rejected": "would be rejected"}


def evaluate_folder(request: FolderEvaluation, settings: AlphaPulseSettings) -> dict[str, Any]:
    """Evaluate every symbol of the folder; one JSON-ready document (see README, "Evaluating your own history")."""
    fee = settings.costs.fee_bps if request.fee_bps is None else request.fee_bps
    slippage = settings.costs.slippage_bps if request.slippage_bps is None else request.slippage_bps
    cfg = GateConfig(**settings.gate.model_dump(), min_validation_samples=request.min_validation)
    source = FileSource(request.files, timeframe=request.timeframe, source_timezone=request.source_timezone)
    unreadable: list[tuple[str, Exception]] = []
    symbols = list(request.symbols) if request.symbols else source.symbols(errors=unreadable)
    rows: list[dict[str, Any]] = [_error_row(None, path, "unreadable", exc) for path, exc in unreadable]
    skip = {path for path, _ in unreadable}
    spec = CadenceSpec(
        "evaluate",
        request.timeframe,
        window_days=max((request.end - request.start).days, 1),
        estimator="hgb",
        n_splits=request.n_splits,
        min_train_bars=request.min_train_bars,
        fee_bps=fee,
        slippage_bps=slippage,
        session_hours=settings.calendar.session_hours,
        features=FeatureSet(load_user_features(tuple(settings.features.extra))),  # yours too (checked at start)
    )
    for symbol in symbols:
        rows.append(_evaluate_symbol(source, symbol, request, settings, spec, cfg, skip))
    evaluated = sum(r["status"] == "evaluated" for r in rows)
    return {
        "files": str(request.files),
        "timeframe": request.timeframe,
        "window": {"start": request.start.isoformat(), "end": request.end.isoformat()},
        "costs": {"fee_bps": fee, "slippage_bps": slippage, "charged": "per position change (entering or leaving)"},
        "symbols": rows,
        "errors": [
            {"symbol": r["symbol"], "file": r["file"], "status": r["status"], "error": r["error"]}
            for r in rows
            if r["status"] != "evaluated"
        ],
        "summary": {
            "evaluated": evaluated,
            "refused": sum(r["status"] == "refused" for r in rows),
            "unreadable": sum(r["status"] == "unreadable" for r in rows),
            "not_trained": sum(r["status"] == "not_trained" for r in rows),
        },
    }


def _evaluate_symbol(
    source: FileSource,
    symbol: str,
    request: FolderEvaluation,
    settings: AlphaPulseSettings,
    spec: CadenceSpec,
    cfg: GateConfig,
    skip: set[str],
) -> dict[str, Any]:
    symbol = symbol.upper()
    source.notes.clear()
    try:
        candles = source.fetch([symbol], request.start, request.end, skip_files=skip)
    except Exception as exc:  # one unreadable file: its own row, and the others go on
        return _error_row(symbol, getattr(exc, "where", None), "unreadable", exc)
    notes = sorted(source.notes.values())
    bars = len(candles)
    if candles.empty:
        row = _error_row(symbol, None, "refused", "no bars in the window")
        return {**row, "bars": 0, "notes": notes}
    setting = request.calendar or settings.calendar.for_symbol(symbol)
    annual = annualisation(request.timeframe, setting, candles["timestamp"], settings.calendar.session_hours)
    base = {
        "symbol": symbol,
        "file": None,
        "bars": bars,
        "first_bar": candles["timestamp"].min().isoformat(),
        "last_bar": candles["timestamp"].max().isoformat(),
        "annualisation": annual.to_dict(),
        "notes": notes,
    }
    bad = [
        r
        for r in quality_results(candles, symbol, request.timeframe, settings, annual.calendar)
        if r.blocking and not r.passed
    ]
    if bad:
        reason = "bad data: " + "; ".join(
            f"{r.rule}: {r.description}, first {r.examples[0] if r.examples else '-'}" for r in bad
        )
        return {**base, "status": "refused", "error": reason, "failed_rules": [r.rule for r in bad]}
    try:
        ch = train_challenger(candles, replace(spec, calendar=annual.calendar), symbol=symbol)
    except Exception as exc:
        return {**base, "status": "not_trained", "error": describe(exc)}
    r = ch.report
    gate = evaluate_gate(
        **report_figures(r),
        n_validation=ch.n_validation,
        significance=ch.significance,
        champion=None,
        drift=None,
        cfg=cfg,
    )
    return {
        **base,
        "status": "evaluated",
        "error": None,
        "n_validation": ch.n_validation,
        "metrics": _metrics(r.model),
        "baselines": {name: _metrics(values) for name, values in r.baselines.items()},
        "p_values": {name: _number(sig.p_value) for name, sig in ch.significance.items()},
        "costs": ch.costs,
        "verdict": VERDICTS[gate.verdict] + ("" if gate.passed else f": {gate.reason}"),
        "gate_passed": gate.passed,
    }
