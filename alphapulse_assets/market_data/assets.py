"""Candle assets: base bars ingested from the source chain, and 1h / 4h bars resampled from them.

All three are partitioned by UTC day and hold every configured symbol in one frame: one run serves all
symbols (one run per symbol would pay Dagster's per-run overhead five times for a few KB of data), and a
backfill runs many days per run through the backfill policy.
"""

import dagster as dg
import pandas as pd

from alphapulse_assets.dagster_previews import known_previews
from alphapulse_assets.market_data import quality
from alphapulse_assets.market_data.resample import resample_candles
from alphapulse_assets.market_data.resources import MarketDataResource
from alphapulse_assets.recovery.policies import classified_failures, ingestion_retry_policy
from alphapulse_assets.recovery.runs import stop_on_interrupt
from alphapulse_assets.settings import get_settings

SETTINGS = get_settings()

# Partitions are UTC days whatever ALPHAPULSE_TIMEZONE says: that setting only moves the schedules' clocks.
DAILY = dg.DailyPartitionsDefinition(start_date=SETTINGS.start_date.isoformat(), timezone="UTC")
# A backfill of a year runs as a handful of runs of up to a quarter each, not 365 runs.
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=92)

BASE_ASSET = "market_candles"
RESAMPLED = {"candles_1h": "1h", "candles_4h": "4h"}

# Partitioned like the asset, so Dagster records each day's verdict on its own partition: a training set
# reads them per day (quality_verdicts below), and the UI shows which day failed which check. (Partitioned
# checks are a preview feature in Dagster 1.13, relied on knowingly and tested in test_bad_data.py.)
with known_previews():
    QUALITY_CHECKS = [
        dg.AssetCheckSpec(
            rule, asset=BASE_ASSET, blocking=rule in quality.BLOCKING_RULES, description=text, partitions_def=DAILY
        )
        for rule, text in quality.RULE_DESCRIPTIONS.items()
    ]


def _check_metadata(result: quality.QualityResult) -> dict[str, object]:
    metadata: dict[str, object] = {
        "violations": result.violations,
        "fraction": float(result.fraction),
        "first_offenders": dg.MetadataValue.md("\n".join(f"- {e}" for e in result.examples) or "none"),
        "symbols": ", ".join(result.symbols) or "none",
    }
    metadata.update(result.details)
    return metadata


def _severity(result: quality.QualityResult) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if result.blocking else dg.AssetCheckSeverity.WARN


def _check_result(result: quality.QualityResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=result.rule,
        passed=result.passed,
        severity=_severity(result),
        description=result.description,
        metadata=_check_metadata(result),
    )


def _day_evaluations(per_day: dict[str, list[quality.QualityResult]]):
    """A run over many days records each day's verdict on its partition (an AssetCheckResult in a run of many
    partitions is recorded once, for none of them); the step's own results then give the range's verdict."""
    for day, results in per_day.items():
        for r in results:
            yield dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(BASE_ASSET),
                check_name=r.rule,
                passed=r.passed,
                partition=day,
                severity=_severity(r),
                blocking=r.blocking,
                description=r.description,
                metadata=_check_metadata(r),
            )


def quality_verdicts(instance: dg.DagsterInstance, days: list[str]) -> list[quality.DayVerdict]:
    """The days among ``days`` whose blocking checks failed or never ran on their current data.

    One query per check (eight), whatever the number of days: the latest evaluation of each check on each
    partition, as Dagster records it, and whether a newer materialization has not been checked since."""
    keys = [dg.AssetCheckKey(dg.AssetKey(BASE_ASSET), rule) for rule in quality.BLOCKING_RULES]
    statuses: dict[str, dict[str, str]] = {}
    failing_runs: set[str] = set()
    for info in instance.event_log_storage.get_asset_check_partition_info(keys, partition_keys=days):
        status = getattr(info.latest_execution_status, "value", str(info.latest_execution_status))
        newer_data = (info.latest_materialization_storage_id or 0) > (info.latest_check_event_storage_id or 0)
        verdict = {"SUCCEEDED": "passed", "FAILED": "failed"}.get(status)
        if verdict and not newer_data and info.partition_key:
            statuses.setdefault(info.partition_key, {})[info.check_key.name] = verdict
            if verdict == "failed":
                failing_runs.add(info.latest_planned_run_id)
    return quality.refused_days(days, statuses, _offending_symbols(instance, sorted(failing_runs)[:3], statuses))


def _offending_symbols(instance: dg.DagsterInstance, run_ids: list[str], statuses) -> dict[str, set[str]]:
    """Per failed day, the symbols its failed checks named (read from the few runs that recorded them)."""
    out: dict[str, set[str]] = {}
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = entry.dagster_event.event_specific_data
            day = evaluation.partition
            if statuses.get(day, {}).get(evaluation.check_name) == "failed" and not evaluation.passed:
                named = evaluation.metadata.get("symbols")
                out.setdefault(day, set()).update(
                    s for s in str(named.value if named else "").split(", ") if s and s != "none"
                )
    return out


def _days(context: dg.AssetExecutionContext, frame: pd.DataFrame):
    """(partition key, that day's rows) for each day of the run, in order."""
    for key in context.partition_keys:
        window = DAILY.time_window_for_partition_key(key)
        start, end = pd.Timestamp(window.start).tz_convert("UTC"), pd.Timestamp(window.end).tz_convert("UTC")
        yield key, frame[(frame["timestamp"] >= start) & (frame["timestamp"] < end)] if len(frame) else frame


