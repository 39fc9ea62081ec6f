"""One symbol's training for one cadence, as a plain function: data -> evaluated challenger.

``train_challenger`` builds features and labels from candles, evaluates the estimator out of sample with
purged walk-forward splits (embargo = label horizon + longest feature look-back), next to the naive
baselines and with a paired block-bootstrap test of the log-loss difference, then fits the model to
serve. The Dagster assets and the benchmark's plain loop both call it, so they do the same work.

Cadences differ only by their ``CadenceSpec``:

- nightly: an online linear learner (standardise + SGD logistic regression) warm-started from the
  current champion and updated with ``partial_fit``; validated on the newest day, which neither the
  champion nor the update has seen, so the model promoted is exactly the model evaluated;
- weekly: gradient boosting retrained on 10 weeks of 1h bars;
- monthly: gradient boosting on 18 months of 4h bars, hyper-parameters chosen by walk-forward log loss.

A spec may name a user's estimator (a scikit-learn compatible class by dotted path, ``estimators.py``) and
carry user features (``features/user.py``): their look-backs enter the embargo and the warm-up, and the
evaluation and the gate are the same.

This module does not import Dagster.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from alphapulse_assets.features.labels import forward_returns, last_direction, make_labels
from alphapulse_assets.features.user import BUILT_IN, FeatureSet, configured_feature_set
from alphapulse_assets.market_data.calendars import DEFAULT_SESSION_HOURS, Annualisation, annualisation
from alphapulse_assets.market_data.schema import timeframe_to_timedelta
from alphapulse_assets.recovery.errors import DataValidationError
from alphapulse_assets.training.estimators import is_built_in, make_user_estimator, setting_name
from alphapulse_assets.training.evaluation import EvaluationReport, evaluate, naive_baselines, per_sample_log_loss
from alphapulse_assets.training.significance import SignificanceResult, paired_bootstrap
from alphapulse_assets.training.splits import required_embargo, split_by_time

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


class NothingNewerThanChampion(DataValidationError):
    """A warm start was asked for, but the champion has already seen every training bar of the window."""


@dataclass(frozen=True)
class CadenceSpec:
    name: str
    timeframe: str
    window_days: int
    estimator: str  # "sgd" (warm-startable) | "hgb" | "hgb_search" | a classifier's dotted path
    n_splits: int
    # Next-bar direction by default: on the sample market it is the label whose edge is measurable (see
    # features/labels.py for the triple-barrier figures); choose "triple_barrier" with its params to switch.
    label: dict[str, Any] = field(default_factory=lambda: {"name": "direction", "params": {"horizon": 1}})
    # Test rows per split in bars; None lets the splitter use all the data after the first training block.
    test_bars: int | None = None
    min_train_bars: int = 300
    search_grid: tuple[dict[str, Any], ...] = ()
    seed: int = 0
    # Costs of the long/flat strategy behind the Sharpe figure (ALPHAPULSE_COSTS__*), in bps per position change.
    fee_bps: float = 10.0
    slippage_bps: float = 0.0
    # Market calendar for the Sharpe annualisation (ALPHAPULSE_CALENDAR__*): crypto, fx, exchange, or auto
    # (inferred from the bars' times, market_data/calendars.py).
    calendar: str = "auto"
    calendar_by_symbol: dict[str, str] = field(default_factory=dict)
    session_hours: float = DEFAULT_SESSION_HOURS
    # The features trained on: the built-ins plus the user's (their look-backs enter the embargo).
    features: FeatureSet = BUILT_IN
    # Parameters of a user's estimator (a built-in takes its own defaults, or the search grid).
    estimator_params: dict[str, Any] = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return int(self.label["params"].get("horizon", 1))

    @property
    def embargo(self) -> int:
        return required_embargo(self.horizon, self.features.max_lookback)

    @property
    def warmup_bars(self) -> int:
        return self.features.max_lookback + 1


META_COLUMNS = ("symbol", "timestamp", "label", "forward_return", "last_direction")


@dataclass
class Dataset:
    """A training set: feature matrix, label, one-bar forward return and last direction per row."""

    X: pd.DataFrame
    y: np.ndarray
    forward: np.ndarray
    last_dir: np.ndarray
    timestamps: pd.Series
    symbols: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def _rows(self, m: np.ndarray) -> Dataset:
        """The rows where the boolean mask ``m`` is true, as a Dataset of their own."""
        return Dataset(
            self.X[m].reset_index(drop=True),
            self.y[m],
            self.forward[m],
            self.last_dir[m],
            self.timestamps[m].reset_index(drop=True),
            self.symbols[m],
        )

    def for_symbol(self, symbol: str) -> Dataset:
        m = self.symbols == symbol
        if not m.any():
            raise DataValidationError(f"no training rows for {symbol}", where="training set")
        return self._rows(m)

    def by_symbol(self, symbols: Sequence[str]) -> dict[str, Dataset]:
        """``for_symbol`` of each of ``symbols`` in one pass over the rows (one pass per symbol would grow
        with symbols x rows); the same rows in the same order."""
        order = np.argsort(self.symbols, kind="stable")
        ordered = self.symbols[order]
        starts = np.concatenate(([0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1, [len(ordered)]))
        found = {ordered[a]: order[a:b] for a, b in zip(starts[:-1], starts[1:], strict=True) if b > a}
        missing = [s for s in symbols if s not in found]
        if missing:
            raise DataValidationError(f"no training rows for {', '.join(missing)}", where="training set")
        return {s: self._take(found[s]) for s in symbols}

    def _take(self, index: np.ndarray) -> Dataset:
        return Dataset(
            self.X.iloc[index].reset_index(drop=True),
            self.y[index],
            self.forward[index],
            self.last_dir[index],
            self.timestamps.iloc[index].reset_index(drop=True),
            self.symbols[index],
        )

    def since(self, start: pd.Timestamp) -> Dataset:
        m = (self.timestamps >= start).to_numpy()
        return self._rows(m)

    def between(self, start: pd.Timestamp, end: pd.Timestamp) -> Dataset:
        """Rows with start <= timestamp < end (one partition's window inside a backfill's training set)."""
        m = ((self.timestamps >= start) & (self.timestamps < end)).to_numpy()
        return self._rows(m)

    def to_frame(self) -> pd.DataFrame:
        """One row per sample: symbol, timestamp, label, forward, last_dir and the features (for storage)."""
        # .array keeps the tz-aware datetime64 values; .to_numpy() would box every timestamp into an object.
        meta = pd.DataFrame(
            {
                "symbol": self.symbols,
                "timestamp": self.timestamps.array,
                "label": self.y,
                "forward_return": self.forward,
                "last_direction": self.last_dir,
            }
        )
        return pd.concat([meta, self.X.reset_index(drop=True)], axis=1)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Dataset:
        """The inverse of ``to_frame``: every column after the five leading ones is a feature."""
        return cls(
            frame[list(frame.columns[len(META_COLUMNS) :])].reset_index(drop=True),
            frame["label"].to_numpy(),
            frame["forward_return"].to_numpy(),
            frame["last_direction"].to_numpy(),
            frame["timestamp"].reset_index(drop=True),
            frame["symbol"].to_numpy().astype(object),
        )


@dataclass
class Challenger:
    symbol: str
    cadence: str
    model: Any
    report: EvaluationReport
    significance: dict[str, SignificanceResult]
    oos: pd.DataFrame  # timestamp, y, proba, and each baseline's proba, for champion comparison
    params: dict[str, Any]
    data_start: pd.Timestamp
    data_end: pd.Timestamp
    n_train: int
    warm_started_from: int | None = None
    search_scores: dict[str, float] = field(default_factory=dict)
    annualisation: Annualisation | None = None

    @property
    def costs(self) -> dict[str, float]:
        return {"fee_bps": self.report.fee_bps, "slippage_bps": self.report.slippage_bps}

    @property
    def n_validation(self) -> int:
        return len(self.oos)


def naive_utc(timestamps: pd.Series) -> np.ndarray:
    """UTC timestamps as naive datetime64[ns], for fast comparisons and joins."""
    return pd.DatetimeIndex(timestamps).tz_convert("UTC").tz_localize(None).to_numpy()


def candle_features(candles: pd.DataFrame, features: FeatureSet = BUILT_IN) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(candles sorted by symbol and time, their features): the one way features are made, for training
    (``make_dataset``) and for serving (the newest bars, whose labels are not known yet)."""
    candles = candles.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    return candles, features.build(candles)


