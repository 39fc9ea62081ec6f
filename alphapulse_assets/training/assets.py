"""Retraining cadences as Dagster assets: training sets, per-symbol challengers gated by checks, champions.

For each cadence (nightly / weekly / monthly), every asset is partitioned by the cadence's time partitions (day /
week / month) x the instance's ``symbols`` (dynamic partitions, ``market_data/symbols.py``): the UI shows a
time x symbol grid per asset, and the number of assets does not depend on the symbols.

    candles_* --> training_sets/<cadence> --> models/<cadence> --> champions/<cadence>

- ``training_sets/<cadence>``: features and labels of the run's symbols over the cadence's window;
- ``models/<cadence>``: each symbol's challenger, trained and evaluated out of sample, registered in the
  model registry, with one check, ``promotion_gate`` (its rules reported in it), evaluated per (time, symbol)
  partition in the same step. A failing gate means no champion materialization for that partition: the current
  champion keeps serving; the rejection and its reasons are recorded in the registry and in the check verdict.
  A rejection is the gate doing its job, not a fault: the check is not blocking, so the run still succeeds.
- ``champions/<cadence>``: the challengers that passed their gate, promoted.

A run is a rectangle: a time partition (or a backfill's range) x a contiguous range of the active symbols; by
default one run per cadence partition covers every symbol (``ALPHAPULSE_SCALE__SYMBOLS_PER_RUN`` splits it),
so the per-run overhead is paid once per cadence, not once per symbol. Each symbol's materialization and
verdict land on its own partition (``AssetMaterialization`` / ``AssetCheckEvaluation`` with ``partition=``).
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
from alphapulse_assets.market_data.symbols import multi_key, split_keys, time_by_symbol
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
from alphapulse_assets.training.cadence import SymbolRun, train_symbols
from alphapulse_assets.training.challenger import CadenceSpec, Dataset, cadence_spec, candle_dataset, make_dataset
from alphapulse_assets.training.champion_events import ChampionChangeReporter, champion_change_metadata
from alphapulse_assets.training.display import model_fields
from alphapulse_assets.training.estimators import trusted_type_names
from alphapulse_assets.training.fanout import worker_count
from alphapulse_assets.training.metadata import as_metadata
from alphapulse_assets.training.promotion import GATE_CHECK, GateConfig
from alphapulse_assets.training.registry import ModelRegistry

SETTINGS = get_settings()
CADENCES = ("nightly", "weekly", "monthly")
CODE_VERSION = "training-1"
# An asset backfill over a rectangle of days x symbols runs as one run, each symbol processing its days in order
# (the nightly model is warm-started day after day), so cost grows with days and symbols, not runs. (A multi-run
# policy counts time x symbol partitions, and its chunks of a grid need not be rectangles.)
BACKFILL_POLICY = dg.BackfillPolicy.single_run()

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


def cadence_partitions(name: str) -> dg.MultiPartitionsDefinition:
    """The cadence's time partitions x the instance's symbols: every cadence asset's partitions."""
    return time_by_symbol(partitions_for(name))


def model_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["models", name])


def champion_asset_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["champions", name])


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
    times, symbols = split_keys(context.partition_keys)
    time_partitions = partitions_for(name)
    first = time_partitions.time_window_for_partition_key(times[0])
    start, _ = _training_window(spec, pd.Timestamp(first.end))
    end = pd.Timestamp(time_partitions.time_window_for_partition_key(times[-1]).end)
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
        candles = candles[candles["symbol"].isin(symbols)]
        return make_dataset(candles, spec), days