def _add_daily_metadata(context: dg.AssetExecutionContext, frame: pd.DataFrame, summary: bool = False) -> None:
    """Each day's own figures on that day's materialization (a run over many days materializes each day
    once, with the run-wide metadata of its output plus these)."""
    for key, day in _days(context, frame):
        metadata: dict[str, object] = {"rows": len(day), "symbols": int(day["symbol"].nunique()) if len(day) else 0}
        if summary:
            metadata["summary"] = dg.MetadataValue.md(_preview(day)) if len(day) else "no rows"
        context.add_asset_metadata(metadata, partition_key=key)


def _preview(frame: pd.DataFrame) -> str:
    summary = frame.groupby("symbol").agg(
        rows=("close", "size"),
        first=("timestamp", "min"),
        last=("timestamp", "max"),
        close=("close", "last"),
        volume=("volume", "sum"),
    )
    return summary.to_markdown()  # tabulate comes with dagster


# Dagster warns of backfill_policy (beta) when the decorator is made: it is made inside known_previews().
with known_previews():
    _market_candles_asset = dg.asset(
        name=BASE_ASSET,
        partitions_def=DAILY,
        backfill_policy=BACKFILL,
        retry_policy=ingestion_retry_policy(),
        check_specs=QUALITY_CHECKS,
        io_manager_key="candle_io_manager",
        group_name="market_data",
        kinds={"pandas", "parquet"},
        tags={"alphapulse/dependency": "market_data"},
        description=f"Base-bar ({SETTINGS.base_timeframe}) OHLCV candles for every configured symbol, one UTC day "
        "per partition, fetched through the configured source chain and validated by blocking quality checks.",
    )


@_market_candles_asset
@stop_on_interrupt  # a SIGTERM / Ctrl-C stops the run; it is not retried
def market_candles(context: dg.AssetExecutionContext, market_data: MarketDataResource):
    """Permanent and system errors anywhere in the step fail it at once (``classified_failures``);
    transient ones are retried by the step's policy."""
    with classified_failures(
        f"ingesting market_candles {context.partition_key_range.start}..{context.partition_key_range.end}"
    ):
        window = context.partition_time_window
        start, end = pd.Timestamp(window.start).tz_convert("UTC"), pd.Timestamp(window.end).tz_convert("UTC")
        symbols = market_data.symbols_for(context.instance)  # the active symbols now: symbols are data
        context.log.info(
            f"fetching {len(symbols)} symbol(s) from {start:%Y-%m-%d} to {end:%Y-%m-%d} "
            f"through {' -> '.join(market_data.sources)}"
        )
        result = market_data.fetch(start, end, symbols)
        candles = result.candles
        for source, symbol, message in result.fallbacks:
            context.log.warning(f"fallback: {source} could not serve {symbol} ({message}); the next source was used")
        rules = dict(
            symbols=symbols,
            timeframe=market_data.base_timeframe,
            max_missing_fraction=SETTINGS.quality.max_missing_fraction,
            outlier_zscore=SETTINGS.quality.outlier_zscore,
            max_outlier_fraction=SETTINGS.quality.max_outlier_fraction,
            max_bar_move_factor=SETTINGS.quality.max_bar_move_factor,
            # Coverage follows each symbol's market calendar: an exchange's weekend is not missing data.
            calendars={s: market_data.calendar_for(s) for s in symbols},
            session_hours=market_data.session_hours,
        )
        checks = quality.run_all(candles, start=start, end=end, **rules)
        per_day = {}  # a run over many days also judges each day on its own, so that a verdict names its day
        if len(context.partition_keys) > 1:
            for key, rows in _days(context, candles):
                day_start = pd.Timestamp(key, tz="UTC")
                per_day[key] = quality.run_all(
                    rows.reset_index(drop=True), start=day_start, end=day_start + pd.Timedelta(days=1), **rules
                )
        synthetic = "sample" in result.source_by_symbol.values()
        _add_daily_metadata(context, candles, summary=True)
        yield dg.Output(
            candles,
            metadata={
                "days_in_run": len(context.partition_keys),
                "source_by_symbol": result.source_by_symbol,
                "sources_used": ", ".join(sorted(set(result.source_by_symbol.values()))),
                "fallbacks_used": len(result.fallbacks),
                "fallback_details": [f"{s} -> {sym}: {m}" for s, sym, m in result.fallbacks],
                "synthetic_data": synthetic,
                "note": "SYNTHETIC sample market, not real prices" if synthetic else "market data",
            },
        )
        yield from _day_evaluations(per_day)
        for check in checks:
            yield _check_result(check)


def _resampled_asset(name: str, timeframe: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        partitions_def=DAILY,
        backfill_policy=BACKFILL,
        ins={"base": dg.AssetIn(BASE_ASSET)},
        io_manager_key="candle_io_manager",
        group_name="market_data",
        kinds={"pandas", "parquet"},
        description=f"{timeframe} candles resampled from the base bars; a bar is kept only when complete.",
    )
    @stop_on_interrupt
    def _asset(context: dg.AssetExecutionContext, base: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        bars = resample_candles(base, SETTINGS.base_timeframe, timeframe)
        _add_daily_metadata(context, bars)
        return dg.Output(bars, metadata={"timeframe": timeframe, "days_in_run": len(context.partition_keys)})

    return _asset


with known_previews():  # backfill_policy
    resampled_assets = [_resampled_asset(name, tf) for name, tf in RESAMPLED.items()]
candle_assets = [market_candles, *resampled_assets]