def make_dataset(candles: pd.DataFrame, spec: CadenceSpec) -> Dataset:
    """Features, label, forward return and last direction for every bar that has all of them."""
    if candles.empty:
        raise DataValidationError("no candles in the training window", where=f"{spec.name} training set")
    candles, X = candle_features(candles, spec.features)
    y = make_labels(candles, spec.label["name"], **spec.label["params"]).to_numpy()
    # One-bar forward returns: the long/flat strategy re-decides its position every bar.
    fwd = forward_returns(candles, 1).to_numpy()
    last = last_direction(candles, 1).to_numpy()
    ok = X.notna().all(axis=1).to_numpy() & ~np.isnan(y) & ~np.isnan(fwd) & ~np.isnan(last)
    return Dataset(
        X[ok].reset_index(drop=True),
        y[ok],
        fwd[ok],
        last[ok],
        candles.loc[ok, "timestamp"].reset_index(drop=True),
        candles.loc[ok, "symbol"].to_numpy().astype(object),
    )


def new_estimator(kind: str, seed: int, **params: Any) -> Any:
    # scikit-learn is imported here, on first use: its import is about 1 s of the 3 s that every process loading
    # the definitions pays (bench/README.md, "Import time"), and only training steps build an estimator.
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "sgd":
        return Pipeline(
            [
                ("scale", StandardScaler()),
                (
                    "sgd",
                    SGDClassifier(
                        loss="log_loss",
                        alpha=params.get("alpha", 0.05),
                        learning_rate="adaptive",
                        eta0=params.get("eta0", 0.01),
                        random_state=seed,
                    ),
                ),
            ]
        )
    # Strongly regularised: the signal in market data is weak, and an unconstrained booster memorises noise.
    defaults = {
        "learning_rate": 0.03,
        "max_iter": 60,
        "max_leaf_nodes": 7,
        "min_samples_leaf": 100,
        "l2_regularization": 5.0,
    }
    defaults.update(params)
    return HistGradientBoostingClassifier(early_stopping=False, random_state=seed, **defaults)


