"""Purged walk-forward splits: asserted on the indices themselves, for many layouts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphapulse_assets.features.indicators import MAX_LOOKBACK
from alphapulse_assets.recovery.errors import PermanentError
from alphapulse_assets.training.splits import purged_walk_forward, required_embargo, split_by_time


def _check_layout(splits, n, n_splits, label_horizon, embargo, min_train_size, test_size=None):
    assert len(splits) == n_splits
    previous_end = -1
    previous_blocks: list[np.ndarray] = []
    for _k, (train, test) in enumerate(splits):
        assert train.dtype.kind == "i" and test.dtype.kind == "i"
        assert len(test) > 0 and np.all(np.diff(test) == 1), "a test block is contiguous"
        if test_size is not None:
            assert len(test) == test_size
        assert test[0] > previous_end, "test blocks are disjoint and in time order"
        assert len(train) >= min_train_size
        assert len(np.intersect1d(train, test)) == 0
        assert np.all(np.diff(train) > 0) and train.min() >= 0
        # purge: no training index within label_horizon bars before (or anywhere after) the test start
        assert train.max() < test[0] - label_horizon
        # embargo: no training index within `embargo` bars after any earlier test block
        for block in previous_blocks:
            gap = np.arange(block[-1] + 1, block[-1] + 1 + embargo)
            assert len(np.intersect1d(train, gap)) == 0
            assert len(np.intersect1d(test, gap)) == 0, "embargoed bars are never tested either"
            # earlier test blocks themselves are training data (expanding window)
            assert np.isin(block[block < test[0] - label_horizon], train).all()
        previous_end = test[-1]
        previous_blocks.append(test)
    assert previous_end == n - 1, "the most recent sample is always tested"
    # everything before the first test block (minus the purge) trains fold 0
    first_train, first_test = splits[0]
    np.testing.assert_array_equal(first_train, np.arange(first_test[0] - label_horizon))


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(20, 3000),
    n_splits=st.integers(1, 8),
    label_horizon=st.integers(0, 30),
    embargo=st.integers(0, 60),
    min_train_size=st.integers(1, 500),
)
def test_walk_forward_layout(n, n_splits, label_horizon, embargo, min_train_size):
    try:
        splits = purged_walk_forward(
            n, n_splits, label_horizon=label_horizon, embargo=embargo, min_train_size=min_train_size
        )
    except PermanentError as exc:
        # refused only when the layout cannot fit, and the message says how much is needed
        assert n < min_train_size + label_horizon + (n_splits - 1) * embargo + n_splits
        assert "need at least" in str(exc)
        return
    _check_layout(splits, n, n_splits, label_horizon, embargo, min_train_size)


def test_fixed_test_size_and_exact_indices():
    splits = purged_walk_forward(30, 2, label_horizon=2, embargo=3, min_train_size=10, test_size=5)
    (train0, test0), (train1, test1) = splits
    np.testing.assert_array_equal(test1, np.arange(25, 30))
    np.testing.assert_array_equal(test0, np.arange(17, 22))  # 22, 23, 24 are the embargo
    np.testing.assert_array_equal(train0, np.arange(0, 15))  # 15, 16 purged
    np.testing.assert_array_equal(train1, np.arange(0, 22))  # 22..24 embargoed (covers the purge 23, 24)
    _check_layout(splits, 30, 2, 2, 3, 10, test_size=5)


def test_purge_longer_than_embargo_still_purges():
    splits = purged_walk_forward(100, 3, label_horizon=10, embargo=2, min_train_size=20)
    _check_layout(splits, 100, 3, 10, 2, 20)
    train2, test2 = splits[2]
    train1, test1 = splits[1]
    # test block 1 trains fold 2, except its last bars that fall inside fold 2's purge
    assert np.isin(test1, train2).any()


def test_too_little_data_is_a_clear_error():
    with pytest.raises(PermanentError, match="too few") as info:
        purged_walk_forward(50, 5, label_horizon=10, embargo=10, min_train_size=40)
    assert info.value.where == "purged_walk_forward"
    with pytest.raises(PermanentError):
        purged_walk_forward(50, 0, label_horizon=1, embargo=1, min_train_size=10)


def test_required_embargo():
    assert required_embargo(10, MAX_LOOKBACK) == 10 + MAX_LOOKBACK
    with pytest.raises(PermanentError):
        required_embargo(-1, 5)


def test_split_by_time_keeps_symbols_together():
    times = pd.date_range("2024-01-01", periods=200, freq="15min", tz="UTC")
    # two symbols stacked (sorted by symbol, then time); the second one starts later
    ts = pd.Series(np.r_[times.to_numpy(), times[20:].to_numpy()])
    splits = split_by_time(ts, 3, label_horizon=4, embargo=6, min_train_size=50)
    bars = purged_walk_forward(200, 3, label_horizon=4, embargo=6, min_train_size=50)
    values = ts.to_numpy()
    unique = np.unique(values)
    for (train_rows, test_rows), (train_bars, test_bars) in zip(splits, bars, strict=False):
        # every row at a training timestamp is training, every row at a test timestamp is test
        assert set(values[train_rows]) == set(unique[train_bars])
        assert set(values[test_rows]) == set(unique[test_bars])
        assert np.isin(values, unique[train_bars]).sum() == len(train_rows)
        assert np.isin(values, unique[test_bars]).sum() == len(test_rows)
        # no timestamp is both trained on and tested, and training ends label_horizon bars before test
        assert values[train_rows].max() < values[test_rows].min() - np.timedelta64(4 * 15, "m")
