"""Daily drift monitoring per symbol, and the sensor that asks for an out-of-cadence retrain.

``drift`` (daily x symbol partitions: one asset whatever the symbols) compares, per symbol, the newest week of
features, at the reference cadence's bar size, with the training reference stored beside that cadence's champion
in the model registry (PSI and KS per feature). Its ``feature_drift`` check fails, on that (day, symbol)
partition, when any feature is past the thresholds of the design guide (PSI > 0.25 or KS > 0.15). The check does
not block anything: drift is a reason to retrain, and ``drift_retrain_sensor`` turns a failed check into one run
of the retrain cadence for that symbol, at most once per symbol per cooldown.

Every symbol of a run is computed in one step (``drift_lib.drift_by_symbol``): the run lists the candle store
once and reads the week's candles once per day for all its symbols.
"""

import json
import time

import dagster as dg
import pandas as pd

from alphapulse_assets.dagster_previews import known_previews
from alphapulse_assets.market_data.assets import DAILY
from alphapulse_assets.market_data.resources import CandleStoreResource
from alphapulse_assets.market_data.symbols import (
    active_symbols,
    ensure_seeded,
    multi_key,
    range_tags,
    split_keys,
    time_by_symbol,
)
from alphapulse_assets.recovery.gating import gate_run_request
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training import drift as drift_lib
from alphapulse_assets.training.assets import ModelRegistryResource, _candle_asset_for, spec_for
from alphapulse_assets.training.schedules import INGESTION_LAG, JOBS, latest_partition_key

SETTINGS = get_settings()
REFERENCE_CADENCE = "weekly"  # the quick retrain: the model drift should refresh first
RECENT_DAYS = 7
COOLDOWN_SECONDS = 24 * 3600
clock = time.time  # the sensor's clock; tests replace it


DRIFT_KEY = dg.AssetKey(["drift"])
DRIFT_CHECK = "feature_drift"
DRIFT_PARTITIONS = time_by_symbol(DAILY)


def _drift_events(day: str, symbol: str, verdict, champion, has_profile: bool) -> list:
    """The materialization and the check verdict of one (day, symbol) partition."""
    partition = multi_key(day, symbol)
    if verdict.report is None:
        note = f"no {REFERENCE_CADENCE} champion for {symbol} to compare against" if not has_profile else verdict.note
        metadata = {"recent_rows": verdict.recent_rows} if has_profile else {"reference": "no champion yet"}
        passed, severity, check_metadata = True, dg.AssetCheckSeverity.ERROR, {"symbol": symbol}
    else:
        report = verdict.report
        table = pd.DataFrame({"psi": report.psi, "ks": report.ks}).sort_values("psi", ascending=False)
        metadata = {
            "reference_version": champion.version,
            "recent_rows": verdict.recent_rows,
            "max_psi": report.max_psi,
            "max_ks": report.max_ks,
            "per_feature": dg.MetadataValue.md(table.round(4).to_markdown()),
        }
        note = f"max PSI {report.max_psi:.3f}, max KS {report.max_ks:.3f}" + (
            f"; drifted: {', '.join(report.drifted)}" if report.drifted else ""
        )
        passed, severity = report.passed, dg.AssetCheckSeverity.WARN
        check_metadata = {
            "max_psi": report.max_psi,
            "max_ks": report.max_ks,
            "drifted": ", ".join(report.drifted),
            "symbol": symbol,
        }
    return [
        dg.AssetMaterialization(asset_key=DRIFT_KEY, partition=partition, metadata=metadata),
        dg.AssetCheckEvaluation(
            asset_key=DRIFT_KEY,
            check_name=DRIFT_CHECK,
            passed=passed,
            severity=severity,
            description=note,
            metadata=check_metadata,
            partition=str(partition),
        ),
    ]


def _drift_asset():
    spec = spec_for(REFERENCE_CADENCE)
    candle_asset = _candle_asset_for(spec.timeframe)

    # A multi-asset of one skippable asset, subsettable: the step yields no output (each (day, symbol) partition's
    # materialization and verdict are logged with their partition), so Dagster adds no second materialization and
    # requires no output of the asset or of its check.
    @dg.multi_asset(
        name="drift",
        specs=[
            dg.AssetSpec(
                DRIFT_KEY,
                deps=[candle_asset],
                group_name="drift_monitoring",
                kinds={"pandas"},
                skippable=True,
                description=f"Daily feature drift of each symbol against its {REFERENCE_CADENCE} champion's "
                "training data (a day x symbol grid).",
            )
        ],
        check_specs=[
            dg.AssetCheckSpec(
                DRIFT_CHECK,
                asset=DRIFT_KEY,
                partitions_def=DRIFT_PARTITIONS,
                description="No feature's PSI > 0.25 or KS > 0.15 against the champion's "
                "training reference; a failure requests a retrain of that symbol.",
            )
        ],
        partitions_def=DRIFT_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        can_subset=True,
    )
    def drift_asset(
        context: dg.AssetExecutionContext, candle_store: CandleStoreResource, model_registry: ModelRegistryResource
    ):
        registry = model_registry.get()
        days_of_run, symbols = split_keys(context.partition_keys)
        champions = {s: registry.champion(s, REFERENCE_CADENCE) for s in symbols}
        profiles = {s: (c.info.get("reference_profile") if c is not None else None) for s, c in champions.items()}
        store = candle_store.store
        for day in days_of_run:  # usually one; each day's window read once for every symbol of the run
            end = pd.Timestamp(DAILY.time_window_for_partition_key(day).end)
            recent_start = end - pd.Timedelta(days=RECENT_DAYS)
            candles = pd.DataFrame(columns=["symbol", "timestamp"])
            if any(profiles.values()):
                warmup = pd.Timedelta(spec.timeframe.replace("m", "min")) * spec.warmup_bars
                start = (recent_start - warmup).floor("D")
                days = [str(d.date()) for d in pd.date_range(start, end, freq="D", inclusive="left")]
                missing = set(store.missing_days(candle_asset, days))
                days = [d for d in days if d not in missing]
                if days:
                    candles = store.read_days(candle_asset, days)
                    candles = candles[candles["symbol"].isin([s for s, p in profiles.items() if p])]
            verdicts = drift_lib.drift_by_symbol(candles, profiles, spec.features.build, recent_start)
            for symbol in symbols:
                for event in _drift_events(day, symbol, verdicts[symbol], champions[symbol], bool(profiles[symbol])):
                    context.log_event(event)
        yield from ()  # every event is logged above, with its partition

    return drift_asset