def _partial_fit(model: Pipeline, X: np.ndarray, y: np.ndarray, epochs: int) -> Pipeline:
    """Update a scaler+SGD pipeline in place with new rows (the nightly warm start)."""
    scale, sgd = model.named_steps["scale"], model.named_steps["sgd"]
    scale.partial_fit(X)
    Xs = scale.transform(X)
    rng = np.random.default_rng(len(y))
    for _ in range(epochs):
        order = rng.permutation(len(y))
        sgd.partial_fit(Xs[order], y[order], classes=np.array([0.0, 1.0]))
    return model


def _fit(spec: CadenceSpec, X: np.ndarray, y: np.ndarray, params: dict[str, Any], warm: Any | None) -> Any:
    if not is_built_in(spec.estimator):
        if len(np.unique(y)) < 2:
            raise DataValidationError("the training labels have a single class", where=f"{spec.name} training")
        model = make_user_estimator(spec.estimator, spec.estimator_params, setting_name(spec.name))
        return model.fit(X, y)
    if spec.estimator == "sgd":
        if warm is not None:
            return _partial_fit(copy.deepcopy(warm), X, y, epochs=1)
        return _partial_fit(new_estimator("sgd", spec.seed, **params), X, y, epochs=5)
    if len(np.unique(y)) < 2:
        raise DataValidationError("the training labels have a single class", where=f"{spec.name} training")
    return new_estimator("hgb", spec.seed, **params).fit(X, y)


