"""Daily drift monitoring per symbol, and the sensor that asks for an out-of-cadence retrain.

``drift/<SYMBOL>`` (daily partitions) compares the newest week of features, at the reference cadence's bar
size, with the training reference stored beside that cadence's champion in the model registry (PSI and
KS per feature). Its ``feature_drift`` check fails when any feature is past the thresholds of the design
guide (PSI > 0.25 or KS > 0.15). The check does not block anything: drift is a reason to retrain, and
``drift_retrain_sensor`` turns a failed check into one run of the retrain cadence for that symbol, at most
once per symbol per cooldown.

Every symbol's drift is computed in one step (``drift_lib.drift_by_symbol``): the run lists the candle store
once and reads the week's candles once for all symbols.
"""

import json
import time

import dagster as dg
import pandas as pd

from alphapulse_assets.market_data.assets import DAILY
from alphapulse_assets.market_data.resources import CandleStoreResource
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


def drift_key(symbol: str) -> dg.AssetKey:
    return dg.AssetKey(["drift", symbol])


def _drift_assets(symbols: list[str]):
    """One step for every symbol's ``drift/<SYMBOL>``: the candles are read once per run, not once per symbol."""
    spec = spec_for(REFERENCE_CADENCE)
    candle_asset = _candle_asset_for(spec.timeframe)

    @dg.multi_asset(
        name="drift",
        specs=[
            dg.AssetSpec(
                drift_key(symbol),
                deps=[candle_asset],
                group_name="drift_monitoring",
                kinds={"pandas"},
                tags={"alphapulse/symbol": symbol},
                skippable=True,
                description=f"Daily feature drift of {symbol} against the {REFERENCE_CADENCE} champion's "
                "training data.",
            )
            for symbol in symbols
        ],
        check_specs=[
            dg.AssetCheckSpec(
                "feature_drift",
                asset=drift_key(symbol),
                description="No feature's PSI > 0.25 or KS > 0.15 against the champion's "
                "training reference; a failure requests a retrain.",
            )
            for symbol in symbols
        ],
        partitions_def=DAILY,
        can_subset=True,
    )
    def drift_assets(
        context: dg.AssetExecutionContext, candle_store: CandleStoreResource, model_registry: ModelRegistryResource
    ):
        registry = model_registry.get()
        selected = [s for s in symbols if drift_key(s) in context.selected_asset_keys]
        champions = {s: registry.champion(s, REFERENCE_CADENCE) for s in selected}
        profiles = {s: (c.info.get("reference_profile") if c is not None else None) for s, c in champions.items()}
        end = pd.Timestamp(context.partition_time_window.end)
        recent_start = end - pd.Timedelta(days=RECENT_DAYS)
        candles = pd.DataFrame(columns=["symbol", "timestamp"])
        if any(profiles.values()):  # one listing and one read for every symbol of the run
            warmup = pd.Timedelta(spec.timeframe.replace("m", "min")) * spec.warmup_bars
            start = (recent_start - warmup).floor("D")
            days = [str(d.date()) for d in pd.date_range(start, end, freq="D", inclusive="left")]
            store = candle_store.store
            missing = set(store.missing_days(candle_asset, days))
            days = [d for d in days if d not in missing]
            if days:
                candles = store.read_days(candle_asset, days)
                candles = candles[candles["symbol"].isin([s for s, p in profiles.items() if p])]
        verdicts = drift_lib.drift_by_symbol(candles, profiles, spec.features.build, recent_start)
        for symbol in selected:
            verdict, champion = verdicts[symbol], champions[symbol]
            key = drift_key(symbol)
            if verdict.report is None:
                note = (
                    f"no {REFERENCE_CADENCE} champion for {symbol} to compare against"
                    if not profiles[symbol]
                    else verdict.note
                )
                metadata = (
                    {"recent_rows": verdict.recent_rows} if profiles[symbol] else {"reference": "no champion yet"}
                )
                yield dg.MaterializeResult(asset_key=key, metadata=metadata)
                yield dg.AssetCheckResult(asset_key=key, check_name="feature_drift", passed=True, description=note)
                continue
            report = verdict.report
            table = pd.DataFrame({"psi": report.psi, "ks": report.ks}).sort_values("psi", ascending=False)
            yield dg.MaterializeResult(
                asset_key=key,
                metadata={
                    "reference_version": champion.version,
                    "recent_rows": verdict.recent_rows,
                    "max_psi": report.max_psi,
                    "max_ks": report.max_ks,
                    "per_feature": dg.MetadataValue.md(table.round(4).to_markdown()),
                },
            )
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name="feature_drift",
                passed=report.passed,
                severity=dg.AssetCheckSeverity.WARN,
                description=(
                    f"max PSI {report.max_psi:.3f}, max KS {report.max_ks:.3f}"
                    + (f"; drifted: {', '.join(report.drifted)}" if report.drifted else "")
                ),
                metadata={
                    "max_psi": report.max_psi,
                    "max_ks": report.max_ks,
                    "drifted": ", ".join(report.drifted),
                    "symbol": symbol,
                },
            )

    return drift_assets


drift_assets = [_drift_assets(list(SETTINGS.symbols))]

drift_monitoring_job = dg.define_asset_job(
    "drift_monitoring",
    selection=dg.AssetSelection.assets(*drift_assets),
    partitions_def=DAILY,
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
    return dg.RunRequest(run_key=f"drift:{key}", partition_key=key)


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
        if (
            evaluation.asset_key.path[0] == "drift"
            and evaluation.check_name == "feature_drift"
            and not evaluation.passed
        ):
            failed.append(evaluation.asset_key.path[-1])
        state["after"] = record.storage_id
    now = clock()
    previous = dict(state["last_request"])
    chosen, state["last_request"] = retrain_requests(failed, state["last_request"], now)
    key = latest_partition_key(REFERENCE_CADENCE, pd.Timestamp(now, unit="s", tz="UTC").to_pydatetime())
    requests, blocked = [], []
    if key is not None:
        for symbol in chosen:
            request = dg.RunRequest(
                run_key=f"drift-retrain:{symbol}:{int(now)}",
                partition_key=key,
                asset_selection=[
                    dg.AssetKey(["training_sets", REFERENCE_CADENCE]),
                    dg.AssetKey(["models", REFERENCE_CADENCE, symbol]),
                    dg.AssetKey(["champions", REFERENCE_CADENCE, symbol]),
                ],
                tags={"alphapulse/trigger": "drift", "alphapulse/symbol": symbol},
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
