"""Retraining cadences as Dagster assets: training sets, per-symbol challengers gated by checks, champions.

For each cadence (nightly / weekly / monthly), partitioned by day / week / month:

    candles_* --> training_sets/<cadence> --> models/<cadence>/<SYMBOL> --> champions/<cadence>/<SYMBOL>

- ``training_sets/<cadence>``: features and labels for every symbol over the cadence's window;
- ``models/<cadence>/<SYMBOL>``: the challenger, trained and evaluated out of sample, registered in the
  model registry, with four blocking checks (the promotion gate). A failing gate fails this step, so
  the champion step below it does not run and the current champion keeps serving; the rejection and
  its reasons are recorded in the registry and in the check results.
- ``champions/<cadence>/<SYMBOL>``: promotes the challenger that passed its gate.

One symbol's rejection does not block another's promotion: each symbol has its own steps, all in one
run, so the per-run overhead is paid once per cadence, not once per symbol.
"""

import math
import subprocess
from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from alphapulse_assets.features.indicators import FEATURE_NAMES, MAX_LOOKBACK
from alphapulse_assets.market_data.resources import CandleStoreResource
from alphapulse_assets.market_data.resample import resample_candles
from alphapulse_assets.market_data.schema import timeframe_to_timedelta
from alphapulse_assets.platform_db import platform_db_url
from alphapulse_assets.recovery.errors import DataValidationError
from alphapulse_assets.recovery.policies import classified_failures, training_retry_policy
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training import drift as drift_lib
from alphapulse_assets.training.evaluation import classification_metrics
from alphapulse_assets.training.pipeline import (
    DEFAULT_SPECS,
    CadenceSpec,
    Dataset,
    make_dataset,
    naive_utc,
    predict_dataset,
    train_challenger,
)
from alphapulse_assets.training.promotion import (
    DRIFT_GATE_FEATURES,
    GATE_RULES,
    GateConfig,
    compare_with_champion,
    evaluate_gate,
    rollback_needed,
)
from alphapulse_assets.training.registry import ModelRegistry

SETTINGS = get_settings()
CODE_VERSION = "training-1"

GATE_DESCRIPTIONS = {
    "enough_validation_samples": "Enough out-of-sample rows to judge the challenger.",
    "beats_baselines": "Significantly lower out-of-sample log loss than the base-rate and persistence baselines "
                       "(paired moving-block bootstrap).",
    "not_worse_than_champion": "No worse than the current champion, beyond a tolerance, on rows neither has seen.",
    "feature_drift": "Feature PSI and KS between the training window and the newest rows below threshold.",
}


def _git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=5).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


GIT_REVISION = _git_revision()


class ModelRegistryResource(dg.ConfigurableResource):
    """Where model artifacts and the registry tables live (defaults beside the local instance)."""

    artifact_root: str = str(SETTINGS.home / "models")
    db_url: str | None = None

    def get(self) -> ModelRegistry:
        return ModelRegistry(self.artifact_root, self.db_url or platform_db_url())


def _cadence_settings(name: str):
    return getattr(SETTINGS, name)


def spec_for(name: str) -> CadenceSpec:
    base = DEFAULT_SPECS[name]
    cfg = _cadence_settings(name)
    return CadenceSpec(**{**base.__dict__, "timeframe": cfg.timeframe, "window_days": cfg.window_days})


def gate_config(name: str) -> GateConfig:
    return GateConfig(min_validation_samples=_cadence_settings(name).min_validation_samples)


def _first_partition_day(name: str):
    """Partitions start once the cadence's window (and feature warm-up) fits after the first candle day."""
    spec = spec_for(name)
    warmup_days = math.ceil(spec.warmup_bars * timeframe_to_timedelta(spec.timeframe) / pd.Timedelta(days=1))
    return SETTINGS.start_date + timedelta(days=spec.window_days + warmup_days)


def partitions_for(name: str) -> dg.PartitionsDefinition:
    first = _first_partition_day(name)
    if name == "nightly":
        return dg.DailyPartitionsDefinition(start_date=first.isoformat(), timezone=SETTINGS.timezone)
    if name == "weekly":
        first = first + timedelta(days=(6 - first.weekday()) % 7)  # weeks start on Sunday
        return dg.WeeklyPartitionsDefinition(start_date=first.isoformat(), timezone=SETTINGS.timezone)
    first = (first.replace(day=1) + timedelta(days=32)).replace(day=1)
    return dg.MonthlyPartitionsDefinition(start_date=first.isoformat(), timezone=SETTINGS.timezone)


