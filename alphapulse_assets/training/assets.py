"""Retraining cadences as Dagster assets: training sets, per-symbol challengers gated by checks, champions.

For each cadence (nightly / weekly / monthly), partitioned by day / week / month:

    candles_* --> training_sets/<cadence> --> models/<cadence>/<SYMBOL> --> champions/<cadence>/<SYMBOL>

- ``training_sets/<cadence>``: features and labels for every symbol over the cadence's window;
- ``models/<cadence>/<SYMBOL>``: the challenger, trained and evaluated out of sample, registered in the
  model registry, with one check, ``promotion_gate`` (four rules, each reported in it), evaluated in the same
  step. A failing gate means no champion materialization for that symbol: the current champion keeps serving
  (and stays green); the rejection and its reasons are recorded in the registry and in the check result. A
  rejection is the gate doing its job, not a fault: the check is not blocking, so the run still succeeds.
- ``champions/<cadence>/<SYMBOL>``: promotes the challenger that passed its gate.

One symbol's rejection does not block another's promotion: each symbol has its own steps, all in one
run, so the per-run overhead is paid once per cadence, not once per symbol.
"""

import math
import subprocess
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd

from alphapulse_assets.dagster_previews import known_previews
from alphapulse_assets.market_data.assets import BASE_ASSET, quality_verdicts
from alphapulse_assets.market_data.resources import CandleStoreResource
from alphapulse_assets.market_data.schema import timeframe_to_timedelta
from alphapulse_assets.platform_db import platform_db_url
from alphapulse_assets.recovery.errors import Classification, classify, worst
from alphapulse_assets.recovery.policies import (
    classification_metadata,
    classified_failures,
    failure_for,
    training_retry_policy,
)
from alphapulse_assets.recovery.runs import stop_on_interrupt
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training.cadence import train_symbols
from alphapulse_assets.training.challenger import CadenceSpec, Dataset, cadence_spec, candle_dataset, make_dataset
from alphapulse_assets.training.champion_events import ChampionChangeReporter, champion_change_metadata
from alphapulse_assets.training.display import model_fields
from alphapulse_assets.training.estimators import trusted_type_names
from alphapulse_assets.training.fanout import worker_count
from alphapulse_assets.training.metadata import as_metadata
from alphapulse_assets.training.promotion import GATE_CHECK, GATE_RULES, GateConfig
from alphapulse_assets.training.registry import ModelRegistry

SETTINGS = get_settings()
CADENCES = ("nightly", "weekly", "monthly")
CODE_VERSION = "training-1"
# A backfill of a year of nightly partitions runs as a few runs of up to 92 days, each processing its days in
# order (the nightly model is warm-started day after day), so cost grows with the days, not the runs.
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=92)

# The promotion gate is one check per challenger, its four rules reported inside it (pass/fail,
# reason and figures per rule in the check's metadata). Four checks per symbol cost Dagster four planned
# and four evaluation events each: three quarters of a nightly run's events for no extra decision.
GATE_DESCRIPTION = (
    "Promotion gate, every rule must pass: enough_validation_samples (enough out-of-sample rows to judge); "
    "beats_baselines (significantly lower out-of-sample log loss than the base-rate and persistence baselines, "
    "paired moving-block bootstrap); not_worse_than_champion (within a tolerance, on rows neither model has seen); "
    "feature_drift (PSI and KS of the stationary features between the training window and the newest rows); "
    "plausible (not too good for its market: AUC, baseline AUC and log-loss edge within bounds; a challenger "
    "failing only this rule is held for review, not rejected)."
)


def _git_revision() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=Path(__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or "unknown"
        )
    except Exception:
        return "unknown"


GIT_REVISION = _git_revision()


class ModelRegistryResource(dg.ConfigurableResource):
    """Where model artifacts (the shared store) and the registry tables (the platform database) live."""

    artifact_root: str | None = None  # default: the store's models URL (settings.store_url("models"))
    db_url: str | None = None

    def get(self, instance: dg.DagsterInstance | None = None) -> ModelRegistry:
        """The registry; with ``instance``, champion changes show on the champion assets of that instance."""
        url = self.db_url or platform_db_url()
        return ModelRegistry(
            self.artifact_root or get_settings().store_url("models"),
            url,
            on_change=ChampionChangeReporter(instance, url),
            trusted_types=configured_trusted_types(),
        )


def configured_trusted_types() -> tuple[str, ...]:
    """The estimator classes configured by dotted path: the registry trusts them when saving and loading."""
    settings = get_settings()
    return trusted_type_names({c: getattr(settings, c).estimator or "" for c in CADENCES})


