"""Purged, embargoed expanding-window walk-forward splits for time-ordered samples.

Layout over the time index 0 .. n-1 (``p`` purged, ``g`` embargo gap: never used by any fold)::

    fold 0:  [train ...............]  p  [test B0]
    fold 1:  [train ........................ B0]  g  [test B1]
    fold 2:  [train ........................ B0]  g  [train B1]  g  [test B2]

(drawn with embargo >= label_horizon, so each later purge lies inside the gap before its block)

- Test blocks are disjoint, in time order, and the last one ends at the last sample, so the most recent
  data is always tested.
- Purge: a sample's label looks ``label_horizon`` bars ahead, so training samples in the
  ``label_horizon`` bars before a test block (whose labels overlap the test period) are dropped.
- Embargo: the ``embargo`` bars after every test block are never used, neither for training nor for
  testing. How it applies to an expanding window: in k-fold CV (Lopez de Prado) the embargo protects
  training samples that FOLLOW a test block, whose features were computed from the test period. An
  expanding walk-forward never trains on samples after the block it scores, so for the current fold
  the embargo has nothing left to protect; it applies to the later folds, whose training windows
  contain earlier test blocks. Leaving a gap after each block keeps every fold's training set free of
  samples whose features or labels overlap any block that has been used for scoring (so scores from
  one fold, e.g. used to pick hyper-parameters, do not leak into the next fold's model), and spaces the
  test blocks so their errors are less correlated. When ``embargo >= label_horizon`` the gap also covers
  the next fold's purge.
- ``required_embargo(label_horizon, max_lookback)`` is the gap after which a sample shares no bar with
  a test block's features or labels: use it unless data is scarce.

``split_by_time`` applies the same splits when several symbols are stacked: it splits the sorted unique
timestamps and maps each block back to all rows at those timestamps, so no symbol's row at time t can be
trained on while another symbol's row at t is tested.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphapulse_assets.recovery.errors import PermanentError

Split = tuple[np.ndarray, np.ndarray]


def required_embargo(label_horizon: int, max_lookback: int) -> int:
    """Bars after a test block before a sample shares nothing with it.

    The last test sample, at E, has a label reading bars up to E + label_horizon; a sample at r reads
    features from bars r - max_lookback .. r (its own label reads later bars still). The two share no
    bar once r - max_lookback > E + label_horizon, i.e. after ``label_horizon + max_lookback`` bars.
    """
    if label_horizon < 0 or max_lookback < 0:
        raise PermanentError(
            f"label_horizon and max_lookback must be >= 0, got {label_horizon} and {max_lookback}",
            where="required_embargo",
        )
    return int(label_horizon) + int(max_lookback)


def purged_walk_forward(
    n_samples: int,
    n_splits: int,
    *,
    label_horizon: int,
    embargo: int,
    min_train_size: int,
    test_size: int | None = None,
) -> list[Split]:
    """Expanding-window walk-forward splits as (train_idx, test_idx) int arrays, in time order.

    ``test_size=None`` makes the blocks as large as the data allows once the first fold has at least
    ``min_train_size`` training samples. Raises ``PermanentError`` naming the shortfall when the data is
    too short for the requested layout.
    """
    where = "purged_walk_forward"
    for name, value in (("label_horizon", label_horizon), ("embargo", embargo), ("min_train_size", min_train_size)):
        if value < 0:
            raise PermanentError(f"{name} must be >= 0, got {value}", where=where)
    if n_splits < 1:
        raise PermanentError(f"n_splits must be >= 1, got {n_splits}", where=where)
    min_train_size = max(int(min_train_size), 1)
    gaps = (n_splits - 1) * embargo
    available = n_samples - min_train_size - label_horizon - gaps
    if test_size is None:
        test_size = available // n_splits
    if test_size < 1 or n_splits * test_size > available:
        need = min_train_size + label_horizon + gaps + n_splits * max(int(test_size), 1)
        raise PermanentError(
            f"{n_samples} samples are too few for {n_splits} test blocks of {max(int(test_size), 1)} after "
            f"{min_train_size} training samples, a purge of {label_horizon} and {n_splits - 1} embargo gaps "
            f"of {embargo}: need at least {need}",
            where=where,
        )

    all_idx = np.arange(n_samples)
    usable = np.ones(n_samples, dtype=bool)  # cleared for test blocks' embargo gaps as we go
    splits: list[Split] = []
    for k in range(n_splits):
        start = n_samples - (n_splits - k) * test_size - (n_splits - 1 - k) * embargo
        stop = start + test_size
        train_mask = usable[: max(start - label_horizon, 0)]
        train = all_idx[: len(train_mask)][train_mask]
        splits.append((train, all_idx[start:stop].copy()))
        usable[stop : stop + embargo] = False
    return splits


def split_by_time(
    timestamps: pd.Series | pd.DatetimeIndex | np.ndarray,
    n_splits: int,
    *,
    label_horizon: int,
    embargo: int,
    min_train_size: int,
    test_size: int | None = None,
) -> list[Split]:
    """``purged_walk_forward`` over the distinct timestamps, mapped back to row positions.

    ``timestamps`` holds one entry per row in any order (e.g. candles stacked by symbol); all sizes are
    counted in distinct timestamps (bars), not rows. Returned arrays are positional row indices, sorted.
    """
    values = np.asarray(pd.Series(timestamps).to_numpy())
    unique, inverse = np.unique(values, return_inverse=True)
    splits = purged_walk_forward(
        len(unique),
        n_splits,
        label_horizon=label_horizon,
        embargo=embargo,
        min_train_size=min_train_size,
        test_size=test_size,
    )
    out: list[Split] = []
    for train_t, test_t in splits:
        in_train = np.zeros(len(unique), dtype=bool)
        in_train[train_t] = True
        in_test = np.zeros(len(unique), dtype=bool)
        in_test[test_t] = True
        out.append((np.flatnonzero(in_train[inverse]), np.flatnonzero(in_test[inverse])))
    return out