def _walk_forward(
    ds: Dataset, spec: CadenceSpec, params: dict[str, Any], warm: Any | None, warm_data_end: pd.Timestamp | None
):
    splits = split_by_time(
        ds.timestamps,
        spec.n_splits,
        label_horizon=spec.horizon,
        embargo=spec.embargo,
        min_train_size=spec.min_train_bars,
        test_size=spec.test_bars,
    )
    X = ds.X.to_numpy()
    ts = naive_utc(ds.timestamps)
    parts = []
    last_model, last_train_end = None, None
    for train, test in splits:
        if warm is not None and warm_data_end is not None:
            # A warm-started learner has already seen everything up to its data end: train on what is newer.
            train = train[ts[train] > np.datetime64(warm_data_end.tz_convert("UTC").tz_localize(None))]
            if len(train) == 0:
                raise NothingNewerThanChampion(
                    "no bars newer than the champion's training data to update it with", where=f"{spec.name} training"
                )
        model = _fit(spec, X[train], ds.y[train], params, warm)
        last_model, last_train_end = model, pd.Timestamp(ts[train].max(), tz="UTC")
        proba = model.predict_proba(X[test])[:, 1]
        base = naive_baselines(ds.y[train], ds.y[test], ds.last_dir[test], last_direction_train=ds.last_dir[train])
        parts.append(
            pd.DataFrame(
                {
                    "row": test,
                    "timestamp": ts[test],
                    "y": ds.y[test],
                    "proba": proba,
                    "forward": ds.forward[test],
                    **{f"baseline_{k}": v for k, v in base.items()},
                }
            )
        )
    return pd.concat(parts, ignore_index=True), last_model, last_train_end


