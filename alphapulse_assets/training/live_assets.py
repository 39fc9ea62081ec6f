"""Live scores as Dagster assets: ``live_scores/<cadence>`` partitioned by symbol, one step for all, and its schedule.

A thin wrapper around ``live_scoring.py``: for every cadence and symbol it reads the stored candles at the
cadence's bar size, replays and scores the champion in force at each bar (and the shadow challengers), applies
the rollback rule, and materializes the symbol's partition with numeric metadata that the UI plots across
materializations (live log loss, best baseline's log loss, accuracy, Sharpe net of fees, labelled bars, p-value)
and a table. The per-bar frame is written to ``<ALPHAPULSE_HOME>/live_scores/<cadence>/<SYMBOL>.parquet``.

When: once a day on a schedule (``ALPHAPULSE_LIVE__CRON``, 03:45 UTC), not on every new candle. Labels arrive
with the day's candles (ingested at 01:30 UTC), so a daily run scores every bar as soon as its label is
stored; it reads whatever is stored, so a late or re-run ingestion is picked up by the next run; and the
rule judges hundreds of bars at a time, so scoring more often would not decide sooner.
"""

import io
from datetime import datetime, timezone

import dagster as dg
import fsspec
import pandas as pd

from alphapulse_assets import atomic_files
from alphapulse_assets.alerting.alerts import build_router_from_env
from alphapulse_assets.dagster_previews import known_previews
from alphapulse_assets.market_data.resources import CandleStoreResource
from alphapulse_assets.market_data.symbols import SYMBOLS, ensure_seeded, symbol_range_tags
from alphapulse_assets.platform_db import platform_db_url
from alphapulse_assets.recovery.policies import classified_failures
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training import live_scoring
from alphapulse_assets.training.assets import CADENCES, ModelRegistryResource, _candle_asset_for, spec_for
from alphapulse_assets.training.display import Markdown, figure, version_text
from alphapulse_assets.training.metadata import as_metadata

SETTINGS = get_settings()
GROUP = "live_scores"
clock = lambda: datetime.now(timezone.utc)  # noqa: E731 - the step's clock; tests replace it


def live_config() -> live_scoring.LiveConfig:
    live = get_settings().live
    return live_scoring.LiveConfig(
        window_bars=live.window_bars,
        min_bars=live.min_bars,
        alpha=live.alpha,
        n_boot=live.n_boot,
        max_shadows=live.max_shadows,
        rollback=live.rollback,
    )


def live_key(cadence: str) -> dg.AssetKey:
    return dg.AssetKey(["live_scores", cadence])


def _scores_row(name: str, s: dict) -> dict:
    if not s.get("n"):
        return {"scored": name, "bars": 0}
    return {
        "scored": name,
        "bars": s["n"],
        "from": f"{s['first_bar']:%Y-%m-%d %H:%M}",
        "to": f"{s['last_bar']:%Y-%m-%d %H:%M}",
        "log loss": figure(s["log_loss"]),
        f"best baseline ({s['best_baseline']}) log loss": figure(s["baseline_log_loss"]),
        "accuracy": figure(s["accuracy"]),
        "Sharpe net of fees": figure(s["sharpe"]),
        "baseline Sharpe": figure(s["baseline_sharpe"]),
    }