def _training_window(spec: CadenceSpec, window_end: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    warmup = spec.warmup_bars * timeframe_to_timedelta(spec.timeframe)
    start = (window_end - pd.Timedelta(days=spec.window_days) - warmup).floor("D")
    return start, window_end


def _candle_asset_for(timeframe: str) -> str:
    return {"1h": "candles_1h", "4h": "candles_4h"}.get(timeframe, "market_candles")


def _build_training_set(context, candle_store: CandleStoreResource, name: str, spec: CadenceSpec,
                        candle_asset: str) -> tuple[Dataset, list[str]]:
    window = context.partition_time_window
    start, end = _training_window(spec, pd.Timestamp(window.end))
    days = [str(d.date()) for d in pd.date_range(start, end, freq="D", inclusive="left")]
    store = candle_store.store
    missing = [d for d in days if not store.exists(candle_asset, d)]
    if missing:
        raise dg.Failure(
            description=f"{len(missing)} day(s) of {candle_asset} are missing for the {name} window "
                        f"{days[0]}..{days[-1]} (first {missing[0]}, last {missing[-1]}); "
                        f"run: alphapulse ingest --start {missing[0]} --end {missing[-1]}",
            metadata={"error_class": "permanent", "missing_days": len(missing)},
            allow_retries=False,
        )
    with classified_failures(f"building the {name} training set"):
        candles = store.read_days(candle_asset, days)
        candles = candles[candles["symbol"].isin(SETTINGS.symbols)]
        return make_dataset(candles, spec), days


def build_cadence_assets(name: str) -> list:
    spec = spec_for(name)
    partitions = partitions_for(name)
    gate_cfg = gate_config(name)
    group = f"{name}_cadence"
    candle_asset = _candle_asset_for(spec.timeframe)
    tags = {"alphapulse/cadence": name, "alphapulse/dependency": "training"}

    @dg.asset(
        key=["training_sets", name],
        partitions_def=partitions,
        deps=[candle_asset],
        io_manager_key="training_set_io_manager",
        group_name=group,
        kinds={"pandas", "parquet"},
        tags=tags,
        code_version=CODE_VERSION,
        description=f"Features and '{spec.label['name']}' labels for every symbol over the {name} window "
                    f"({spec.window_days} days of {spec.timeframe} bars, plus feature warm-up).",
    )
    def training_set(context: dg.AssetExecutionContext, candle_store: CandleStoreResource,
                     model_registry: ModelRegistryResource) -> dg.Output:
        try:
            ds, days = _build_training_set(context, candle_store, name, spec, candle_asset)
        except Exception as exc:
            # The whole cadence fails for every symbol: each champion keeps serving, and that is recorded.
            registry = model_registry.get()
            for symbol in SETTINGS.symbols:
                registry.keep_champion(symbol, name, reason=f"{name} training set failed: {exc}")
            raise
        frame = ds.to_frame()
        per_symbol = frame.groupby("symbol")["label"].agg(["size", "mean"])
        return dg.Output(frame, metadata={
            "rows": len(frame),
            "symbols": len(per_symbol),
            "window": f"{days[0]}..{days[-1]}",
            "label": str(spec.label),
            "features": ", ".join(FEATURE_NAMES),
            "positive_rate": float(frame["label"].mean()) if len(frame) else float("nan"),
            "rows_per_symbol": dg.MetadataValue.md(per_symbol.rename(columns={"size": "rows", "mean": "positive rate"}).to_markdown()),
        })

    model_assets = [_model_asset(name, spec, partitions, gate_cfg, symbol, group, tags) for symbol in SETTINGS.symbols]
    champion_assets = [_champion_asset(name, partitions, symbol, group, tags) for symbol in SETTINGS.symbols]
    return [training_set, *model_assets, *champion_assets]


def _flat_metrics(report) -> dict[str, float]:
    out = {}
    for key in ("log_loss", "brier", "auc", "accuracy", "precision", "recall", "f1", "sharpe"):
        value = report.model.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[f"model_{key}"] = float(value)
    for baseline, metrics in report.baselines.items():
        value = metrics.get("log_loss")
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[f"{baseline}_log_loss"] = float(value)
    return out


def _model_asset(name, spec, partitions, gate_cfg, symbol, group, tags):
    @dg.asset(
        key=["models", name, symbol],
        partitions_def=partitions,
        ins={"training_set": dg.AssetIn(["training_sets", name], input_manager_key="training_set_io_manager")},
        check_specs=[dg.AssetCheckSpec(rule, asset=["models", name, symbol], blocking=True,
                                       description=GATE_DESCRIPTIONS[rule]) for rule in GATE_RULES],
        retry_policy=training_retry_policy(),
        pool="training",
        group_name=group,
        kinds={"scikitlearn"},
        tags={**tags, "alphapulse/symbol": symbol},
        code_version=CODE_VERSION,
        description=f"{symbol} {name} challenger: trained, evaluated out of sample against naive baselines and the "
                    "champion, registered in the model registry, and gated by blocking checks.",
    )
    def model(context: dg.AssetExecutionContext, training_set: pd.DataFrame, model_registry: ModelRegistryResource):
        registry = model_registry.get()
        champion = registry.champion(symbol, name)
        try:
            with classified_failures(f"training the {name} model for {symbol}"):
                ds = Dataset.from_frame(training_set).for_symbol(symbol)
                warm = registry.load(champion) if (champion and spec.estimator == "sgd") else None
                warm_end = pd.Timestamp(champion.info["data_end"]) if warm is not None else None
                challenger = train_challenger(ds, spec, symbol=symbol, warm_model=warm,
                                              warm_version=champion.version if warm is not None else None,
                                              warm_data_end=warm_end)
        except Exception as exc:
            # Graceful degradation: the champion keeps serving, and that is recorded.
            registry.keep_champion(symbol, name, reason=f"{name} training failed: {exc}")
            raise

        oos_start = pd.Timestamp(challenger.oos["timestamp"].min(), tz="UTC")
        newest = ds.since(oos_start)  # the last out-of-sample rows: recent data for drift
        comparison, realized, rollback = None, None, None
        if champion is not None:
            champion_model = registry.load(champion)
            unseen = ds.since(pd.Timestamp(champion.info["data_end"]) + pd.Timedelta(1)) if "data_end" in champion.info else newest
            unseen_ts = naive_utc(unseen.timestamps)
            mask = np.isin(unseen_ts, challenger.oos["timestamp"].to_numpy())
            oos_by_ts = challenger.oos.set_index("timestamp")["proba"]
            if mask.any():
                ts = unseen_ts[mask]
                comparison = compare_with_champion(unseen.y[mask], oos_by_ts.loc[ts].to_numpy(),
                                                   champion_model.predict_proba(unseen.X.to_numpy()[mask])[:, 1],
                                                   champion.version)
            if len(unseen):
                realized = classification_metrics(unseen.y, predict_dataset(champion_model, unseen))
                needed, text = rollback_needed(champion.info.get("metrics", {}), realized, gate_cfg)
                if needed:
                    try:
                        decision = registry.rollback(symbol, name, reason=f"automatic: {text}", by="auto-rollback")
                        rollback = f"rolled back v{champion.version} -> v{decision.version}: {text}"
                        context.log.warning(f"{symbol} {name}: {rollback}")
                        champion = registry.champion(symbol, name)
                    except Exception as exc:  # no earlier champion: keep serving and say so
                        rollback = f"rollback wanted but not possible ({exc}): {text}"
                        context.log.warning(f"{symbol} {name}: {rollback}")

        # Drift: the window's newest quarter against the rest of it (large enough that KS is not noise).
        gated = list(DRIFT_GATE_FEATURES)
        recent_start = ds.timestamps.min() + 0.75 * (ds.timestamps.max() - ds.timestamps.min())
        is_recent = (ds.timestamps >= recent_start).to_numpy()
        drift = None
        if (~is_recent).sum() >= 50 and is_recent.sum() >= 50:
            profile = drift_lib.reference_profile(ds.X.loc[~is_recent, gated])
            drift = drift_lib.drift_report(profile, ds.X.loc[is_recent, gated], psi_threshold=gate_cfg.psi_threshold,
                                           ks_threshold=gate_cfg.ks_threshold)
        reference = drift_lib.reference_profile(ds.X)

        report = challenger.report
        gate = evaluate_gate(
            n_validation=challenger.n_validation,
            model_log_loss=float(report.model["log_loss"]),
            baseline_log_loss={k: float(v["log_loss"]) for k, v in report.baselines.items()},
            significance=challenger.significance,
            champion=comparison,
            drift=drift,
            cfg=gate_cfg,
        )
        metrics = {k: v for k, v in report.model.items() if isinstance(v, (int, float))}
        version = registry.register(symbol, name, challenger.model, info={
            "metrics": metrics,
            "baselines": {k: {m: v for m, v in d.items() if isinstance(v, (int, float))} for k, d in report.baselines.items()},
            "params": challenger.params,
            "data_start": str(challenger.data_start), "data_end": str(challenger.data_end),
            "features": list(FEATURE_NAMES),
            "partition": context.partition_key,
            "code_version": CODE_VERSION, "git": GIT_REVISION,
            "gate_passed": gate.passed, "gate_reason": gate.reason,
            "reference_profile": reference,
            "n_validation": challenger.n_validation,
        })
        if not gate.passed:
            registry.reject(version, reason=gate.reason)
            context.log.info(f"{symbol} {name}: challenger v{version.version} rejected ({gate.reason}); "
                             f"champion {'v%d' % champion.version if champion else '(none)'} keeps serving")
        yield dg.Output(
            {"symbol": symbol, "cadence": name, "version": version.version, "gate_passed": gate.passed},
            metadata={
                **_flat_metrics(report),
                "version": version.version,
                "artifact": dg.MetadataValue.path(version.uri),
                "sha256": version.sha256,
                "params": {k: str(v) for k, v in challenger.params.items()},
                "data_window": f"{challenger.data_start} .. {challenger.data_end}",
                "n_train": challenger.n_train,
                "n_validation": challenger.n_validation,
                "features": ", ".join(FEATURE_NAMES),
                "code_version": f"{CODE_VERSION} ({GIT_REVISION})",
                "warm_started_from": challenger.warm_started_from if challenger.warm_started_from is not None else -1,
                "champion_before": champion.version if champion else -1,
                "gate": "passed" if gate.passed else f"rejected: {gate.reason}",
                "auto_rollback": rollback or "none",
                "champion_realized": {k: v for k, v in (realized or {}).items() if isinstance(v, (int, float))},
                **({"search_scores": challenger.search_scores} if challenger.search_scores else {}),
            },
        )
        for rule in gate.rules:
            yield dg.AssetCheckResult(check_name=rule.rule, passed=rule.passed, description=rule.description,
                                      metadata={k: (v if isinstance(v, (int, float, str)) else str(v))
                                                for k, v in rule.metadata.items()})

    return model


def _champion_asset(name, partitions, symbol, group, tags):
    @dg.asset(
        key=["champions", name, symbol],
        partitions_def=partitions,
        ins={"challenger": dg.AssetIn(["models", name, symbol])},
        group_name=group,
        kinds={"scikitlearn"},
        tags={**tags, "alphapulse/symbol": symbol},
        description=f"The {symbol} {name} model in service. Materialized only when a challenger passes its gate.",
    )
    def champion(context: dg.AssetExecutionContext, challenger: dict, model_registry: ModelRegistryResource):
        registry = model_registry.get()
        version = registry.get(symbol, name, challenger["version"])
        registry.load(version)  # never promote a file that fails its digest check
        previous = registry.champion(symbol, name)
        decision = registry.promote(version, reason=f"passed the {name} gate ({context.partition_key})")
        metrics = version.info.get("metrics", {})
        return dg.Output(
            {"symbol": symbol, "cadence": name, "version": version.version},
            metadata={"version": version.version, "previous_version": previous.version if previous else -1,
                      "promoted_at": decision.at.isoformat(),
                      **{f"model_{k}": float(v) for k, v in metrics.items() if k in ("log_loss", "auc", "f1", "accuracy")}},
        )

    return champion


CADENCES = ("nightly", "weekly", "monthly")
cadence_assets = {name: build_cadence_assets(name) for name in CADENCES}