def block_length(spec: CadenceSpec, n: int) -> int:
    """Bootstrap block: about a day of bars (losses are autocorrelated within a day), at least 20 blocks."""
    per_day = max(int(pd.Timedelta(days=1) / timeframe_to_timedelta(spec.timeframe)), 1)
    return max(2 * spec.horizon, min(per_day, max(n // 20, 1)))


def train_challenger(
    data: pd.DataFrame | Dataset,
    spec: CadenceSpec,
    *,
    symbol: str,
    warm_model: Any | None = None,
    warm_version: int | None = None,
    warm_data_end: pd.Timestamp | None = None,
    n_boot: int = 500,
) -> Challenger:
    """Evaluate and fit one symbol's challenger for ``spec`` on its candles or its training set."""
    ds = data if isinstance(data, Dataset) else make_dataset(data, spec)
    if spec.estimator == "sgd" and warm_model is None:
        warm_data_end = None
    grid = spec.search_grid if spec.estimator == "hgb_search" and spec.search_grid else ({},)
    scores: dict[str, float] = {}
    best = None
    for params in grid:
        oos, last_model, last_train_end = _walk_forward(
            ds, spec, dict(params), warm_model if spec.estimator == "sgd" else None, warm_data_end
        )
        score = float(per_sample_log_loss(oos["y"], oos["proba"]).mean())
        scores[repr(sorted(params.items()))] = score
        if best is None or score < best[0]:
            best = (score, dict(params), oos, last_model, last_train_end)
    _, params, oos, last_model, last_train_end = best
    baseline_cols = [c for c in oos.columns if c.startswith("baseline_")]
    calendar = spec.calendar_by_symbol.get(symbol.upper(), spec.calendar)
    annual = annualisation(spec.timeframe, calendar, ds.timestamps, spec.session_hours)
    report = evaluate(
        oos["y"],
        oos["proba"],
        oos["forward"],
        {c[len("baseline_") :]: oos[c] for c in baseline_cols},
        annual.bars_per_year,
        fee_bps=spec.fee_bps,
        slippage_bps=spec.slippage_bps,
        groups=None,
    )
    loss_model = per_sample_log_loss(oos["y"], oos["proba"])
    significance = {
        c[len("baseline_") :]: paired_bootstrap(
            loss_model,
            per_sample_log_loss(oos["y"], oos[c]),
            n_boot=n_boot,
            block=block_length(spec, len(oos)),
            seed=spec.seed,
        )
        for c in baseline_cols
        if c != "baseline_persistence"  # hard 0/1 forecasts have unbounded log loss
    }
    data_end = pd.Timestamp(ds.timestamps.max())
    if spec.estimator == "sgd":
        # The model promoted is the model evaluated (see module docstring); it has seen data up to the
        # end of its training rows, which is where tomorrow's update starts.
        model, data_end = last_model, last_train_end
    else:
        model = _fit(spec, ds.X.to_numpy(), ds.y, params, None)
    n_train = len(ds)
    return Challenger(
        symbol=symbol,
        cadence=spec.name,
        model=model,
        report=report,
        significance=significance,
        oos=oos,
        params={
            "estimator": spec.estimator,
            **(params if is_built_in(spec.estimator) else spec.estimator_params),
            "label": spec.label,
            "timeframe": spec.timeframe,
            "embargo_bars": spec.embargo,
            "n_splits": spec.n_splits,
        },
        data_start=pd.Timestamp(ds.timestamps.min()),
        data_end=data_end,
        n_train=n_train,
        warm_started_from=warm_version if warm_model is not None else None,
        search_scores=scores if len(grid) > 1 else {},
        annualisation=annual,
    )


def predict_features(model: Any, X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """P(label = 1) for every row of a feature matrix (``FEATURE_NAMES`` columns)."""
    values = X.to_numpy() if isinstance(X, pd.DataFrame) else X
    return model.predict_proba(values)[:, 1] if len(values) else np.empty(0)


def predict_dataset(model: Any, ds: Dataset) -> np.ndarray:
    """P(label = 1) for every row of a training set."""
    return predict_features(model, ds.X)


DEFAULT_SPECS: dict[str, CadenceSpec] = {
    "nightly": CadenceSpec("nightly", "15m", window_days=16, estimator="sgd", n_splits=1, test_bars=192),
    "weekly": CadenceSpec("weekly", "1h", window_days=70, estimator="hgb", n_splits=4),
    "monthly": CadenceSpec(
        "monthly",
        "4h",
        window_days=548,
        estimator="hgb_search",
        n_splits=4,
        search_grid=(
            {"learning_rate": 0.03, "max_leaf_nodes": 7},
            {"learning_rate": 0.03, "max_leaf_nodes": 15, "min_samples_leaf": 200},
            {"learning_rate": 0.06, "max_leaf_nodes": 5, "max_iter": 40},
        ),
    ),
}


# Where each bar size's candles are stored: the base bars, and the bars resampled from them.
RESAMPLED_DATASETS = {"1h": "candles_1h", "4h": "candles_4h"}
BASE_DATASET = "market_candles"


def candle_dataset(timeframe: str) -> str:
    """The candle dataset (and asset) that holds bars of ``timeframe``."""
    return RESAMPLED_DATASETS.get(timeframe, BASE_DATASET)


def cadence_spec(name: str, settings: Any) -> CadenceSpec:
    """The cadence's spec with what its settings give: bar size and window (``ALPHAPULSE_<CADENCE>__...``), trading
    costs (``ALPHAPULSE_COSTS__...``), market calendar (``ALPHAPULSE_CALENDAR__...``), the user's features
    (``ALPHAPULSE_FEATURES__EXTRA``) and estimator (``ALPHAPULSE_<CADENCE>__ESTIMATOR``)."""
    base = DEFAULT_SPECS[name]
    cfg = getattr(settings, name)
    changes = {
        "timeframe": cfg.timeframe,
        "window_days": cfg.window_days,
        "fee_bps": settings.costs.fee_bps,
        "slippage_bps": settings.costs.slippage_bps,
        "calendar": settings.calendar.market,
        "calendar_by_symbol": dict(settings.calendar.by_symbol),
        "session_hours": settings.calendar.session_hours,
        "features": configured_feature_set(tuple(settings.features.extra)),
    }
    if cfg.estimator:  # ALPHAPULSE_<CADENCE>__ESTIMATOR: a built-in name or a classifier's dotted path
        changes.update(estimator=cfg.estimator, estimator_params=dict(cfg.estimator_params))
    return CadenceSpec(**{**base.__dict__, **changes})