def spec_for(name: str) -> CadenceSpec:
    """The cadence as configured (``challenger.cadence_spec``): bars, window, costs, calendar, the feature set
    (user features too) and the estimator."""
    return cadence_spec(name, get_settings())


def gate_config(name: str) -> GateConfig:
    return GateConfig(
        **get_settings().gate.model_dump(), min_validation_samples=getattr(get_settings(), name).min_validation_samples
    )


def _first_partition_day(name: str):
    """Partitions start once the cadence's window (and feature warm-up) fits after the first candle day."""
    spec = spec_for(name)
    warmup_days = math.ceil(spec.warmup_bars * timeframe_to_timedelta(spec.timeframe) / pd.Timedelta(days=1))
    return SETTINGS.start_date + timedelta(days=spec.window_days + warmup_days)


def partitions_for(name: str) -> dg.PartitionsDefinition:
    first = _first_partition_day(name)
    if name == "nightly":
        return dg.DailyPartitionsDefinition(start_date=first.isoformat(), timezone="UTC")
    if name == "weekly":
        first = first + timedelta(days=(6 - first.weekday()) % 7)  # weeks start on Sunday
        return dg.WeeklyPartitionsDefinition(start_date=first.isoformat(), timezone="UTC")
    first = (first.replace(day=1) + timedelta(days=32)).replace(day=1)
    return dg.MonthlyPartitionsDefinition(start_date=first.isoformat(), timezone="UTC")


