"""One symbol's turn of a cadence, as plain functions: train, compare, gate, register; and promote.

The Dagster model and champion assets are thin wrappers around ``train_symbol`` and ``promote``; the
benchmarks' plain loop calls the same two functions, so both do exactly the same work.
This module does not import Dagster.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from alphapulse_assets.training import drift as drift_lib
from alphapulse_assets.training.challenger import (
    CadenceSpec,
    Challenger,
    Dataset,
    NothingNewerThanChampion,
    naive_utc,
    predict_dataset,
    train_challenger,
)
from alphapulse_assets.training.evaluation import classification_metrics
from alphapulse_assets.training.fanout import Pool
from alphapulse_assets.training.promotion import (
    DRIFT_GATE_FEATURES,
    ChampionComparison,
    GateConfig,
    GateResult,
    compare_with_champion,
    evaluate_gate,
    report_figures,
)
from alphapulse_assets.training.registry import Decision, ModelRegistry, ModelVersion, load_verified

log = logging.getLogger("alphapulse.training")


@dataclass
class SymbolOutcome:
    symbol: str
    cadence: str
    challenger: Challenger
    version: ModelVersion
    gate: GateResult
    champion_before: ModelVersion | None
    realized: dict[str, Any] = field(default_factory=dict)


def _drift_gate(ds: Dataset, cfg: GateConfig):
    """The window's newest quarter against the rest of it (large enough that KS is not noise)."""
    gated = list(DRIFT_GATE_FEATURES)
    recent_start = ds.timestamps.min() + 0.75 * (ds.timestamps.max() - ds.timestamps.min())
    is_recent = (ds.timestamps >= recent_start).to_numpy()
    if (~is_recent).sum() < 50 or is_recent.sum() < 50:
        return None
    profile = drift_lib.reference_profile(ds.X.loc[~is_recent, gated])
    return drift_lib.drift_report(
        profile, ds.X.loc[is_recent, gated], psi_threshold=cfg.psi_threshold, ks_threshold=cfg.ks_threshold
    )


def _champion_on_new_rows(ds: Dataset, challenger: Challenger, champion: ModelVersion, champion_model: Any):
    """Compare with the champion on rows neither model trained on; the champion's realized metrics there.

    The champion reads the features it was trained with (a feature added since is left out for it); one that
    was trained with a feature no longer configured cannot score the rows, and the comparison says so."""
    wanted = list(champion.info.get("features") or ds.X.columns)
    missing = [f for f in wanted if f not in ds.X.columns]
    if missing:
        note = f"champion v{champion.version} was trained with feature(s) {', '.join(missing)}, not configured now"
        return ChampionComparison(champion.version, 0, float("nan"), float("nan"), {}, incomparable=note), {}
    ds = dataclasses.replace(ds, X=ds.X[wanted])
    data_end = champion.info.get("data_end")
    unseen = (
        ds.since(pd.Timestamp(data_end) + pd.Timedelta(1))
        if data_end
        else ds.since(pd.Timestamp(challenger.oos["timestamp"].min(), tz="UTC"))
    )
    if not len(unseen):
        return ChampionComparison(champion.version, 0, float("nan"), float("nan"), {}), {}
    unseen_ts = naive_utc(unseen.timestamps)
    mask = np.isin(unseen_ts, challenger.oos["timestamp"].to_numpy())
    # No shared unseen rows is still a comparison (of nothing): the gate refuses rather than waving it through.
    comparison = ChampionComparison(champion.version, 0, float("nan"), float("nan"), {})
    if mask.any():
        challenger_proba = challenger.oos.set_index("timestamp")["proba"].loc[unseen_ts[mask]].to_numpy()
        comparison = compare_with_champion(
            unseen.y[mask],
            challenger_proba,
            champion_model.predict_proba(unseen.X.to_numpy()[mask])[:, 1],
            champion.version,
        )
    realized = classification_metrics(unseen.y, predict_dataset(champion_model, unseen))
    realized["n"] = len(unseen)
    return comparison, realized


@dataclass
class Fitted:
    """One symbol's challenger trained, evaluated and gated, before the registry knows of it: what a worker
    process computes (``fit_symbol``) and sends back."""

    challenger: Challenger
    gate: GateResult
    realized: dict[str, Any]
    reference_profile: dict[str, Any]
    features: list[str]