def score_metadata(scores: live_scoring.SymbolScores, cfg: live_scoring.LiveConfig, path: str | None) -> dict:
    """What a live-scores materialization shows: measurements as numbers (plotted over time), the rest as text.
    With no labelled bar since the promotion, no score is shown: the status says so."""
    since, window, verdict = scores.since_promotion, scores.window, scores.verdict
    out: dict = {
        "status": scores.status,
        "champion": version_text(scores.champion.version) if scores.champion else "none",
        "champion_since": f"{scores.since:%Y-%m-%d %H:%M} UTC" if scores.since is not None else "none",
        "n_labelled": int(since.get("n", 0)),
        "n_window": int(window.get("n", 0)),
        "rule": f"rollback when live log loss is worse than the best baseline's over >= {cfg.min_bars} "
        f"(<= {cfg.window_bars}) labelled bars since promotion, one-sided block-bootstrap p < {cfg.alpha}",
        "action": scores.action,
    }
    for prefix, s in (("live_", since), ("window_", window)):
        if s.get("n"):
            for key, name in (
                ("log_loss", "log_loss"),
                ("baseline_log_loss", "baseline_log_loss"),
                ("accuracy", "accuracy"),
                ("sharpe", "sharpe_net_of_fees"),
            ):
                value = figure(s[key])
                if value is not None:
                    out[f"{prefix}{name}"] = value
    if since.get("n"):
        out["costs"] = (
            f"{since['fee_bps']:g} bps fee + {since['slippage_bps']:g} bps slippage per position change "
            "(ALPHAPULSE_COSTS__*)"
        )
        out["sharpe_annualisation"] = scores.annualisation
    if verdict.judged and verdict.p_value is not None:
        out["p_value_worse_than_baseline"] = figure(verdict.p_value)
    if scores.shadows:
        out["shadow_rule"] = (
            f"a shadow beats the champion live when its log loss is lower on >= {cfg.min_bars} labelled bars since it "
            f"was registered, one-sided block-bootstrap p < {cfg.alpha}; promote it with `alphapulse models "
            f"promote-shadow {scores.symbol} {scores.cadence} VERSION --reason ...`"
        )
    best = live_scoring.best_shadow(scores.shadows)
    if best is not None:  # numbers, plotted across materializations
        out["best_shadow"] = f"v{best.version}: {best.reason}"
        out["best_shadow_log_loss_edge"] = figure(best.edge)
        out["best_shadow_p_value_better"] = figure(best.p_value)
    rows = [_scores_row(f"champion since promotion ({out['champion']})", since)]
    rows.append(_scores_row(f"champion(s), last {cfg.window_bars} bars", window))
    for version, s in scores.shadows.items():
        row = _scores_row(f"shadow v{version} ({s.get('gate')})", s)
        if "champion_log_loss" in s:
            row["champion log loss, same bars"] = figure(s["champion_log_loss"])
        evidence = s.get("evidence")
        if evidence is not None:
            row["bars since registered"] = evidence.n
            row["edge vs champion (log loss)"] = figure(evidence.edge) if evidence.judged else "-"
            row["p (better than champion)"] = figure(evidence.p_value) if evidence.judged else "-"
            row["beats champion live"] = "yes" if evidence.beats else ("no" if evidence.judged else "too few bars")
        rows.append(row)
    table = pd.DataFrame(rows).astype(object)
    out["scores"] = Markdown(table.where(table.notna(), None).to_markdown(index=False, missingval="-"))  # no "nan"
    metadata = as_metadata(out)
    if path:
        metadata["per_bar"] = dg.MetadataValue.path(path)
    return metadata


def _write_frame(root: str, cadence: str, symbol: str, frame: pd.DataFrame) -> str:
    target = f"{root}/{cadence}/{symbol}.parquet"
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_files.atomic_write(
        fsspec.filesystem("file"), True, target, lambda fh: fh.write(buffer.getvalue()), what="live scores"
    )
    return target


def read_candles(store, spec, registry, symbol_list, cfg, now, shadows=None) -> pd.DataFrame:
    """The stored bars ``live_scoring.score_symbol`` needs for these symbols (``shadows``: as it takes them)."""
    candle_asset = _candle_asset_for(spec.timeframe)
    start = min(live_scoring.window_start(registry, s, spec, cfg, now, shadows) for s in symbol_list)
    days = [str(d.date()) for d in pd.date_range(start, pd.Timestamp(now).floor("D"), freq="D")]
    missing = set(store.missing_days(candle_asset, days))
    days = [d for d in days if d not in missing]
    if not days:
        return pd.DataFrame(columns=["symbol", "timestamp"])
    candles = store.read_days(candle_asset, days)
    return candles[candles["symbol"].isin(symbol_list)]


