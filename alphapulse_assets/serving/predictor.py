"""What the current champion says about the newest bar: the serving API behind ``alphapulse predict``.

``Predictor.predict(symbol, cadence)`` reads the champion's version on every call (one primary-key lookup), so a
promotion, a rollback or a fall-back is served from the next call on, without a restart; loaded models are kept
per (symbol, cadence, version). A version is loaded through the registry, which verifies the file's SHA-256 and
trusted types before deserialising it: a tampered or missing champion file is refused, recorded as a fall-back
to the newest earlier champion whose file verifies (which then serves, under its own version), and alerted by
the registry's listener; with no such champion the call raises.

Features are made from the newest stored candles of the cadence's bar size by the training code itself
(``training.challenger.candle_features``, i.e. ``features.indicators.build_features``) over exactly the look-back
the features need, and the champion's ``predict_proba`` answers. Nothing old is ever served silently: no
champion, no candles, a day missing from the look-back, too few bars for it, a newest bar without complete
features, or a newest bar older than ``ALPHAPULSE_SERVING__MAX_DATA_AGE__<CADENCE>`` bars each raise a
``ServingError`` naming the symbol and what is missing.

This module does not import Dagster (the default registry's alert listener does, when no registry is given).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from alphapulse_assets.market_data.storage import ParquetPartitionStore
from alphapulse_assets.platform_db import platform_db_url
from alphapulse_assets.recovery.errors import DataValidationError, PermanentError
from alphapulse_assets.settings import AlphaPulseSettings, get_settings, timeframe_to_timedelta
from alphapulse_assets.training.challenger import CadenceSpec, cadence_spec, candle_dataset, candle_features
from alphapulse_assets.training.challenger import predict_features as champion_proba
from alphapulse_assets.training.estimators import trusted_type_names
from alphapulse_assets.training.registry import ArtifactIntegrityError, ModelRegistry

CADENCES = ("nightly", "weekly", "monthly")
SIGNAL_COLUMNS = ("symbol", "cadence", "bar_time", "for_bar", "version", "prob_up", "role")


class ServingError(PermanentError):
    """A prediction cannot be made; the message names the symbol, the cadence and what is missing."""


class NoChampionError(ServingError):
    """No champion serves for this symbol and cadence (none promoted yet, or none whose file verifies)."""


class ChampionRefusedError(NoChampionError):
    """The champion's file was refused (digest or trusted types) and no earlier champion's file verifies."""


class MissingDataError(ServingError, DataValidationError):
    """Candles are missing, or too few for the features' look-back."""


class RefusedDataError(ServingError, DataValidationError):
    """Days of the look-back did not pass the blocking quality checks (or were never checked): the cadences do
    not train on them, and the champions do not answer on them."""


class StaleDataError(ServingError, DataValidationError):
    """The newest stored bar is older than ALPHAPULSE_SERVING__MAX_DATA_AGE__<CADENCE> bars allow."""


