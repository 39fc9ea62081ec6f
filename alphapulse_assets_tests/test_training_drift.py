"""Feature drift: PSI and quantile-approximated KS against a JSON-sized training profile."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from alphapulse_assets.recovery.errors import DataValidationError, ErrorClass, PermanentError
from alphapulse_assets.training.drift import (
    EPSILON,
    DriftReport,
    drift_report,
    ks_statistic,
    psi,
    reference_profile,
)

N_REF = 5000


def ks_bound(n_quantiles: int, n_ref: int) -> float:
    """The documented approximation bound of ``ks_statistic`` against the exact two-sample statistic."""
    return 1.0 / (n_quantiles - 1) + 2.0 / n_ref


@pytest.fixture(scope="module")
def training():
    rng = np.random.default_rng(11)
    return pd.DataFrame(
        {
            "ret_1": rng.normal(0.0, 1.0, N_REF),
            "vol_20": rng.lognormal(0.0, 0.5, N_REF),
            "rsi_14": rng.uniform(0, 100, N_REF),
        }
    )


@pytest.fixture(scope="module")
def profile(training):
    return reference_profile(training)


# -- profile -------------------------------------------------------------------------------------------
def test_profile_holds_the_quantiles_and_drops_nan(training):
    frame = training.copy()
    frame.loc[::7, "ret_1"] = np.nan
    frame.loc[3, "vol_20"] = np.inf
    prof = reference_profile(frame, n_quantiles=11)
    assert list(prof) == ["ret_1", "vol_20", "rsi_14"]
    assert all(len(q) == 11 for q in prof.values())
    clean = frame["ret_1"].dropna().to_numpy()
    assert prof["ret_1"][0] == clean.min() and prof["ret_1"][-1] == clean.max()
    assert prof["ret_1"][5] == pytest.approx(np.median(clean))
    assert all(math.isfinite(v) for q in prof.values() for v in q)  # the inf was dropped, not profiled
    assert all(np.all(np.diff(q) >= 0) for q in prof.values())


def test_profile_round_trips_through_json(profile, training):
    text = json.dumps({"drift_profile": profile})  # what goes into the registry's info
    back = json.loads(text)["drift_profile"]
    assert back == profile
    assert all(type(v) is float for q in back.values() for v in q)
    recent = training.sample(1000, random_state=3)
    assert drift_report(back, recent) == drift_report(profile, recent)
    assert len(text) < 20_000  # small enough for a registry row: 3 features x 101 floats


def test_profile_refuses_bad_input():
    with pytest.raises(DataValidationError, match="'empty' has no finite values"):
        reference_profile(pd.DataFrame({"ok": [1.0, 2.0], "empty": [np.nan, np.nan]}))
    with pytest.raises(DataValidationError, match="'name' is not numeric"):
        reference_profile(pd.DataFrame({"name": ["a", "b"]}))
    with pytest.raises(DataValidationError, match="no feature columns"):
        reference_profile(pd.DataFrame(index=range(3)))
    with pytest.raises(PermanentError, match="at least 2"):
        reference_profile(pd.DataFrame({"x": [1.0, 2.0]}), n_quantiles=1)


# -- PSI and KS on known distributions ---------------------------------------------------------------------
def test_identical_distribution_gives_near_zero(profile):
    rng = np.random.default_rng(12)
    recent = pd.DataFrame(
        {
            "ret_1": rng.normal(0.0, 1.0, 3000),
            "vol_20": rng.lognormal(0.0, 0.5, 3000),
            "rsi_14": rng.uniform(0, 100, 3000),
        }
    )
    report = drift_report(profile, recent)
    assert report.passed and report.drifted == []
    assert report.max_psi < 0.02  # sampling noise only: about (bins - 1) * (1/N + 1/n)
    assert report.max_ks < 0.04  # 1.36 * sqrt(1/N + 1/n) is the 95% critical value, ~0.032
    assert set(report.psi) == set(report.ks) == {"ret_1", "vol_20", "rsi_14"}
    assert report.n_recent == {"ret_1": 3000, "vol_20": 3000, "rsi_14": 3000}


def test_the_training_data_itself_has_psi_and_ks_zero(training, profile):
    for name, q in profile.items():
        assert psi(q, training[name]) == pytest.approx(0.0, abs=1e-3)
        assert ks_statistic(q, training[name]) <= ks_bound(101, N_REF)


def test_mean_shift_of_one_sd_drifts_both(profile, training):
    rng = np.random.default_rng(13)
    recent = training.sample(2000, random_state=1).copy()
    recent["ret_1"] = rng.normal(1.0, 1.0, 2000)  # +1 sd
    report = drift_report(profile, recent)
    assert report.psi["ret_1"] > 0.25 and report.ks["ret_1"] > 0.15
    assert report.ks["ret_1"] == pytest.approx(0.383, abs=0.03)  # 2 * Phi(0.5) - 1, the population value
    assert report.drifted == ["ret_1"] and not report.passed
    assert report.max_psi == report.psi["ret_1"] and report.max_ks == report.ks["ret_1"]


def test_variance_change_is_detected_by_ks(profile):
    rng = np.random.default_rng(14)
    wider = rng.normal(0.0, 3.0, 2000)  # same mean and median, three times the spread
    assert ks_statistic(profile["ret_1"], wider) > 0.15
    assert ks_statistic(profile["ret_1"], wider) == pytest.approx(0.24, abs=0.03)
    narrower = rng.normal(0.0, 1 / 3, 2000)
    assert ks_statistic(profile["ret_1"], narrower) > 0.15


def test_psi_of_a_known_shift_matches_the_formula():
    """Reference uniform on [0, 10): deciles are the integers; recent all in the first decile."""
    q = list(np.linspace(0.0, 10.0, 101))
    recent = np.full(100, 0.5)
    p, r = 0.1, 1.0
    expected = (r - p) * math.log(r / p) + 9 * (EPSILON - p) * math.log(EPSILON / p)
    assert psi(q, recent) == pytest.approx(expected, rel=1e-9)
    # half in the first decile, half in the last
    recent = np.r_[np.full(50, 0.5), np.full(50, 9.5)]
    expected = 2 * (0.5 - 0.1) * math.log(5.0) + 8 * (EPSILON - 0.1) * math.log(EPSILON / 0.1)
    assert psi(q, recent) == pytest.approx(expected, rel=1e-9)
    # the KS statistic of a point mass at 0.5 against U(0, 10): F(0.5) = 0.05, so sup |F - G| = 0.95
    assert ks_statistic(q, np.full(10, 0.5)) == pytest.approx(0.95)


def test_psi_bins_parameter():
    q = list(np.linspace(0.0, 1.0, 101))
    recent = np.linspace(0.0, 0.5, 1000)
    assert psi(q, recent, bins=2) == pytest.approx(
        (1 - 0.5) * math.log(1 / 0.5) + (EPSILON - 0.5) * math.log(EPSILON / 0.5), rel=1e-3
    )
    # 20 bins: ten hold 0.1 of the recent values each (reference 0.05), ten are empty
    expected_20 = 10 * (0.1 - 0.05) * math.log(2) + 10 * (EPSILON - 0.05) * math.log(EPSILON / 0.05)
    assert psi(q, recent, bins=20) == pytest.approx(expected_20, rel=1e-2)
    with pytest.raises(PermanentError, match="at least 2 bins"):
        psi(q, recent, bins=1)


# -- defined values and errors -------------------------------------------------------------------------------
def test_constant_feature_is_a_point_mass_with_defined_values():
    """Defined values, not errors: a constant reference is a point mass, nothing divides by its spread."""
    prof = reference_profile(pd.DataFrame({"flag": np.full(500, 1.0)}))
    q = prof["flag"]
    assert q == [1.0] * 101
    assert psi(q, [1.0] * 50) == 0.0 and ks_statistic(q, [1.0] * 50) == 0.0
    # a quarter of the recent values moved away from the constant: KS is exactly that share
    moved = [1.0] * 75 + [2.0] * 25
    assert ks_statistic(q, moved) == pytest.approx(0.25)
    assert ks_statistic(q, [1.0] * 75 + [0.0] * 25) == pytest.approx(0.25)
    # two bins, (-inf, 1] and (1, inf): reference shares (1, 0 -> EPSILON), recent (0.75, 0.25)
    assert psi(q, moved) == pytest.approx(
        (0.25 - EPSILON) * math.log(0.25 / EPSILON) + (0.75 - 1) * math.log(0.75), rel=1e-12
    )
    report = drift_report(prof, pd.DataFrame({"flag": moved}))
    assert report.drifted == ["flag"]
    # PSI's first bin is open below (standard PSI), so values below a constant share its bin: PSI is 0,
    # and it is KS that flags the change (documented in the module)
    below = [1.0] * 75 + [0.0] * 25
    assert psi(q, below) == 0.0
    assert drift_report(prof, pd.DataFrame({"flag": below})).drifted == ["flag"]
    assert all(math.isfinite(v) for v in (*report.psi.values(), *report.ks.values()))


def test_discrete_reference_with_ties():
    """Ties in the reference become jumps of its CDF: equal distributions still give zero."""
    rng = np.random.default_rng(15)
    ref = rng.integers(0, 3, 6000).astype(float)  # values 0, 1, 2 with equal shares
    q = reference_profile(pd.DataFrame({"k": ref}))["k"]
    same = rng.integers(0, 3, 3000).astype(float)
    assert ks_statistic(q, same) == pytest.approx(ks_2samp(ref, same).statistic, abs=0.02)
    assert ks_statistic(q, same) < 0.05 and psi(q, same) < 0.01
    skewed = np.r_[np.zeros(2000), np.ones(500), np.full(500, 2.0)]
    assert ks_statistic(q, skewed) == pytest.approx(ks_2samp(ref, skewed).statistic, abs=0.02)
    assert ks_statistic(q, skewed) > 0.15 and psi(q, skewed) > 0.25


def test_empty_recent_data_is_an_error_not_a_pass(profile):
    """Errors: drift that cannot be measured must not read as "no drift"."""
    for empty in ([], [np.nan, np.nan], np.array([np.inf])):
        with pytest.raises(DataValidationError, match="no finite values"):
            psi(profile["ret_1"], empty)
        with pytest.raises(DataValidationError, match="no finite values"):
            ks_statistic(profile["ret_1"], empty)
    empty_frame = pd.DataFrame({name: pd.Series([], dtype=float) for name in profile})
    with pytest.raises(DataValidationError, match="recent feature 'ret_1'") as err:
        drift_report(profile, empty_frame)
    assert err.value.error_class is ErrorClass.PERMANENT and err.value.where == "drift"


def test_report_errors_name_the_feature(profile, training):
    with pytest.raises(DataValidationError, match=r"lacks profiled features \['vol_20'\]"):
        drift_report(profile, training.drop(columns=["vol_20"]))
    nan_rsi = training.head(100).assign(rsi_14=np.nan)
    with pytest.raises(DataValidationError, match="'rsi_14'"):
        drift_report(profile, nan_rsi)
    with pytest.raises(DataValidationError, match="no features"):
        drift_report({}, training)
    with pytest.raises(DataValidationError, match="non-decreasing"):
        psi([1.0, 0.0, 2.0], [1.0])
    with pytest.raises(DataValidationError, match="at least 2 quantiles"):
        ks_statistic([1.0], [1.0])


def test_report_ignores_extra_columns_and_nan_rows(profile, training):
    recent = training.head(2000).assign(unprofiled=1.0)
    recent.loc[recent.index[:100], "ret_1"] = np.nan
    report = drift_report(profile, recent)
    assert set(report.psi) == set(profile)
    assert report.n_recent["ret_1"] == 1900 and report.n_recent["vol_20"] == 2000


def test_to_metadata_is_flat_and_consistent(profile, training):
    recent = training.head(2000).copy()
    recent["vol_20"] = recent["vol_20"] * 3
    report = drift_report(profile, recent, psi_threshold=0.2, ks_threshold=0.1)
    meta = report.to_metadata()
    assert all(isinstance(v, (bool, int, float, str)) for v in meta.values())
    assert meta["drift_passed"] is False and meta["drift_drifted_features"] == "vol_20"
    assert meta["drift_n_drifted"] == 1 and meta["drift_n_features"] == 3
    assert meta["drift_max_psi"] == max(report.psi.values()) == report.psi["vol_20"]
    assert meta["drift_ks/vol_20"] == report.ks["vol_20"] and meta["drift_psi/ret_1"] == report.psi["ret_1"]
    assert (meta["drift_psi_threshold"], meta["drift_ks_threshold"]) == (0.2, 0.1)
    json.dumps(meta)  # storable as-is


def test_thresholds_are_strict_and_configurable():
    report = DriftReport(psi={"a": 0.25, "b": 0.1}, ks={"a": 0.1, "b": 0.15}, psi_threshold=0.25, ks_threshold=0.15)
    assert report.passed and report.drifted == []  # equal to the threshold is not above it
    strict = DriftReport(psi={"a": 0.25, "b": 0.1}, ks={"a": 0.1, "b": 0.15}, psi_threshold=0.2, ks_threshold=0.15)
    assert strict.drifted == ["a"] and not strict.passed


# -- the KS approximation against scipy ----------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n_quantiles", [11, 101])
def test_quantile_ks_is_within_the_documented_bound_of_scipy(seed, n_quantiles):
    rng = np.random.default_rng(100 + seed)
    n_ref = int(rng.integers(200, 4000))
    ref = rng.standard_t(4, n_ref) * rng.uniform(0.5, 2.0)
    recent = rng.normal(rng.uniform(-1.5, 1.5), rng.uniform(0.3, 3.0), int(rng.integers(20, 2000)))
    q = reference_profile(pd.DataFrame({"x": ref}), n_quantiles=n_quantiles)["x"]
    exact = ks_2samp(ref, recent).statistic
    assert abs(ks_statistic(q, recent) - exact) <= ks_bound(n_quantiles, n_ref)


@settings(max_examples=150, deadline=None)
@given(
    n_ref=st.integers(2, 600),
    n_recent=st.integers(1, 300),
    n_quantiles=st.integers(2, 160),
    shift=st.floats(-3, 3),
    scale=st.floats(0.05, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_quantile_ks_bound_property(n_ref, n_recent, n_quantiles, shift, scale, seed):
    rng = np.random.default_rng(seed)
    ref = rng.lognormal(0.0, 0.7, n_ref)
    recent = rng.lognormal(0.0, 0.7, n_recent) * scale + shift
    q = reference_profile(pd.DataFrame({"x": ref}), n_quantiles=n_quantiles)["x"]
    approx = ks_statistic(q, recent)
    assert 0.0 <= approx <= 1.0
    assert abs(approx - ks_2samp(ref, recent).statistic) <= ks_bound(n_quantiles, n_ref) + 1e-12
