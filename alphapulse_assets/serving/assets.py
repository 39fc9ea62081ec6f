"""``signals/<cadence>``: every new bar's prediction from the champion in force, recorded per UTC day.

Partitioned by UTC day like the candles it reads, one asset per cadence (its bar size: 15m, 1h, 4h), all
symbols in one step. Each asset is automated with ``AutomationCondition.eager()``: once the day's candles are
materialized (the ingestion schedule, ``alphapulse ingest``, a backfill's newest day) its newest day is
requested by ``signals_automation_sensor`` (stopped by default, like every schedule here: turn it on under
*Automation*). Declarative automation is what Dagster users expect for "update when the upstream updates", and
it keeps the signals out of the ingestion run: a refused model file fails the signals, not the candles.
A symbol without a champion yet is listed in the metadata, not a failure; a refused champion file, missing
candles, or candles of a day whose blocking quality checks failed (what the cadences refuse to train on) fail the
step with the reason.
"""

import dagster as dg
import pandas as pd

from alphapulse_assets.dagster_previews import known_previews
from alphapulse_assets.market_data.assets import DAILY, quality_verdicts
from alphapulse_assets.market_data.resources import CandleStoreResource
from alphapulse_assets.market_data.symbols import active_symbols
from alphapulse_assets.recovery.policies import classified_failures
from alphapulse_assets.recovery.runs import stop_on_interrupt
from alphapulse_assets.serving.predictor import CADENCES, ChampionRefusedError, NoChampionError, Predictor
from alphapulse_assets.serving.signals import SignalStore, default_signal_store_url
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training.assets import ModelRegistryResource
from alphapulse_assets.training.challenger import cadence_spec, candle_dataset

SETTINGS = get_settings()
GROUP = "serving"
PREVIEW_ROWS = 10


class SignalStoreResource(dg.ConfigurableResource):
    """Where signals are recorded (a path or fsspec URL; default the store's signals URL, ``settings.store_url("signals")``)."""

    base_url: str | None = None

    @property
    def store(self) -> SignalStore:
        return SignalStore(self.base_url or default_signal_store_url())


def signals_metadata(frame: pd.DataFrame, unserved: dict[str, str]) -> dict[str, object]:
    """Count, the newest bars as a table, mean up-probability per symbol (a table, and one number per symbol
    that the UI plots over time), and the symbols not served with why."""
    per_symbol = frame.groupby("symbol").agg(
        bars=("prob_up", "size"), version=("version", "last"), mean_prob_up=("prob_up", "mean")
    )
    newest = frame.sort_values("bar_time").groupby("symbol").tail(1).sort_values("symbol")
    preview = newest.assign(prob_up=newest["prob_up"].map(lambda p: f"{p:.4f}"))
    metadata: dict[str, object] = {
        "signals": len(frame),
        "symbols": len(per_symbol),
        "newest_bars": dg.MetadataValue.md(preview.head(PREVIEW_ROWS).to_markdown(index=False))
        if len(frame)
        else "none",
        "mean_prob_up": dg.MetadataValue.md(
            per_symbol.assign(mean_prob_up=per_symbol["mean_prob_up"].map(lambda p: f"{p:.4f}")).to_markdown()
        )
        if len(frame)
        else "none",
        "not_served": "; ".join(f"{s}: {why}" for s, why in unserved.items()) or "none",
    }
    for symbol, row in per_symbol.iterrows():
        metadata[f"mean_prob_up.{symbol}"] = float(f"{row['mean_prob_up']:.4g}")
    return metadata


def _signals_asset(cadence: str) -> dg.AssetsDefinition:
    spec = cadence_spec(cadence, SETTINGS)
    candle_asset = candle_dataset(spec.timeframe)

    @dg.asset(
        key=["signals", cadence],
        partitions_def=DAILY,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=92),
        deps=[candle_asset],
        automation_condition=dg.AutomationCondition.eager(),
        group_name=GROUP,
        kinds={"pandas", "parquet"},
        tags={"alphapulse/cadence": cadence},
        description=f"The {cadence} champions' up-probability for the bar after each {spec.timeframe} bar of the day, "
        "every symbol (symbol, cadence, bar_time, for_bar, version, prob_up, role); "
        "read them with alphapulse_assets.serving.read_signals.",
    )
    @stop_on_interrupt
    def signals(
        context: dg.AssetExecutionContext,
        candle_store: CandleStoreResource,
        model_registry: ModelRegistryResource,
        signal_store: SignalStoreResource,
    ) -> dg.MaterializeResult:
        with classified_failures(
            f"recording the {cadence} signals {context.partition_key_range.start}..{context.partition_key_range.end}"
        ):
            predictor = Predictor(
                registry=model_registry.get(context.instance),
                candle_store=candle_store.store,
                settings=SETTINGS,
                refused_days=lambda days: quality_verdicts(context.instance, days),
            )
            days = context.partition_keys
            # The active symbols when the run starts: an added one is served, a retired one no longer.
            frame, problems = predictor.predict_days(cadence, days, active_symbols(context.instance) or None)
            # No champion yet is a state, not a fault; a refused file or missing candles are faults.
            failures = {
                s: e
                for s, e in problems.items()
                if isinstance(e, ChampionRefusedError) or not isinstance(e, NoChampionError)
            }
            if failures:
                raise dg.Failure(
                    description=f"{cadence} signals not recorded for {', '.join(failures)}: "
                    + "; ".join(str(e) for e in failures.values()),
                    metadata={"error_class": "permanent"},
                    allow_retries=False,
                )
            counts = signal_store.store.write(cadence, frame, days)
            if len(days) > 1:
                day_of = frame["bar_time"].dt.strftime("%Y-%m-%d")
                for day in days:
                    context.add_asset_metadata(
                        signals_metadata(frame[(day_of == day).to_numpy()], {}), partition_key=day
                    )
            unserved = {s: str(e) for s, e in problems.items()}
            metadata = signals_metadata(frame, unserved)
            metadata["days_in_run"] = len(counts)
            return dg.MaterializeResult(metadata=metadata)

    return signals


with known_previews():  # backfill_policy
    signals_assets = [_signals_asset(cadence) for cadence in CADENCES]

signals_automation_sensor = dg.AutomationConditionSensorDefinition(
    "signals_automation_sensor",
    target=dg.AssetSelection.assets(*signals_assets),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Records the signals of a new day once its candles are materialized (the signals assets are eager).",
)
