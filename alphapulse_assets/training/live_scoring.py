"""Live (prequential) scores of the champions, shadow challengers beside them, and the rollback rule.

Test-then-train: each bar is scored by the model that was in force when the bar closed, once its label is
known, and never by a model that trained on it. What was in force comes from the registry's history of
champion changes (promotions, rollbacks, fall-backs, with their times); the predictions are replayed on the
stored candles with the training code's own features (``challenger.make_dataset``) and the registered model
(``predict_proba``), so they are what a served prediction for that bar was.

Per bar (``replay``): ``symbol, cadence, bar_time, version, role ("champion" | "shadow"), prob_up, label,
forward_return, last_direction`` and the naive baselines' probabilities (``baseline_<name>``), fitted as the
gate fits them (``evaluation.naive_baselines``) on the training window of the version that made the
prediction. Scores (``summarize``) are the gate's: log loss, accuracy, and the long/flat strategy's Sharpe
net of fees (``evaluation.evaluate``), next to the baselines, since the champion's promotion and over a rolling
window of bars; ``series`` gives them bar by bar.

Shadows: the newest ``max_shadows`` versions registered since the champion took office (rejected challengers
and any newer ones), scored the same way over the same bars, each beside the champion's log loss on those
bars. Live evidence (``shadow_evidence``): on the labelled bars that closed after the shadow was registered, its
per-bar log loss against the champion's on the same bars; the shadow "beats the champion live" when there are at
least ``min_bars`` of them and a one-sided paired moving-block bootstrap gives p < ``alpha`` (the rollback rule's
test, the other way round). ``promote_on_live_evidence`` promotes a shadow only then (operator-driven: ``alphapulse
models promote-shadow``); a version held for review still needs ``approve``.

The rule (``judge``): a champion whose per-bar log loss over its newest labelled bars since it became champion
(at most ``window_bars``, at least ``min_bars``) is worse than its best calibrated baseline's, significantly
in a one-sided paired moving-block bootstrap at ``alpha`` (block: a day of bars, as the gate), is
underperforming. ``apply_rule`` then raises one alert for the episode (``live_scores:<SYMBOL>/<cadence>``)
and rolls the champion back through the registry (``by="live-scoring"``, with the figures as the reason) to
the newest earlier champion the gate never rejected; with none, it alerts only (critical). The alert resolves
once the champion in force has been judged on enough bars and is not underperforming.

This module does not import Dagster.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from alphapulse_assets.alerting.alerts import Alert
from alphapulse_assets.market_data.calendars import Annualisation, annualisation
from alphapulse_assets.market_data.schema import timeframe_to_timedelta
from alphapulse_assets.recovery.errors import PermanentError, Severity
from alphapulse_assets.training.challenger import CadenceSpec, Dataset, block_length, make_dataset
from alphapulse_assets.training.evaluation import evaluate, naive_baselines, per_sample_log_loss
from alphapulse_assets.training.registry import Decision, ModelRegistry, ModelVersion
from alphapulse_assets.training.significance import paired_bootstrap

log = logging.getLogger("alphapulse.live_scoring")

ROLLBACK_BY = "live-scoring"
# Baselines that compete on log loss (the hard persistence forecast's confident misses make its loss unbounded;
# the gate leaves it out of its significance tests for the same reason).
CALIBRATED_BASELINES = ("base_rate", "persistence_calibrated")
FRAME_COLUMNS = (
    "symbol",
    "cadence",
    "bar_time",
    "version",
    "role",
    "prob_up",
    "label",
    "forward_return",
    "last_direction",
)


@dataclass(frozen=True)
class LiveConfig:
    window_bars: int = 500
    min_bars: int = 200
    alpha: float = 0.01
    n_boot: int = 1000
    max_shadows: int = 2
    rollback: bool = True


def alert_key(symbol: str, cadence: str) -> str:
    return f"live_scores:{symbol}/{cadence}"


@dataclass(frozen=True)
class Stint:
    """``version`` was champion from ``start`` (inclusive) until ``end`` (exclusive; None: still is)."""

    version: int
    start: pd.Timestamp
    end: pd.Timestamp | None


def _utc(value: datetime | str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def stints(changes: Sequence[Decision]) -> list[Stint]:
    """Who was champion when, from the registry's champion changes (oldest first)."""
    out: list[Stint] = []
    for i, change in enumerate(changes):
        if change.version is None:
            continue
        end = _utc(changes[i + 1].at) if i + 1 < len(changes) else None
        start = _utc(change.at)
        if end is None or end > start:
            out.append(Stint(change.version, start, end))
    return out