with known_previews():  # partitioned checks and backfill_policy, relied on knowingly
    drift_assets = [_drift_asset()]

drift_monitoring_job = dg.define_asset_job(
    "drift_monitoring",
    selection=dg.AssetSelection.assets(*drift_assets),
    partitions_def=DRIFT_PARTITIONS,
    description="Daily feature drift of every symbol against its champion's training reference.",
)


@dg.schedule(
    name="drift_monitoring_schedule",
    job=drift_monitoring_job,
    cron_schedule="30 2 * * *",
    execution_timezone=SETTINGS.timezone,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def drift_monitoring_schedule(context: dg.ScheduleEvaluationContext):
    with dg.partition_loading_context(effective_dt=context.scheduled_execution_time - INGESTION_LAG):
        key = DAILY.get_last_partition_key()
    symbols = ensure_seeded(context.instance)  # read at the tick (the seed on a new instance): symbols are data
    if not symbols:
        return dg.SkipReason("no active symbol: add one with `alphapulse symbols add SYMBOL`")
    return dg.RunRequest(run_key=f"drift:{key}", tags=range_tags(key, key, symbols[0], symbols[-1]))


def retrain_requests(
    failed_symbols: list[str], last_request: dict[str, float], now: float, cooldown: float = COOLDOWN_SECONDS
) -> tuple[list[str], dict[str, float]]:
    """Which symbols get a retrain now: each failed symbol whose last request is older than the cooldown."""
    chosen, updated = [], dict(last_request)
    for symbol in dict.fromkeys(failed_symbols):
        if now - updated.get(symbol, float("-inf")) >= cooldown:
            chosen.append(symbol)
            updated[symbol] = now
    return chosen, updated


@dg.sensor(
    name="drift_retrain_sensor",
    job=JOBS[REFERENCE_CADENCE],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=f"A failed drift check requests one {REFERENCE_CADENCE} retrain of that symbol per cooldown.",
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext):
    state = json.loads(context.cursor) if context.cursor else {"after": None, "last_request": {}}
    records = context.instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=state["after"]),
        ascending=True,
        limit=1000,
    )
    failed = []
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.asset_key == DRIFT_KEY and evaluation.check_name == DRIFT_CHECK and not evaluation.passed:
            symbol = (evaluation.metadata.get("symbol") or dg.MetadataValue.text("")).value or (
                split_keys([evaluation.partition])[1][0] if evaluation.partition else ""
            )
            if symbol:
                failed.append(symbol)
        state["after"] = record.storage_id
    now = clock()
    previous = dict(state["last_request"])
    chosen, state["last_request"] = retrain_requests(failed, state["last_request"], now)
    key = latest_partition_key(REFERENCE_CADENCE, pd.Timestamp(now, unit="s", tz="UTC").to_pydatetime())
    requests, blocked = [], []
    active = set(active_symbols(context.instance))  # a symbol retired since its drift check is not retrained
    if key is not None:
        for symbol in chosen:
            if symbol not in active:
                continue
            request = dg.RunRequest(
                run_key=f"drift-retrain:{symbol}:{int(now)}",
                tags={
                    **range_tags(key, key, symbol, symbol),
                    "alphapulse/trigger": "drift",
                    "alphapulse/symbol": symbol,
                },
            )
            # Retrains go through the training breaker like scheduled runs; a blocked one is asked again later.
            gated = gate_run_request(["training"], request, now)
            if isinstance(gated, dg.SkipReason):
                blocked.append(f"{symbol}: {gated.skip_message}")
                state["last_request"].pop(symbol, None)
                if symbol in previous:
                    state["last_request"][symbol] = previous[symbol]
            else:
                requests.append(gated)
    context.update_cursor(json.dumps(state))
    if not requests:
        skipped = sorted(set(failed) - set(chosen))
        return dg.SkipReason(
            f"{len(failed)} failed drift check(s); "
            + (f"in cooldown: {', '.join(skipped)}; " if skipped else "")
            + (f"blocked: {'; '.join(blocked)}" if blocked else "nothing more to retrain")
        )
    return requests
