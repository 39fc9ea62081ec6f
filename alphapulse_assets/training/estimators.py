"""Which classifier a cadence trains: a built-in name, or any scikit-learn compatible class by dotted path.

Built-ins: ``sgd`` (scaler + SGD logistic regression, warm-started nightly), ``hgb`` (regularised histogram
gradient boosting) and ``hgb_search`` (the same with the cadence's parameter grid). Anything else is a dotted
path to a class (``sklearn.ensemble.RandomForestClassifier``, ``mypkg.models:MyClassifier``), set per cadence
with ``ALPHAPULSE_<CADENCE>__ESTIMATOR`` and built with ``ALPHAPULSE_<CADENCE>__ESTIMATOR_PARAMS`` (JSON). It is
checked at start (importable, a class with ``fit`` and ``predict_proba``, accepts the parameters) and goes
through the same walk-forward evaluation and gate as the built-ins.

The model registry saves models with skops and loads only trusted types: scikit-learn and NumPy classes, plus
the classes configured here (:func:`trusted_type_names`), since an operator who names a class in the settings
trusts it. This module does not import Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alphapulse_assets.features.user import FeatureError, import_object
from alphapulse_assets.recovery.errors import DataValidationError

BUILT_IN_ESTIMATORS = ("sgd", "hgb", "hgb_search")


class EstimatorError(DataValidationError):
    """A configured estimator cannot be used; the message names the setting and the dotted path."""


def setting_name(cadence: str, field: str = "estimator") -> str:
    return f"ALPHAPULSE_{cadence.upper()}__{field.upper()}"


def is_built_in(estimator: str) -> bool:
    return estimator in BUILT_IN_ESTIMATORS


def estimator_class(path: str, setting: str) -> type:
    """The class named by ``path``, checked: a class with ``fit`` and ``predict_proba``."""
    where = f"{setting} ({path})"
    try:
        cls = import_object(path, setting)
    except FeatureError as exc:
        raise EstimatorError(exc.message, where=where) from exc
    if not isinstance(cls, type):
        raise EstimatorError(
            f"{setting}={path!r} is a {type(cls).__name__}, not a class (name the classifier's class)", where=where
        )
    missing = [m for m in ("fit", "predict_proba") if not callable(getattr(cls, m, None))]
    if missing:
        raise EstimatorError(
            f"{setting}={path!r}: {cls.__name__} has no {' or '.join(missing)} (a scikit-learn compatible "
            "classifier with predict_proba is needed)",
            where=where,
        )
    return cls


def make_user_estimator(path: str, params: Mapping[str, Any], setting: str) -> Any:
    """A new, unfitted instance of the configured class with ``params``."""
    cls = estimator_class(path, setting)
    try:
        return cls(**dict(params))
    except TypeError as exc:
        raise EstimatorError(
            f"{setting.replace('ESTIMATOR', 'ESTIMATOR_PARAMS')}={dict(params)!r}: {cls.__name__} refuses them: {exc}",
            where=setting,
        ) from exc


def check_estimator(cadence: str, estimator: str, params: Mapping[str, Any]) -> None:
    """Refuse an unusable configured estimator at start (names the variable and the path)."""
    if is_built_in(estimator):
        if params and estimator == "hgb_search":
            raise EstimatorError(
                f"{setting_name(cadence, 'estimator_params')}: hgb_search takes its parameters from its grid",
                where=setting_name(cadence, "estimator_params"),
            )
        return
    make_user_estimator(estimator, params, setting_name(cadence))


def trusted_type_names(estimators: Mapping[str, str]) -> tuple[str, ...]:
    """The type names skops records for the configured classes (``module.QualName``), for the registry."""
    names = []
    for cadence, path in estimators.items():
        if path and not is_built_in(path):
            cls = estimator_class(path, setting_name(cadence))
            names.append(f"{cls.__module__}.{cls.__qualname__}")
    return tuple(sorted(set(names)))