def build_cadence_assets(name: str) -> list:
    spec = spec_for(name)
    partitions = cadence_partitions(name)
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
        description=f"Features and '{spec.label['name']}' labels per symbol over the {name} window "
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
            for symbol in split_keys(context.partition_keys)[1]:
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
    """models/<cadence> and champions/<cadence> for the run's symbols and time partitions, produced by one step.

    One step for all symbols: Dagster's cost per step (events written to the instance) is most of a
    nightly run's time, and one symbol's work is small. Each (time, symbol) partition still gets its own
    materialization and its own gate verdict, logged with its partition: a symbol whose gate fails gets no
    champion materialization (its current champion keeps serving) while the others are promoted. The check is
    not blocking: the promotion decision is taken here, so a rejection needs no failed step to hold the champion
    back, and a run whose challengers were only rejected succeeds. A symbol whose training raises is recorded as
    "champion kept" and does not stop the others; the step then fails, because something broke.
    """
    models_key, champions_key = model_key(name), champion_asset_key(name)
    time_partitions = partitions_for(name)
    specs = [
        dg.AssetSpec(
            models_key,
            deps=[dg.AssetKey(["training_sets", name])],
            group_name=group,
            kinds={"scikitlearn"},
            tags=tags,
            code_version=CODE_VERSION,
            skippable=True,
            description=f"Each symbol's {name} challenger: trained, evaluated out of sample against naive "
            "baselines and the champion, registered, and gated by its promotion_gate check (per partition).",
        ),
        dg.AssetSpec(
            champions_key,
            deps=[models_key],
            group_name=group,
            kinds={"scikitlearn"},
            tags=tags,
            skippable=True,
            description=f"Each symbol's {name} model in service: a partition is materialized when its challenger "
            "passes the gate and is promoted (or an operator or a rollback changes the champion).",
        ),
    ]
    # Partitioned like its asset: each verdict lands on the (time, symbol) row Dagster planned for it.
    checks = [dg.AssetCheckSpec(GATE_CHECK, asset=models_key, description=GATE_DESCRIPTION, partitions_def=partitions)]

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
            promote_too = champions_key in context.selected_asset_keys
            times, symbols = split_keys(context.partition_keys)
            backfill = len(times) > 1
            failed: list[str] = []
            failed_classes: list[Classification] = []
            transient: list[Exception] = []
            windows = {}  # time key -> (start, end) of its rows, in time order (each turn starts from the last)
            for key in sorted(times):
                end = pd.Timestamp(time_partitions.time_window_for_partition_key(key).end)
                windows[key] = (end - pd.Timedelta(days=spec.window_days), end)
            runs = train_symbols(
                registry,
                dataset,
                spec,
                gate_cfg,
                symbols,
                windows,
                code_version=CODE_VERSION,
                git_revision=GIT_REVISION,
                run_id=context.run_id,
                may_promote=lambda symbol: promote_too,
                workers=worker_count(SETTINGS.scale.workers),
                min_pool_seconds=SETTINGS.scale.min_pool_seconds,
                progress=context.log.info,
            )
            with closing(runs):  # a stop or a failure here stops the worker processes too
                for run in runs:  # in the order the symbols finish
                    for key, exc in run.errors:
                        failure = failure_for(f"training the {name} model for {run.symbol} ({key})", exc)
                        if failure is None:  # transient: finish the others, then let the retry policy act
                            context.log.warning(f"{run.symbol} {key}: {exc}; will be retried")
                            transient.append(exc)
                        else:  # recorded as "champion kept"; the others go on
                            context.log.error(f"{run.symbol} {key}: {failure.description}")
                            failed.append(f"{run.symbol} {key}: {failure.description}")
                            failed_classes.append(classify(exc))
                    for event in run_events(name, run, backfill):
                        context.log_event(event)
            if transient:
                raise transient[0]
            if failed:
                raise dg.Failure(
                    description=f"{len(failed)} training(s) failed; those champions keep serving: "
                    + "; ".join(failed[:10]),
                    allow_retries=False,
                    metadata=classification_metadata(worst(failed_classes)),
                )
        yield from ()  # every event is logged above, with its partition: no output adds a second materialization

    return models


def run_events(name: str, run: SymbolRun, backfill: bool) -> list:
    """Per (time, symbol) partition of one symbol's turns: the model's materialization, its gate verdict, and the
    champion's materialization when it was promoted: what the UI shows on that cell of the grid. Each outcome's
    time partition is the one its version was registered for (``info["partition"]``)."""
    events = []
    promoted = {decision.version: decision for decision, _previous in run.promoted}
    for outcome in run.outcomes:
        partition = multi_key(outcome.version.info["partition"], run.symbol)
        metadata = as_metadata(model_fields(outcome, f"{CODE_VERSION} ({GIT_REVISION})"))
        metadata["artifact"] = dg.MetadataValue.path(outcome.version.uri)
        events.append(dg.AssetMaterialization(asset_key=model_key(name), partition=partition, metadata=metadata))
        events.append(gate_check_result(model_key(name), outcome, backfill, partition=partition))
        decision = promoted.get(outcome.version.version)
        if decision is not None:
            events.append(
                dg.AssetMaterialization(
                    asset_key=champion_asset_key(name),
                    partition=partition,
                    metadata=champion_change_metadata(decision, outcome.version),
                )
            )
    return events


def gate_check_result(
    model_asset: dg.AssetKey, outcome, backfill: bool, *, partition: dg.MultiPartitionKey | str | None = None
) -> dg.AssetCheckEvaluation:
    """The gate's verdict on one challenger, for its (time, symbol) partition: failed rules and their reasons in
    the description, every rule's verdict and figures in the metadata. A hold is a WARN (an operator reviews it),
    and so is a backfill's verdict: it reports, it does not page anyone."""
    gate = outcome.gate
    metadata: dict = {"symbol": outcome.symbol, "version": f"v{outcome.version.version}"}
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
        description = "backfill: " + description
    return dg.AssetCheckEvaluation(
        asset_key=model_asset,
        check_name=GATE_CHECK,
        passed=gate.passed,
        severity=dg.AssetCheckSeverity.WARN if backfill or gate.held else dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata=metadata,
        partition=str(partition) if partition is not None else None,
    )


with known_previews():  # backfill_policy and partitioned gate checks, relied on knowingly
    cadence_assets = {name: build_cadence_assets(name) for name in CADENCES}