def _training_window(spec: CadenceSpec, window_end: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    warmup = spec.warmup_bars * timeframe_to_timedelta(spec.timeframe)
    start = (window_end - pd.Timedelta(days=spec.window_days) - warmup).floor("D")
    return start, window_end


def _candle_asset_for(timeframe: str) -> str:
    return candle_dataset(timeframe)


def _build_training_set(
    context, candle_store: CandleStoreResource, name: str, spec: CadenceSpec, candle_asset: str
) -> tuple[Dataset, list[str]]:
    # A backfill run covers a range of partitions: its data starts where the first partition's window starts.
    first = partitions_for(name).time_window_for_partition_key(context.partition_keys[0])
    start, _ = _training_window(spec, pd.Timestamp(first.end))
    end = pd.Timestamp(context.partition_time_window.end)
    days = [str(d.date()) for d in pd.date_range(start, end, freq="D", inclusive="left")]
    store = candle_store.store
    missing = store.missing_days(candle_asset, days)
    if missing:
        raise dg.Failure(
            description=f"{len(missing)} day(s) of {candle_asset} are missing for the {name} window "
            f"{days[0]}..{days[-1]} (first {missing[0]}, last {missing[-1]}); "
            f"run: alphapulse ingest --start {missing[0]} --end {missing[-1]}",
            metadata={"error_class": "permanent", "missing_days": len(missing)},
            allow_retries=False,
        )
    # Every cadence reads days whose base bars passed every blocking check (1h / 4h bars are made from them).
    refused = quality_verdicts(context.instance, days)
    if refused:
        raise dg.Failure(
            description=f"{len(refused)} day(s) of the {name} window {days[0]}..{days[-1]} did not pass the blocking "
            f"quality checks of {BASE_ASSET}: "
            + "; ".join(str(v) for v in refused[:10])
            + ("; ..." if len(refused) > 10 else "")
            + f". Fix the source and re-ingest: alphapulse ingest --start {refused[0].day} --end {refused[-1].day}",
            metadata={"error_class": "permanent", "refused_days": [v.day for v in refused]},
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
        backfill_policy=BACKFILL_POLICY,
        deps=[candle_asset],
        io_manager_key="training_set_io_manager",
        group_name=group,
        kinds={"pandas", "parquet"},
        tags=tags,
        code_version=CODE_VERSION,
        description=f"Features and '{spec.label['name']}' labels for every symbol over the {name} window "
        f"({spec.window_days} days of {spec.timeframe} bars, plus feature warm-up).",
    )
    @stop_on_interrupt
    def training_set(
        context: dg.AssetExecutionContext, candle_store: CandleStoreResource, model_registry: ModelRegistryResource
    ) -> dg.Output:
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
        return dg.Output(
            frame,
            metadata={
                "rows": len(frame),
                "symbols": len(per_symbol),
                "window": f"{days[0]}..{days[-1]}",
                "label": str(spec.label),
                "features": ", ".join(spec.features.names),
                "positive_rate": float(frame["label"].mean()) if len(frame) else float("nan"),
                "rows_per_symbol": dg.MetadataValue.md(
                    per_symbol.rename(columns={"size": "rows", "mean": "positive rate"}).to_markdown()
                ),
            },
        )

    return [training_set, _models_step(name, spec, partitions, gate_cfg, group, tags)]


def training_queue_tag() -> dict[str, str]:
    """With the Celery executor, the Celery queue the training steps go to (ALPHAPULSE_CELERY__TRAINING_QUEUE), so
    that only the workers meant for training take them; unset, they go to the same queue as every other step.
    The tag is dagster-celery's (``dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG``; the extra is optional)."""
    queue = get_settings().celery.training_queue
    return {"dagster-celery/queue": queue} if queue else {}


def _models_step(name, spec, partitions, gate_cfg, group, tags):
    """models/<cadence>/<SYMBOL> and champions/<cadence>/<SYMBOL> for every symbol, produced by one step.

    One step for all symbols: Dagster's cost per step (events written to the instance) is most of a
    nightly run's time, and one symbol's work is small. Each symbol is still its own pair of assets with
    its own gate check: a symbol whose gate fails gets no champion materialization (the champion output is
    optional; its current champion keeps serving) while the others are promoted. The check is not blocking:
    the promotion decision is taken here, so a rejection needs no failed step to hold the champion back, and
    a run whose challengers were only rejected succeeds. A symbol whose training raises is recorded as
    "champion kept" and does not stop the others; the step then fails, because something broke.
    """

    def keys(symbol):
        return dg.AssetKey(["models", name, symbol]), dg.AssetKey(["champions", name, symbol])

    specs, checks = [], []
    for symbol in SETTINGS.symbols:
        model_key, champion_key = keys(symbol)
        asset_tags = {**tags, "alphapulse/symbol": symbol}
        specs += [
            dg.AssetSpec(
                model_key,
                deps=[dg.AssetKey(["training_sets", name])],
                group_name=group,
                kinds={"scikitlearn"},
                tags=asset_tags,
                code_version=CODE_VERSION,
                skippable=True,
                description=f"{symbol} {name} challenger: trained, evaluated out of sample against naive "
                "baselines and the champion, registered, and gated by its promotion_gate check.",
            ),
            dg.AssetSpec(
                champion_key,
                deps=[model_key],
                group_name=group,
                kinds={"scikitlearn"},
                tags=asset_tags,
                skippable=True,
                description=f"The {symbol} {name} model in service: materialized when a challenger passes "
                "its gate and is promoted.",
            ),
        ]
        # Partitioned like its asset: the verdict lands on the row Dagster planned for the run's partition
        # (without it, each run leaves a planned row behind, shown as a stray "skipped"/"execution failed").
        checks.append(
            dg.AssetCheckSpec(GATE_CHECK, asset=model_key, description=GATE_DESCRIPTION, partitions_def=partitions)
        )

    @dg.multi_asset(
        name=f"{name}_models",
        specs=specs,
        check_specs=checks,
        ins={"training_set": dg.AssetIn(["training_sets", name], input_manager_key="training_set_io_manager")},
        partitions_def=partitions,
        backfill_policy=BACKFILL_POLICY,
        retry_policy=training_retry_policy(),
        pool="training",
        can_subset=True,
        op_tags={**tags, **training_queue_tag()},
    )
    @stop_on_interrupt  # a SIGTERM / Ctrl-C stops the run; it is not retried
    def models(context: dg.AssetExecutionContext, training_set: pd.DataFrame, model_registry: ModelRegistryResource):
        # Permanent and system errors anywhere in the step fail it at once; transient ones are retried.
        with classified_failures(f"the {name} models step"):
            registry = model_registry.get(context.instance)
            dataset = Dataset.from_frame(training_set)
            selected = context.selected_asset_keys
            partition_keys = context.partition_keys
            backfill = len(partition_keys) > 1
            failed: list[str] = []
            failed_classes: list[Classification] = []
            transient: list[Exception] = []
            windows = {
                key: (pd.Timestamp(w.end) - pd.Timedelta(days=spec.window_days), pd.Timestamp(w.end))
                for key, w in ((k, partitions.time_window_for_partition_key(k)) for k in partition_keys)
            }
            runs = train_symbols(
                registry,
                dataset,
                spec,
                gate_cfg,
                [s for s in SETTINGS.symbols if keys(s)[0] in selected],
                windows,
                code_version=CODE_VERSION,
                git_revision=GIT_REVISION,
                run_id=context.run_id,
                may_promote=lambda s: keys(s)[1] in selected,
                workers=worker_count(SETTINGS.scale.workers),
                min_pool_seconds=SETTINGS.scale.min_pool_seconds,
                progress=context.log.info,
            )
            with closing(runs):  # a stop or a failure here stops the worker processes too
                for run in runs:  # in the order the symbols finish
                    yield from _symbol_events(context, name, run, backfill, failed, failed_classes, transient)
            if transient:
                raise transient[0]
            if failed:
                raise dg.Failure(
                    description=f"{len(failed)} training(s) failed; those champions keep serving: "
                    + "; ".join(failed[:10]),
                    allow_retries=False,
                    metadata=classification_metadata(worst(failed_classes)),
                )

    return models


def _symbol_events(context, name: str, run, backfill: bool, failed: list, failed_classes: list, transient: list):
    """One symbol's events (its model and gate check, its champion when promoted); its failed turns noted
    in ``failed`` (permanent and system errors, with their classes) or ``transient`` (retried by the policy)."""
    symbol = run.symbol
    model_key, champion_key = dg.AssetKey(["models", name, symbol]), dg.AssetKey(["champions", name, symbol])
    for key, exc in run.errors:
        failure = failure_for(f"training the {name} model for {symbol} ({key})", exc)
        if failure is None:  # transient: finish the others, then let the retry policy act
            context.log.warning(f"{symbol} {key}: {exc}; will be retried")
            transient.append(exc)
        else:  # recorded as "champion kept"; the others go on
            context.log.error(f"{symbol} {key}: {failure.description}")
            failed.append(f"{symbol} {key}: {failure.description}")
            failed_classes.append(classify(exc))
    if not run.outcomes:
        return
    outcomes, promoted = run.outcomes, run.promoted
    last = outcomes[-1]
    metadata = as_metadata(model_fields(last, f"{CODE_VERSION} ({GIT_REVISION})"))
    metadata["artifact"] = dg.MetadataValue.path(last.version.uri)
    if backfill:
        metadata.update(
            {
                "backfill_days": len(outcomes),
                "promoted_days": len(promoted),
                "versions": f"v{outcomes[0].version.version}..v{last.version.version}",
            }
        )
    yield dg.MaterializeResult(asset_key=model_key, metadata=metadata)
    yield gate_check_result(model_key, outcomes, backfill)
    if promoted:
        decision, _previous = promoted[-1]
        yield dg.MaterializeResult(
            asset_key=champion_key,
            metadata=champion_change_metadata(
                decision,
                next(o.version for o in outcomes if o.version.version == decision.version),
                promotions_in_run=len(promoted),
            ),
        )


def gate_check_result(model_key: dg.AssetKey, outcomes: list, backfill: bool) -> dg.AssetCheckResult:
    """The gate's verdict on the newest challenger: failed rules and their reasons in the description, every
    rule's verdict and figures in the metadata. A backfill reports (WARN), it does not block: its decisions
    were taken day by day, and the description says on how many days each rule passed."""
    gate = outcomes[-1].gate
    metadata: dict = {}
    for rule in gate.rules:
        metadata[rule.rule] = "passed" if rule.passed else "FAILED: " + rule.description
        for key, value in rule.metadata.items():
            metadata[f"{rule.rule}.{key}"] = value if isinstance(value, (int, float, str)) else str(value)
    if gate.passed:
        description = f"passed all {len(gate.rules)} rules"
    elif gate.held:  # not a fault: an operator reviews it (alphapulse models approve)
        description = "held for review: " + gate.reason
    else:
        description = "rejected: " + gate.reason
    if backfill:
        per_rule = ", ".join(
            f"{rule} {sum(1 for o in outcomes for r in o.gate.rules if r.rule == rule and r.passed)}/{len(outcomes)}"
            for rule in GATE_RULES
        )
        description = f"backfill, days passed per rule: {per_rule}; last day {description}"
        metadata["promoted_days"] = sum(1 for o in outcomes if o.gate.passed)
        metadata["held_days"] = sum(1 for o in outcomes if o.gate.held)
    return dg.AssetCheckResult(
        asset_key=model_key,
        check_name=GATE_CHECK,
        passed=gate.passed,
        severity=dg.AssetCheckSeverity.WARN if backfill or gate.held else dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata=metadata,
    )


with known_previews():  # backfill_policy and partitioned gate checks, relied on knowingly
    cadence_assets = {name: build_cadence_assets(name) for name in CADENCES}