SPECS = [
    dg.AssetSpec(
        live_key(cadence),
        # Each symbol's scores read its champion in force, whatever time partition promoted it (Dagster maps the
        # symbol to that dimension of the champions' time x symbol partitions).
        deps=[dg.AssetKey(["champions", cadence])],
        group_name=GROUP,
        kinds={"pandas"},
        tags={"alphapulse/cadence": cadence},
        skippable=True,
        description=f"Live (prequential) scores of each symbol's {cadence} champion since its promotion and over a "
        "rolling window, next to the naive baselines, with shadow challengers; an underperforming champion is "
        "rolled back (see README, Live scores).",
    )
    for cadence in CADENCES
]


def _live_scores(
    context: dg.AssetExecutionContext, candle_store: CandleStoreResource, model_registry: ModelRegistryResource
):
    cfg = live_config()
    now = clock()
    registry = model_registry.get(context.instance)  # a rollback shows on the champion asset
    root = str(get_settings().home / "live_scores")
    selected = context.selected_asset_keys
    failed: list[str] = []
    with build_router_from_env(model_registry.db_url or platform_db_url()) as router:  # the registry's database
        run_symbols = list(context.partition_keys)  # a range of the active symbols
        for cadence in CADENCES:
            symbols = run_symbols if live_key(cadence) in selected else []
            if not symbols:
                continue
            spec = spec_for(cadence)
            with classified_failures(f"reading the {cadence} candles for live scores"):
                candles = read_candles(candle_store.store, spec, registry, symbols, cfg, now)
            for symbol in symbols:
                try:  # one symbol's fault does not hide the others' scores; the step fails at the end
                    scores = live_scoring.score_symbol(registry, candles, spec, symbol, cfg, now)
                    live_scoring.apply_rule(registry, router, scores, cfg)
                    path = _write_frame(root, cadence, symbol, scores.frame) if len(scores.frame) else None
                except Exception as exc:  # noqa: BLE001 - reported below, and the step fails
                    context.log.error(f"live scores of {symbol} {cadence}: {exc}")
                    failed.append(f"{symbol} {cadence}: {exc}")
                    continue
                context.log.info(f"{symbol} {cadence}: {scores.status}; {scores.action}")
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=live_key(cadence), partition=symbol, metadata=score_metadata(scores, cfg, path)
                    )
                )
    yield from ()  # every materialization is logged above, on its symbol's partition
    if failed:
        raise dg.Failure(
            description=f"live scores failed for {len(failed)} champion(s): " + "; ".join(failed[:10]),
            allow_retries=False,
        )


with known_previews():  # backfill_policy (one run over a range of symbols), relied on knowingly
    live_scores = dg.multi_asset(
        name="live_scores",
        specs=SPECS,
        partitions_def=SYMBOLS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        can_subset=True,
    )(_live_scores)

live_scoring_job = dg.define_asset_job(
    "live_scoring",
    selection=dg.AssetSelection.assets(live_scores),
    partitions_def=SYMBOLS,
    description="Live scores of every champion (and its shadows), and the rollback rule.",
)


@dg.schedule(
    name="live_scoring_schedule",
    job=live_scoring_job,
    cron_schedule=SETTINGS.live.cron,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Scores every champion once a day, after the day's candles are ingested (01:30 UTC).",
)
def live_scoring_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    symbols = ensure_seeded(context.instance)  # read at the tick (the seed on a new instance): symbols are data
    if not symbols:
        return dg.SkipReason("no active symbol: add one with `alphapulse symbols add SYMBOL`")
    tags = {**symbol_range_tags(symbols[0], symbols[-1]), "alphapulse/trigger": "schedule"}
    return dg.RunRequest(run_key=f"live:{day}", tags=tags)