def fit_symbol(
    ds: Dataset,
    spec: CadenceSpec,
    gate_cfg: GateConfig,
    *,
    symbol: str,
    champion: ModelVersion | None,
    champion_model: Any | None,
) -> Fitted:
    """Train, evaluate and gate one symbol's challenger against ``champion`` (its model already loaded).

    Compute only: no registry, no database, no file written, so it runs in any process."""
    # Warm-started only from a champion with the same inputs (features added or removed: trained afresh).
    same_inputs = champion is not None and champion.info.get("features", list(spec.features.names)) == list(
        spec.features.names
    )
    warm = champion_model if (same_inputs and spec.estimator == "sgd") else None
    try:
        challenger = train_challenger(
            ds,
            spec,
            symbol=symbol,
            warm_model=warm,
            warm_version=champion.version if warm is not None else None,
            warm_data_end=pd.Timestamp(champion.info["data_end"]) if warm is not None else None,
        )
    except NothingNewerThanChampion:
        # A re-run of a window the champion was already trained on (a schedule tick after an operator's launch
        # of the same partition): nothing to update it with. Trained afresh instead, the challenger is gated like
        # any other (against the champion on rows neither trained on): a verdict, not a failed training.
        challenger = train_challenger(ds, spec, symbol=symbol)
    comparison, realized = None, {}
    if champion is not None:
        comparison, realized = _champion_on_new_rows(ds, challenger, champion, champion_model)
    gate = evaluate_gate(
        **report_figures(challenger.report),
        n_validation=challenger.n_validation,
        significance=challenger.significance,
        champion=comparison,
        drift=_drift_gate(ds, gate_cfg),
        cfg=gate_cfg,
    )
    return Fitted(challenger, gate, realized, drift_lib.reference_profile(ds.X), list(ds.X.columns))


def fit_symbol_from_bytes(
    ds: Dataset,
    spec: CadenceSpec,
    gate_cfg: GateConfig,
    symbol: str,
    champion: ModelVersion | None,
    champion_file: bytes | None,
) -> Fitted:
    """``fit_symbol`` with the champion as its verified file's bytes (``ModelRegistry.verified_bytes``):
    what a worker process is sent."""
    model = load_verified(champion_file) if champion_file is not None else None
    return fit_symbol(ds, spec, gate_cfg, symbol=symbol, champion=champion, champion_model=model)


def record_symbol(
    registry: ModelRegistry,
    fitted: Fitted,
    spec: CadenceSpec,
    *,
    symbol: str,
    partition: str,
    code_version: str,
    git_revision: str = "unknown",
    run_id: str | None = None,
    champion: ModelVersion | None = None,
) -> SymbolOutcome:
    """Register a fitted challenger and record its rejection or hold (a pass is promoted by ``promote``)."""
    challenger, gate = fitted.challenger, fitted.gate
    report = challenger.report
    version = registry.register(
        symbol,
        spec.name,
        challenger.model,
        info={
            "metrics": {k: v for k, v in report.model.items() if isinstance(v, (int, float))},
            "baselines": {
                k: {m: v for m, v in d.items() if isinstance(v, (int, float))} for k, d in report.baselines.items()
            },
            "params": challenger.params,
            "data_start": str(challenger.data_start),
            "data_end": str(challenger.data_end),
            "features": fitted.features,
            "partition": partition,
            "run_id": run_id,
            "code_version": code_version,
            "git": git_revision,
            "gate_passed": gate.passed,
            "gate_verdict": gate.verdict,
            "gate_reason": gate.reason,
            "reference_profile": fitted.reference_profile,
            "n_validation": challenger.n_validation,
            "costs": challenger.costs,
            "annualisation": challenger.annualisation.to_dict() if challenger.annualisation else None,
            "warm_started_from": challenger.warm_started_from,
        },
    )
    if gate.held:  # too good for its market: an operator decides (alphapulse models approve)
        registry.hold(version, reason=gate.reason)
        log.warning(
            "%s %s: challenger v%d held for review (%s); champion %s keeps serving",
            symbol,
            spec.name,
            version.version,
            gate.reason,
            f"v{champion.version}" if champion else "(none)",
        )
    elif not gate.passed:
        registry.reject(version, reason=gate.reason)
        log.info(
            "%s %s: challenger v%d rejected (%s); champion %s keeps serving",
            symbol,
            spec.name,
            version.version,
            gate.reason,
            f"v{champion.version}" if champion else "(none)",
        )
    return SymbolOutcome(symbol, spec.name, challenger, version, gate, champion, fitted.realized)


def train_symbol(
    registry: ModelRegistry,
    ds: Dataset,
    spec: CadenceSpec,
    gate_cfg: GateConfig,
    *,
    symbol: str,
    partition: str,
    code_version: str,
    git_revision: str = "unknown",
    run_id: str | None = None,
) -> SymbolOutcome:
    """Train, evaluate and gate one symbol's challenger, register it, and record a rejection or a hold.

    The champion's realized metrics on the new rows are reported beside the challenger's (judging the
    champion, and rolling it back, is live scoring's job: ``live_scoring.py``). A failure to train is recorded
    as "the champion keeps serving" and re-raised.
    """
    champion = registry.serving_champion(symbol, spec.name)  # a refused file: the previous verified one
    try:
        model = registry.load(champion) if champion is not None else None
        fitted = fit_symbol(ds, spec, gate_cfg, symbol=symbol, champion=champion, champion_model=model)
    except Exception as exc:
        registry.keep_champion(symbol, spec.name, reason=f"{spec.name} training failed: {exc}")
        raise
    return record_symbol(
        registry,
        fitted,
        spec,
        symbol=symbol,
        partition=partition,
        code_version=code_version,
        git_revision=git_revision,
        run_id=run_id,
        champion=champion,
    )