def _data_bounds(mv: ModelVersion) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    start, end = mv.info.get("data_start"), mv.info.get("data_end")
    return (_utc(start) if start else None), (_utc(end) if end else None)


def _baselines_for(ds: Dataset, mv: ModelVersion, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The gate's naive baselines for ``rows``, fitted on the rows of the version's own training window."""
    start, end = _data_bounds(mv)
    ts = ds.timestamps
    train = np.ones(len(ds), dtype=bool)
    if start is not None:
        train &= (ts >= start).to_numpy()
    if end is not None:
        train &= (ts <= end).to_numpy()
    if not train.any():
        raise PermanentError(
            f"no stored bars of {mv.label}'s training window ({start} .. {end}) to fit the baselines on",
            where=f"live scores of {mv.label}",
        )
    return naive_baselines(ds.y[train], ds.y[rows], ds.last_dir[rows], last_direction_train=ds.last_dir[train])


def _rows_frame(ds: Dataset, rows: np.ndarray, mv: ModelVersion, model: Any, role: str, cadence: str) -> pd.DataFrame:
    X = ds.X.to_numpy()[rows]
    frame = pd.DataFrame(
        {
            "symbol": ds.symbols[rows],
            "cadence": cadence,
            "bar_time": ds.timestamps[rows].to_numpy(),
            "version": mv.version,
            "role": role,
            "prob_up": model.predict_proba(X)[:, 1] if len(X) else np.empty(0),
            "label": ds.y[rows],
            "forward_return": ds.forward[rows],
            "last_direction": ds.last_dir[rows],
        }
    )
    for name, proba in _baselines_for(ds, mv, rows).items():
        frame[f"baseline_{name}"] = proba
    return frame


def _unseen(ds: Dataset, mv: ModelVersion) -> np.ndarray:
    """Bars the version did not train on."""
    _, end = _data_bounds(mv)
    return np.ones(len(ds), dtype=bool) if end is None else (ds.timestamps > end).to_numpy()


def replay(
    ds: Dataset,
    spec: CadenceSpec,
    history: Sequence[Stint],
    versions: Mapping[int, tuple[ModelVersion, Any]],
    shadows: Sequence[int] = (),
) -> pd.DataFrame:
    """Per-bar predictions of the champion in force at each labelled bar of ``ds`` (one symbol), and of
    ``shadows`` over the current champion's bars. ``versions`` maps a version to (ModelVersion, loaded model).

    A bar's prediction is made when it closes (``bar_time + timeframe``): the champion in force then made it.
    A version is never scored on a bar it trained on.
    """
    bar = timeframe_to_timedelta(spec.timeframe)
    closes = ds.timestamps + bar
    parts = []
    for stint in history:
        in_force = (closes >= stint.start).to_numpy()
        if stint.end is not None:
            in_force = in_force & (closes < stint.end).to_numpy()
        mv, model = versions[stint.version]
        rows = np.flatnonzero(in_force & _unseen(ds, mv))
        if len(rows):
            parts.append(_rows_frame(ds, rows, mv, model, "champion", spec.name))
    if history and history[-1].end is None:
        since = (closes >= history[-1].start).to_numpy()
        for version in shadows:
            mv, model = versions[version]
            rows = np.flatnonzero(since & _unseen(ds, mv))
            if len(rows):
                parts.append(_rows_frame(ds, rows, mv, model, "shadow", spec.name))
    return pd.concat(parts, ignore_index=True) if parts else empty_frame()


def empty_frame() -> pd.DataFrame:
    """The per-bar frame with no bar in it (its columns typed as in a frame with bars)."""
    text, number = pd.Series([], dtype=object), pd.Series([], dtype="float64")
    columns = {name: number for name in FRAME_COLUMNS}
    columns |= {"symbol": text, "cadence": text, "role": text, "version": pd.Series([], dtype="int64")}
    columns["bar_time"] = pd.Series([], dtype="datetime64[ns, UTC]")
    baselines = ("base_rate", "persistence", "persistence_calibrated")
    return pd.DataFrame(columns | {f"baseline_{b}": number for b in baselines})


def annualisation_for(spec: CadenceSpec, symbol: str, timestamps: Any) -> Annualisation:
    """The Sharpe annualisation the cadence's gate uses for this symbol (bar size and market calendar)."""
    calendar = spec.calendar_by_symbol.get(symbol.upper(), spec.calendar)
    return annualisation(spec.timeframe, calendar, timestamps, spec.session_hours)


def summarize(rows: pd.DataFrame, spec: CadenceSpec, periods: float) -> dict[str, Any]:
    """Scores of the rows' model next to the baselines on the same bars, the strategy paying the cadence's costs
    (``spec.fee_bps + spec.slippage_bps``) and annualised with ``periods`` bars a year; ``n`` 0 and nothing else
    if there is no row."""
    if not len(rows):
        return {"n": 0}
    baseline_cols = [c for c in rows.columns if c.startswith("baseline_")]
    report = evaluate(
        rows["label"].to_numpy(),
        rows["prob_up"].to_numpy(),
        rows["forward_return"].to_numpy(),
        {c[len("baseline_") :]: rows[c].to_numpy() for c in baseline_cols},
        periods,
        fee_bps=spec.fee_bps,
        slippage_bps=spec.slippage_bps,
    )
    best = min(CALIBRATED_BASELINES, key=lambda b: float(report.baselines[b]["log_loss"]))
    return {
        "n": int(report.n),
        "first_bar": rows["bar_time"].min(),
        "last_bar": rows["bar_time"].max(),
        "log_loss": float(report.model["log_loss"]),
        "accuracy": float(report.model["accuracy"]),
        "sharpe": float(report.model["sharpe"]),
        "total_return": float(report.model["total_return"]),
        "best_baseline": best,
        "baseline_log_loss": float(report.baselines[best]["log_loss"]),
        "baseline_accuracy": float(report.baselines[best]["accuracy"]),
        "baseline_sharpe": float(report.baselines[best]["sharpe"]),
        "fee_bps": spec.fee_bps,
        "slippage_bps": spec.slippage_bps,
        "baselines": {name: dict(m) for name, m in report.baselines.items()},
    }


@dataclass
class Verdict:
    """The rule's judgement of the champion in force on its newest labelled bars since it became champion."""

    version: int | None
    n: int
    judged: bool  # enough bars to judge
    underperforming: bool
    reason: str
    model_log_loss: float | None = None
    baseline: str | None = None
    baseline_log_loss: float | None = None
    p_value: float | None = None


def judge(version: int | None, rows: pd.DataFrame, spec: CadenceSpec, cfg: LiveConfig) -> Verdict:
    """Is the champion's live log loss worse than its best calibrated baseline's, significantly? (module doc)"""
    if version is None:
        return Verdict(None, 0, False, False, "no champion in force")
    recent = rows.tail(cfg.window_bars)
    n = len(recent)
    if n < cfg.min_bars:
        return Verdict(
            version,
            n,
            False,
            False,
            f"v{version}: {n} labelled bar(s) since it became champion (judged on {cfg.min_bars})",
        )
    y = recent["label"].to_numpy()
    loss = per_sample_log_loss(y, recent["prob_up"])
    base = {b: per_sample_log_loss(y, recent[f"baseline_{b}"]) for b in CALIBRATED_BASELINES}
    best = min(base, key=lambda b: base[b].mean())
    # "baseline better than the model": the bootstrap's one-sided test with the roles swapped.
    test = paired_bootstrap(base[best], loss, n_boot=cfg.n_boot, block=min(n, block_length(spec, n)), seed=0)
    worse = test.significant(cfg.alpha)
    text = (
        f"v{version} live log loss {loss.mean():.4f} vs {best} {base[best].mean():.4f} over its last {n} labelled "
        f"bars ({recent['bar_time'].min():%Y-%m-%d %H:%M} .. {recent['bar_time'].max():%Y-%m-%d %H:%M} UTC); "
        f"one-sided p = {test.p_value:.4f} ({'<' if worse else '>='} {cfg.alpha})"
    )
    return Verdict(version, n, True, worse, text, float(loss.mean()), best, float(base[best].mean()), test.p_value)


@dataclass(frozen=True)
class ShadowEvidence:
    """A shadow against the champion in force on the same labelled bars since the shadow was registered.

    ``edge`` is the champion's mean log loss minus the shadow's (positive: the shadow is better); ``p_value`` the
    one-sided paired bootstrap's p of "the shadow's log loss is lower"; ``beats`` the rule (module doc)."""

    version: int
    champion: int
    n: int
    beats: bool
    reason: str
    shadow_log_loss: float | None = None
    champion_log_loss: float | None = None
    p_value: float | None = None

    @property
    def judged(self) -> bool:
        return self.p_value is not None

    @property
    def edge(self) -> float | None:
        if self.shadow_log_loss is None or self.champion_log_loss is None:
            return None
        return self.champion_log_loss - self.shadow_log_loss


def shadow_evidence(
    frame: pd.DataFrame, shadow: ModelVersion, champion: int, spec: CadenceSpec, cfg: LiveConfig
) -> ShadowEvidence:
    """Does ``shadow`` beat the champion live? Its per-bar log loss against the champion's on the same labelled
    bars that closed after it was registered (from ``replay``'s frame); "beats" when there are at least
    ``cfg.min_bars`` of them and the one-sided paired moving-block bootstrap (block: a day of bars, as the gate
    and the rollback rule) gives p < ``cfg.alpha``."""
    bar = timeframe_to_timedelta(spec.timeframe)
    registered = _utc(shadow.created_at)
    mine = frame[(frame["role"] == "shadow") & (frame["version"] == shadow.version)]
    mine = mine[(mine["bar_time"] + bar) >= registered]
    theirs = frame.loc[frame["role"] == "champion", ["bar_time", "prob_up"]]
    paired = mine.merge(theirs, on="bar_time", suffixes=("", "_champion")).sort_values("bar_time")
    n = len(paired)
    head = f"v{shadow.version} vs champion v{champion}"
    if n < cfg.min_bars:
        return ShadowEvidence(
            shadow.version,
            champion,
            n,
            False,
            f"{head}: {n} labelled bar(s) scored by both since v{shadow.version} was registered at "
            f"{registered:%Y-%m-%d %H:%M} UTC (judged on {cfg.min_bars})",
        )
    y = paired["label"].to_numpy()
    loss = per_sample_log_loss(y, paired["prob_up"])
    champ = per_sample_log_loss(y, paired["prob_up_champion"])
    test = paired_bootstrap(loss, champ, n_boot=cfg.n_boot, block=min(n, block_length(spec, n)), seed=0)
    beats = test.significant(cfg.alpha)
    reason = (
        f"{head}: live log loss {loss.mean():.4f} vs {champ.mean():.4f} on the same {n} labelled bars "
        f"({paired['bar_time'].min():%Y-%m-%d %H:%M} .. {paired['bar_time'].max():%Y-%m-%d %H:%M} UTC); "
        f"one-sided p = {test.p_value:.4f} ({'<' if beats else '>='} {cfg.alpha})"
    )
    return ShadowEvidence(
        shadow.version, champion, n, beats, reason, float(loss.mean()), float(champ.mean()), test.p_value
    )


def best_shadow(shadows: Mapping[int, Mapping[str, Any]]) -> ShadowEvidence | None:
    """The judged shadow with the strongest live evidence (lowest p, then largest edge); None if none is judged."""
    judged = [s["evidence"] for s in shadows.values() if s.get("evidence") is not None and s["evidence"].judged]
    return min(judged, key=lambda e: (e.p_value, -(e.edge or 0.0)), default=None)


class NotPromoted(PermanentError):
    """A promotion on live evidence refused: the evidence is not there (the figures say why)."""


def promote_on_live_evidence(
    registry: ModelRegistry,
    candles: pd.DataFrame,
    spec: CadenceSpec,
    symbol: str,
    version: int,
    cfg: LiveConfig,
    now: datetime,
    *,
    reason: str,
    by: str,
) -> tuple[Decision, ShadowEvidence]:
    """Make ``version`` (a rejected or newer challenger registered since the champion took office) champion,
    only if it beats the champion live (``shadow_evidence``); recorded as a promotion by ``by`` with the figures
    and ``reason``. Raises NotPromoted with the figures otherwise, and PermanentError for a version that is not a
    shadow, or one held for review (that takes ``approve``)."""
    cadence = spec.name
    where = f"promotion of {symbol}/{cadence}/v{version} on live evidence"
    if not (reason or "").strip():
        raise PermanentError("a promotion needs a reason (--reason)", where=where)
    known = {v.version: v for v in registry.versions(symbol, cadence)}
    if version not in known:
        raise PermanentError(f"{symbol}/{cadence} has no version {version}", where=where)
    history = stints(registry.champion_changes(symbol, cadence))
    current = history[-1] if history and history[-1].end is None else None
    if current is None:
        raise PermanentError(f"{symbol}/{cadence} has no champion to compare v{version} with", where=where)
    if current.version == version:
        raise PermanentError(f"v{version} is already the champion of {symbol}/{cadence}", where=where)
    if version in {d.version for d in registry.held(symbol, cadence)}:
        raise PermanentError(
            f"v{version} is held for review by the implausibility guard; it takes "
            f"`alphapulse models approve {symbol} {cadence} {version} --reason ...`",
            where=where,
        )
    shadows = [v for v, mv in known.items() if v != current.version and _utc(mv.created_at) >= current.start]
    if version not in shadows:
        listed = ", ".join(f"v{v}" for v in shadows) or "none"
        raise PermanentError(
            f"v{version} was registered before champion v{current.version} took office "
            f"({current.start:%Y-%m-%d %H:%M} UTC), so it has no live evidence against it; shadows: {listed}",
            where=where,
        )
    scores = score_symbol(registry, candles, spec, symbol, cfg, now, shadows=[version])
    evidence = scores.shadows[version]["evidence"] if version in scores.shadows else None
    if evidence is None:
        raise NotPromoted(f"v{version}: no labelled bar scored since it was registered", where=where)
    if not evidence.beats:
        raise NotPromoted(f"not promoted: {evidence.reason}", where=where)
    serving = registry.champion(symbol, cadence)
    if serving is None or serving.version != current.version:  # changed while the evidence was computed
        raise PermanentError(
            f"the champion changed from v{current.version} while v{version} was being scored; run it again",
            where=where,
        )
    decision = registry.promote(
        known[version], reason=f"promoted on live evidence ({evidence.reason}): {reason}", by=by
    )
    return decision, evidence


@dataclass
class SymbolScores:
    """One (symbol, cadence): the per-bar frame, scores, shadows and the rule's verdict."""

    symbol: str
    cadence: str
    champion: ModelVersion | None
    since: pd.Timestamp | None
    frame: pd.DataFrame
    since_promotion: dict[str, Any]
    window: dict[str, Any]
    shadows: dict[int, dict[str, Any]]
    verdict: Verdict
    newest_bar: pd.Timestamp | None
    action: str = "none"
    champion_changed: bool = False
    annualisation: str | None = None  # how the Sharpe figures were annualised

    @property
    def status(self) -> str:
        """One line an operator reads first."""
        if self.champion is None:
            return "no champion"
        if not self.since_promotion.get("n"):
            return (
                f"no labelled bars since v{self.champion.version} became champion at {self.since:%Y-%m-%d %H:%M} UTC "
                f"(newest labelled bar: {'none' if self.newest_bar is None else f'{self.newest_bar:%Y-%m-%d %H:%M}'})"
            )
        return self.verdict.reason


def window_start(
    registry: ModelRegistry,
    symbol: str,
    spec: CadenceSpec,
    cfg: LiveConfig,
    now: datetime,
    shadows: Sequence[int] | None = None,
) -> pd.Timestamp:
    """The earliest bar ``score_symbol`` needs: feature warm-up before the training window of the oldest version
    it will replay (the rolling window, the current stint, the shadows)."""
    bar = timeframe_to_timedelta(spec.timeframe)
    now = _utc(now)
    earliest = now - bar * cfg.window_bars
    plan = _plan(registry, symbol, spec, cfg, now, shadows)
    for mv in plan[1].values():
        start, _ = _data_bounds(mv)
        if start is not None:
            earliest = min(earliest, start)
    if plan[0]:
        earliest = min(earliest, plan[0][-1].start - bar)
    return (earliest - bar * (spec.warmup_bars + 1)).floor("D")


def _plan(
    registry: ModelRegistry,
    symbol: str,
    spec: CadenceSpec,
    cfg: LiveConfig,
    now: pd.Timestamp,
    only_shadows: Sequence[int] | None = None,
) -> tuple[list[Stint], dict[int, ModelVersion], list[int]]:
    """The stints to replay (those overlapping the rolling window, and the current one), their versions and
    the shadows (the newest ``cfg.max_shadows`` registered since the champion took office, or ``only_shadows``)."""
    bar = timeframe_to_timedelta(spec.timeframe)
    horizon = now - bar * cfg.window_bars
    history = stints(registry.champion_changes(symbol, spec.name))
    current = history[-1] if history and history[-1].end is None else None
    kept = [s for s in history if s is current or (s.end is not None and s.end > horizon)]
    shadows: list[int] = []
    if current is not None and cfg.max_shadows:
        newer = [v for v in registry.versions_since(symbol, spec.name, current.start) if v.version != current.version]
        shadows = [v.version for v in newer[-cfg.max_shadows :]][::-1]
    if current is not None and only_shadows is not None:
        shadows = list(only_shadows)
    wanted = {s.version for s in kept} | set(shadows)
    return kept, {v: registry.get(symbol, spec.name, v) for v in sorted(wanted)}, shadows


def score_symbol(
    registry: ModelRegistry,
    candles: pd.DataFrame,
    spec: CadenceSpec,
    symbol: str,
    cfg: LiveConfig,
    now: datetime,
    shadows: Sequence[int] | None = None,
) -> SymbolScores:
    """Replay and score one symbol's champions (and shadows: the planned ones, or ``shadows``) of ``spec``'s
    cadence on ``candles`` (its bars at the cadence's bar size, from ``window_start`` on), judge the champion in
    force, and weigh each shadow's live evidence against it (``shadow_evidence``)."""
    now = _utc(now)
    history, mvs, shadow_versions = _plan(registry, symbol, spec, cfg, now, shadows)
    current = history[-1] if history and history[-1].end is None else None
    champion = mvs[current.version] if current else None
    mine = candles[candles["symbol"] == symbol] if len(candles) else candles
    ds = make_dataset(mine, spec) if len(mine) else None
    if ds is None or not len(ds) or not mvs:
        empty = empty_frame()
        newest = ds.timestamps.max() if ds is not None and len(ds) else None
        verdict = judge(champion.version if champion else None, empty, spec, cfg)
        since = current.start if current else None
        return SymbolScores(symbol, spec.name, champion, since, empty, {"n": 0}, {"n": 0}, {}, verdict, newest)
    versions = {v: (mv, registry.load(mv)) for v, mv in mvs.items()}  # digests verified before any prediction
    frame = replay(ds, spec, history, versions, shadow_versions)
    annual = annualisation_for(spec, symbol, ds.timestamps)
    periods = annual.bars_per_year
    champ_rows = frame[frame["role"] == "champion"]
    stint_rows = champ_rows[champ_rows["version"] == current.version] if current else champ_rows.iloc[:0]
    if current is not None:
        bar = timeframe_to_timedelta(spec.timeframe)
        stint_rows = stint_rows[(stint_rows["bar_time"] + bar) >= current.start]
    shadow_scores: dict[int, dict[str, Any]] = {}
    for version in shadow_versions:
        rows = frame[(frame["role"] == "shadow") & (frame["version"] == version)]
        scores = summarize(rows, spec, periods)
        paired = stint_rows[stint_rows["bar_time"].isin(rows["bar_time"])]
        if len(paired):
            scores["champion_log_loss"] = float(per_sample_log_loss(paired["label"], paired["prob_up"]).mean())
        info = mvs[version].info
        held = "held for review" in str(info.get("gate_reason", ""))
        scores["gate"] = "passed" if info.get("gate_passed") else ("held for review" if held else "rejected")
        scores["evidence"] = shadow_evidence(frame, mvs[version], current.version, spec, cfg)
        shadow_scores[version] = scores
    return SymbolScores(
        symbol,
        spec.name,
        champion,
        current.start if current else None,
        frame,
        summarize(stint_rows, spec, periods),
        summarize(champ_rows.tail(cfg.window_bars), spec, periods),
        shadow_scores,
        judge(current.version if current else None, stint_rows, spec, cfg),
        ds.timestamps.max(),
        annualisation=annual.describe(),
    )


def apply_rule(registry: ModelRegistry, router: Any, scores: SymbolScores, cfg: LiveConfig) -> str:
    """Alert and roll back an underperforming champion; resolve the episode's alert once the champion in force
    is judged fine. Returns what was done, in words (also set on ``scores.action``)."""
    key = alert_key(scores.symbol, scores.cadence)
    verdict = scores.verdict
    open_alert = router.store.open_alert(key)
    if verdict.judged and not verdict.underperforming:
        if open_alert is not None:
            router.resolve(key)
            scores.action = f"resolved: {verdict.reason}"
        return scores.action
    if not verdict.underperforming:
        return scores.action  # too few bars: an open episode stays open until the champion in force is judged
    serving = registry.champion(scores.symbol, scores.cadence)
    if serving is None or serving.version != verdict.version:  # promoted or rolled back since it was scored
        scores.action = f"v{verdict.version} no longer champion: not judged again"
        return scores.action
    target = registry.previous_eligible_champion(scores.symbol, scores.cadence) if cfg.rollback else None
    done, severity = None, Severity.CRITICAL
    if target is not None:
        try:
            decision = registry.rollback(
                scores.symbol,
                scores.cadence,
                target,
                reason=f"underperforming live: {verdict.reason}",
                by=ROLLBACK_BY,
            )
            done, severity = f"rolled back v{verdict.version} -> v{decision.version}", Severity.WARNING
            scores.champion_changed = True
        except PermanentError as exc:  # its file fails verification: alert only, and say why
            done = f"rollback to v{target} refused ({exc}); v{verdict.version} keeps serving"
    if done is None:
        done = (
            "rollback disabled (ALPHAPULSE_LIVE__ROLLBACK=false)"
            if not cfg.rollback
            else "no earlier eligible champion"
        ) + f": v{verdict.version} keeps serving"
    scores.action = done
    log.warning("%s %s: %s; %s", scores.symbol, scores.cadence, verdict.reason, done)
    if open_alert is None or scores.champion_changed:  # one alert per episode; a later rollback in it updates it
        router.raise_alert(
            Alert(
                key=key,
                severity=severity,
                title=f"{scores.symbol} {scores.cadence}: champion v{verdict.version} worse than its baseline live",
                body=f"{verdict.reason}. {done}.",
                source="live-scoring",
            )
        )
    return done