@dataclass(frozen=True)
class Prediction:
    """The champion's up-probability for the bar after the newest stored one."""

    symbol: str
    cadence: str
    version: int  # the champion's registry version that answered
    prob_up: float  # P(the cadence's label = 1), i.e. up over the label's horizon, for ``for_bar``
    bar_time: pd.Timestamp  # open time (UTC) of the newest stored bar, the last one the features read
    for_bar: pd.Timestamp  # open time of the bar predicted: the next bar after ``bar_time``
    feature_time: pd.Timestamp  # time of the feature row given to the model (== bar_time: never an older row)
    data_age_seconds: float  # from the newest bar's close (bar_time + timeframe) to ``predicted_at``
    timeframe: str
    predicted_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 strings (UTC)."""
        return {
            "symbol": self.symbol,
            "cadence": self.cadence,
            "version": self.version,
            "prob_up": self.prob_up,
            "bar_time": self.bar_time.isoformat(),
            "for_bar": self.for_bar.isoformat(),
            "feature_time": self.feature_time.isoformat(),
            "data_age_seconds": self.data_age_seconds,
            "timeframe": self.timeframe,
            "predicted_at": self.predicted_at.isoformat(),
        }


@dataclass(frozen=True)
class _Answer:
    """A model's answer on a symbol's newest bar (``prob`` None when that bar's features are incomplete)."""

    prob: float | None
    bar_time: pd.Timestamp
    feature_time: pd.Timestamp
    bars: int
    incomplete: tuple[str, ...]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _default_registry(settings: AlphaPulseSettings) -> ModelRegistry:
    # Imported here: the alert listener brings in Dagster, needed only when no registry is given.
    from alphapulse_assets.training.champion_events import ChampionChangeReporter

    url = platform_db_url()
    # The estimator classes configured by dotted path are trusted, as the cadences that saved them trust them.
    trusted = trusted_type_names({c: getattr(settings, c).estimator or "" for c in CADENCES})
    return ModelRegistry(
        settings.store_url("models"), url, on_change=ChampionChangeReporter(None, url), trusted_types=trusted
    )


class Predictor:
    """Serves the champions. Defaults: the settings' candle store, the registry (models under the store's models URL,
    ``settings.store_url("models")``, the platform database), the system clock."""

    def __init__(
        self,
        *,
        registry: ModelRegistry | None = None,
        candle_store: ParquetPartitionStore | str | None = None,
        settings: AlphaPulseSettings | None = None,
        clock: Callable[[], datetime] = _now,
        refused_days: Callable[[list[str]], list[Any]] | None = None,
    ):
        self.settings = settings or get_settings()
        self.registry = registry or _default_registry(self.settings)
        store = candle_store or self.settings.candle_store_url
        self.store = ParquetPartitionStore(store) if isinstance(store, str) else store
        self.clock = clock
        # The days among those given that the cadences refuse (their verdicts, printable); None: no check.
        self.refused_days = refused_days
        self._models: dict[tuple[str, str], tuple[int, Any]] = {}  # (symbol, cadence) -> (version, model)
        self._columns: dict[tuple[str, str], list[str]] = {}  # (symbol, cadence) -> the champion's features
        # The look-back's candles per dataset, and each answer, keyed by the names of the segments that hold the
        # look-back's days: a segment is never rewritten, so unchanged names mean unchanged candles.
        self._candles: dict[str, tuple[tuple, pd.DataFrame]] = {}
        self._answers: dict[tuple[str, str], tuple[tuple, _Answer]] = {}

    # -- the champion ----------------------------------------------------------------------------------
    def champion(self, symbol: str, cadence: str) -> tuple[int, Any]:
        """(version, model) of the champion serving now; loaded (and verified) once per version."""
        version = self.registry.champion_version(symbol, cadence)
        if version is None:
            raise NoChampionError(
                f"no {cadence} champion for {symbol} yet: no model has passed its gate "
                f"(run the {cadence} cadence: alphapulse run {cadence})",
                where=f"model registry, {symbol}/{cadence}",
            )
        cached = self._models.get((symbol, cadence))
        if cached is not None and cached[0] == version:
            return cached
        try:
            mv = self.registry.get(symbol, cadence, version)
            loaded = version, self.registry.load(mv)
        except ArtifactIntegrityError as exc:
            # Refused: the registry records the fall-back, alerts, and names the champion that serves instead.
            replacement = self.registry.serving_champion(symbol, cadence)
            if replacement is None:
                raise ChampionRefusedError(
                    f"the {cadence} champion v{version} of {symbol} was refused ({exc}) and no earlier champion's "
                    "file verifies: nothing is served",
                    where=f"model registry, {symbol}/{cadence}",
                ) from exc
            mv = replacement
            loaded = replacement.version, self.registry.load(replacement)
        self._columns[(symbol, cadence)] = list(mv.info.get("features") or ())
        self._models[(symbol, cadence)] = loaded  # one model per symbol and cadence: the old version goes
        return loaded

    def _symbols(self, symbols: Iterable[str] | None) -> list[str]:
        return [s.upper() for s in (symbols if symbols is not None else self.settings.symbols)]

    def _champions(
        self, symbols: list[str], cadence: str
    ) -> tuple[dict[str, tuple[int, Any]], dict[str, ServingError]]:
        """({symbol: (version, model)} of those served, {symbol: why not} of the others)."""
        champions, problems = {}, {}
        for symbol in symbols:
            try:
                champions[symbol] = self.champion(symbol, cadence)
            except ServingError as exc:
                problems[symbol] = exc
        return champions, problems

    # -- candles ---------------------------------------------------------------------------------------
    def spec(self, cadence: str) -> CadenceSpec:
        if cadence not in CADENCES:
            raise ServingError(f"unknown cadence {cadence!r}; use one of {', '.join(CADENCES)}", where="cadence")
        return cadence_spec(cadence, self.settings)

    def _lookback_days(self, spec: CadenceSpec) -> int:
        """Whole days before a bar's own day that hold the bars its features read."""
        return math.ceil(spec.warmup_bars * timeframe_to_timedelta(spec.timeframe) / pd.Timedelta(days=1))

    def _read(self, spec: CadenceSpec, days: list[date], symbols: list[str], *, strict: bool) -> pd.DataFrame:
        """The stored candles of ``symbols`` on ``days``; with ``strict``, a missing day raises."""
        dataset = candle_dataset(spec.timeframe)
        stored = set(self.store.list_partitions(dataset))
        self._check_days(spec, dataset, days, stored, symbols, strict=strict)
        present = [str(d) for d in days if str(d) in stored]
        if not present:
            return pd.DataFrame(columns=["symbol", "timestamp", "open", "high", "low", "close", "volume"])
        candles = self.store.read_days(dataset, present)
        return candles[candles["symbol"].isin(symbols)]

    def _check_quality(self, spec: CadenceSpec, days: list[str], symbols: list[str]) -> None:
        refused = self.refused_days(days) if self.refused_days and days else []
        if refused:
            raise RefusedDataError(
                f"{len(refused)} day(s) of the {spec.name} features' look-back of {', '.join(symbols)} did not pass "
                "the blocking quality checks of the candles, so no champion answers on them: "
                + "; ".join(str(v) for v in refused[:5])
                + ("; ..." if len(refused) > 5 else "")
                + f". Fix the source and re-ingest: alphapulse ingest --start {_day(refused[0])} --end {_day(refused[-1])}",
                where="candle quality checks",
            )

    def _check_days(self, spec, dataset, days, stored, symbols, *, strict: bool) -> None:
        missing = [str(d) for d in days if str(d) not in stored]
        if strict and missing:
            raise MissingDataError(
                f"{len(missing)} day(s) of {dataset} missing from the {spec.name} features' look-back of "
                f"{', '.join(symbols)}, {days[0]}..{days[-1]} (first {missing[0]}): "
                f"run alphapulse ingest --start {missing[0]} --end {missing[-1]}",
                where=self.store.url(dataset),
            )

    def _newest_candles(self, spec: CadenceSpec, symbols: list[str]) -> tuple[tuple, pd.DataFrame]:
        """(identity, candles of every symbol) over the look-back of the newest stored day: one listing of the
        store, and a read only when the segments holding those days changed since the last call."""
        dataset = candle_dataset(spec.timeframe)
        segments = self.store.segments(dataset, fresh=True)
        stored = self.store.days_in(segments)
        if not stored:
            raise MissingDataError(
                f"no {spec.timeframe} candles stored for the {spec.name} cadence: run alphapulse ingest",
                where=self.store.url(dataset),
            )
        newest = date.fromisoformat(stored[-1])
        days = [newest - timedelta(days=i) for i in range(self._lookback_days(spec), -1, -1)]
        self._check_days(spec, dataset, days, set(stored), symbols, strict=True)
        identity = (dataset, *(self.store.holder(segments, str(d)) for d in days))
        cached = self._candles.get(dataset)
        if cached is None or cached[0] != identity:
            self._check_quality(spec, [str(d) for d in days], symbols)  # once per new set of candles
            cached = identity, self.store.read_days(dataset, [str(d) for d in days])
            self._candles[dataset] = cached
        return cached

    # -- predictions ------------------------------------------------------------------------------------
    def predict(self, symbol: str, cadence: str = "nightly") -> Prediction:
        """The champion's up-probability for the bar after the newest stored bar of ``symbol``."""
        result = self.predict_all(cadence, [symbol])[symbol.upper()]
        if isinstance(result, Exception):
            raise result
        return result

    def predict_all(
        self, cadence: str = "nightly", symbols: Iterable[str] | None = None
    ) -> dict[str, Prediction | ServingError]:
        """Per symbol (default: every configured one), its Prediction or the ServingError saying why not.

        The candles are read once for all symbols."""
        spec = self.spec(cadence)
        symbols = self._symbols(symbols)
        champions, problems = self._champions(symbols, cadence)
        out: dict[str, Prediction | ServingError] = dict(problems)
        if not champions:
            return out
        try:
            identity, candles = self._newest_candles(spec, list(champions))
        except ServingError as exc:  # the same reason for every symbol served by these candles
            return {s: out.get(s, exc) for s in symbols}
        now = self.clock()
        for symbol, (version, model) in champions.items():
            try:
                key = (symbol, spec.name)
                cached = self._answers.get(key)
                if cached is not None and cached[0] == (version, identity):
                    answer = cached[1]
                else:
                    answer = self._answer(spec, symbol, model, candles)
                    self._answers[key] = (version, identity), answer
                out[symbol] = self._prediction(spec, symbol, version, answer, now)
            except ServingError as exc:
                out[symbol] = exc
        return {s: out[s] for s in symbols}

    def _answer(self, spec: CadenceSpec, symbol: str, model: Any, candles: pd.DataFrame) -> _Answer:
        """The model's answer on the symbol's newest bar, and what the rules need to judge it."""
        rows = candles[candles["symbol"] == symbol]
        if rows.empty:
            raise MissingDataError(
                f"no {spec.timeframe} candles for {symbol} in the newest stored days "
                f"(the {spec.name} features read {spec.warmup_bars} bars)",
                where=f"{candle_dataset(spec.timeframe)}, {symbol}",
            )
        rows, X = candle_features(rows, spec.features)
        X = self._inputs(spec, symbol, X)
        last = X.iloc[[-1]]
        incomplete = tuple(name for name in X.columns if np.isnan(last[name].iloc[0]))
        return _Answer(
            prob=None if incomplete else float(champion_proba(model, last)[0]),
            bar_time=pd.Timestamp(rows["timestamp"].iloc[-1]),
            feature_time=pd.Timestamp(rows.loc[last.index[0], "timestamp"]),
            bars=len(rows),
            incomplete=incomplete,
        )

    def _inputs(self, spec: CadenceSpec, symbol: str, X: pd.DataFrame) -> pd.DataFrame:
        """The columns the champion was trained with, in its order (a feature added since is left out for it)."""
        columns = self._columns.get((symbol, spec.name)) or list(X.columns)
        missing = [c for c in columns if c not in X.columns]
        if missing:
            raise ServingError(
                f"the {spec.name} champion of {symbol} was trained with feature(s) {', '.join(missing)}, not "
                "configured now (ALPHAPULSE_FEATURES__EXTRA): configure them again, or wait for a champion "
                "trained without them",
                where=f"model registry, {symbol}/{spec.name}",
            )
        return X[columns]

    def _prediction(self, spec: CadenceSpec, symbol: str, version: int, answer: _Answer, now: datetime) -> Prediction:
        """The answer as a Prediction, once the data's age and completeness pass (judged at ``now``)."""
        tf = timeframe_to_timedelta(spec.timeframe)
        where = f"{candle_dataset(spec.timeframe)}, {symbol}"
        newest = answer.bar_time
        age = pd.Timestamp(now) - (newest + tf)
        limit_bars = getattr(self.settings.serving.max_data_age, spec.name)
        if age > limit_bars * tf:
            raise StaleDataError(
                f"{symbol}: the newest {spec.timeframe} bar stored ({newest.isoformat()}) closed {duration_text(age)} ago, "
                f"more than the {limit_bars} bars ({duration_text(limit_bars * tf)}) that "
                f"ALPHAPULSE_SERVING__MAX_DATA_AGE__{spec.name.upper()} allows: ingest newer candles",
                where=where,
            )
        if answer.prob is None:
            raise MissingDataError(
                f"{symbol}: only {answer.bars} {spec.timeframe} bar(s) stored up to {newest.isoformat()}, the "
                f"{spec.name} features need {spec.warmup_bars} (a look-back of {spec.warmup_bars - 1} bars); "
                f"incomplete: {', '.join(answer.incomplete)}",
                where=where,
            )
        return Prediction(
            symbol=symbol,
            cadence=spec.name,
            version=version,
            prob_up=answer.prob,
            bar_time=newest,
            for_bar=newest + tf,
            feature_time=answer.feature_time,
            data_age_seconds=float(age.total_seconds()),
            timeframe=spec.timeframe,
            predicted_at=now,
        )

    def predict_days(
        self, cadence: str, days: Iterable[str], symbols: Iterable[str] | None = None
    ) -> tuple[pd.DataFrame, dict[str, ServingError]]:
        """Every bar of ``days`` (UTC dates) that has complete features, with the serving champion's
        up-probability: columns ``SIGNAL_COLUMNS``; and, per symbol not served, why. Bars whose look-back
        reaches before the first stored day get no row. No staleness rule: these are past bars."""
        spec = self.spec(cadence)
        wanted = sorted(date.fromisoformat(str(d)) for d in days)
        champions, problems = self._champions(self._symbols(symbols), cadence)
        frames = []
        if champions and wanted:
            first = wanted[0] - timedelta(days=self._lookback_days(spec))
            span = [first + timedelta(days=i) for i in range((wanted[-1] - first).days + 1)]
            dataset = candle_dataset(spec.timeframe)  # the days themselves must be stored; their look-back may not be
            stored = set(self.store.list_partitions(dataset))
            self._check_days(spec, dataset, wanted, stored, list(champions), strict=True)
            self._check_quality(spec, [str(d) for d in span if str(d) in stored], list(champions))
            candles = self._read(spec, span, list(champions), strict=False)
            tf = timeframe_to_timedelta(spec.timeframe)
            in_days = {d.isoformat() for d in wanted}
            for symbol, (version, model) in champions.items():
                rows = candles[candles["symbol"] == symbol]
                if rows.empty:
                    problems[symbol] = MissingDataError(
                        f"no {spec.timeframe} candles for {symbol} on {wanted[0]}..{wanted[-1]}",
                        where=f"{candle_dataset(spec.timeframe)}, {symbol}",
                    )
                    continue
                rows, X = candle_features(rows, spec.features)
                X = self._inputs(spec, symbol, X)
                keep = (
                    X.notna().all(axis=1).to_numpy()
                    & rows["timestamp"].dt.strftime("%Y-%m-%d").isin(in_days).to_numpy()
                )
                bars = rows.loc[keep, "timestamp"].reset_index(drop=True)
                frames.append(
                    pd.DataFrame(
                        {
                            "symbol": symbol,
                            "cadence": cadence,
                            "bar_time": bars,
                            "for_bar": bars + tf,
                            "version": np.full(len(bars), version, dtype="int64"),
                            "prob_up": champion_proba(model, X[keep]),
                            "role": "champion",
                        }
                    )
                )
        frame = pd.concat(frames, ignore_index=True) if frames else _empty_signals()
        return frame[list(SIGNAL_COLUMNS)], problems


def _empty_signals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": pd.Series(dtype=object),
            "cadence": pd.Series(dtype=object),
            "bar_time": pd.Series(dtype="datetime64[ns, UTC]"),
            "for_bar": pd.Series(dtype="datetime64[ns, UTC]"),
            "version": pd.Series(dtype="int64"),
            "prob_up": pd.Series(dtype="float64"),
            "role": pd.Series(dtype=object),
        }
    )


def _day(verdict: Any) -> str:
    return str(getattr(verdict, "day", verdict))


def duration_text(delta: pd.Timedelta | timedelta) -> str:
    """A duration as an operator reads it, to the minute: '1d 4h 1m', '26h' is '1d 2h', '45s'."""
    seconds = int(pd.Timedelta(delta).total_seconds())
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds}s"
    d, rem = divmod(seconds // 60, 24 * 60)
    h, m = divmod(rem, 60)
    return sign + " ".join(f"{n}{unit}" for n, unit in ((d, "d"), (h, "h"), (m, "m")) if n)