def promote(
    registry: ModelRegistry, symbol: str, cadence: str, version: int, partition: str
) -> tuple[Decision, ModelVersion | None]:
    """Make a challenger that passed its gate the champion (its file is verified first)."""
    mv = registry.get(symbol, cadence, version)
    previous = registry.champion(symbol, cadence)
    return registry.promote(mv, reason=f"passed the {cadence} gate ({partition})"), previous


@dataclass
class SymbolRun:
    """One symbol's turns in a models step: one per partition key, in time order (each day's nightly update
    starts from the champion the previous day left)."""

    symbol: str
    outcomes: list[SymbolOutcome] = field(default_factory=list)
    promoted: list[tuple[Decision, ModelVersion | None]] = field(default_factory=list)
    # (partition key, exception) of each turn that failed; its champion kept serving (recorded).
    errors: list[tuple[str, BaseException]] = field(default_factory=list)
    seconds: float = 0.0  # time spent training (in a worker process or here)


@dataclass
class _Chain:
    run: SymbolRun
    rows: Dataset
    keys: deque[str]


def train_symbols(
    registry: ModelRegistry,
    dataset: Dataset,
    spec: CadenceSpec,
    gate_cfg: GateConfig,
    symbols: Sequence[str],
    windows: Mapping[str, tuple[pd.Timestamp, pd.Timestamp]],
    *,
    code_version: str,
    git_revision: str = "unknown",
    run_id: str | None = None,
    may_promote: Callable[[str], bool] = lambda symbol: True,
    workers: int = 1,
    min_pool_seconds: float = 0.0,
    progress: Callable[[str], None] | None = None,
    progress_seconds: float = 30.0,
) -> Iterator[SymbolRun]:
    """Every symbol's turns over ``windows`` (partition key -> (start, end) of its rows, in time order), the
    training spread over ``workers`` processes (``fanout.Pool``); each symbol's ``SymbolRun`` is yielded as
    soon as its last turn is recorded.

    Worker processes only compute (``fit_symbol``). This process reads the champion (verified) before a
    turn and records its result after it (register, reject or hold, promote when the gate passed and
    ``may_promote(symbol)``): the registry is written by one process, whatever the database. A turn that
    raises is that turn's error, recorded as "champion kept"; the symbol's next turns and the other symbols
    go on. With ``run_id``, turns this run already recorded (an earlier attempt of the step) are skipped.
    """
    started = time.perf_counter()
    chains: dict[str, _Chain] = {}
    trained = registry.partitions_trained(spec.name, run_id) if run_id else {}  # by an earlier attempt
    rows_of = dataset.by_symbol(symbols)
    for symbol in symbols:
        done = trained.get(symbol, set())
        chains[symbol] = _Chain(SymbolRun(symbol), rows_of[symbol], deque(k for k in windows if k not in done))
    total = sum(len(c.keys) for c in chains.values())
    turns, last_report = 0, started

    def submit_next(pool: Pool, chain: _Chain) -> bool:
        """Queue the symbol's next turn; False when it has none left."""
        symbol = chain.run.symbol
        while chain.keys:
            key = chain.keys.popleft()
            start, end = windows[key]
            try:
                champion = registry.serving_champion(symbol, spec.name)  # a refused file: the previous one
                champion_file = registry.verified_bytes(champion) if champion is not None else None
            except Exception as exc:  # noqa: BLE001 - this turn's error; the next turns and symbols go on
                chain.run.errors.append((key, exc))
                continue
            rows = chain.rows.between(start, end)
            pool.submit(
                (symbol, key, champion), fit_symbol_from_bytes, rows, spec, gate_cfg, symbol, champion, champion_file
            )
            return True
        return False

    with Pool(
        workers, expected=total, min_pool_seconds=min_pool_seconds, preload=("alphapulse_assets.training.cadence",)
    ) as pool:
        for chain in chains.values():
            if not submit_next(pool, chain):
                yield chain.run
        for done in pool.results():
            symbol, key, champion = done.key
            chain = chains[symbol]
            chain.run.seconds += done.seconds
            turns += 1
            if done.error is not None:
                registry.keep_champion(symbol, spec.name, reason=f"{spec.name} training failed: {done.error}")
                chain.run.errors.append((key, done.error))
            else:
                try:
                    outcome = record_symbol(
                        registry,
                        done.value,
                        spec,
                        symbol=symbol,
                        partition=key,
                        code_version=code_version,
                        git_revision=git_revision,
                        run_id=run_id,
                        champion=champion,
                    )
                except Exception as exc:  # noqa: BLE001 - this turn's error; the next turns and symbols go on
                    chain.run.errors.append((key, exc))
                else:
                    chain.run.outcomes.append(outcome)
                    if outcome.gate.passed and may_promote(symbol):
                        chain.run.promoted.append(promote(registry, symbol, spec.name, outcome.version.version, key))
            now = time.perf_counter()
            if progress is not None and (now - last_report >= progress_seconds or turns == total):
                last_report = now
                where = f"{pool.workers} worker processes" if pool.started_workers else "this process"
                progress(f"{spec.name}: {turns}/{total} trainings done in {now - started:.1f}s ({where})")
            if not submit_next(pool, chain):
                yield chain.run
