"""Serving the champions: ``Predictor`` (the current champion's answer for the newest bar), and the recorded
signals (``read_signals``). See README, "Serving"."""

from alphapulse_assets.serving.predictor import (
    ChampionRefusedError,
    MissingDataError,
    NoChampionError,
    Prediction,
    Predictor,
    RefusedDataError,
    ServingError,
    StaleDataError,
)
from alphapulse_assets.serving.signals import SignalStore, read_signals

__all__ = [
    "ChampionRefusedError",
    "MissingDataError",
    "NoChampionError",
    "Prediction",
    "Predictor",
    "RefusedDataError",
    "ServingError",
    "SignalStore",
    "StaleDataError",
    "read_signals",
]
