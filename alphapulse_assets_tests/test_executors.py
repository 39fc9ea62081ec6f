"""ALPHAPULSE_EXECUTOR picks one of Dagster's own executors for every job, checked at start; the Celery broker's
URL is a secret, never shown; the training steps can be sent to a Celery queue of their own."""

from __future__ import annotations

import os

import pytest

from alphapulse_assets.config_check import check_configuration
from alphapulse_assets.executors import executor_for
from alphapulse_assets.settings import SettingsError, get_settings

BROKER = "redis://:broker-password-x1@redis.invalid:6379/0"


@pytest.fixture
def fresh_settings(monkeypatch):
    """Settings read again from this test's environment, and the process's own restored afterwards."""
    for key in list(os.environ):
        if key.startswith("ALPHAPULSE_"):
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.mark.parametrize(
    "value, expected",
    [(None, "in_process"), ("multiprocess", "multiprocess"), ("Celery", "celery"), ("k8s", "k8s")],
)
def test_each_setting_picks_dagsters_own_executor(fresh_settings, value, expected):
    if value is not None:
        fresh_settings.setenv("ALPHAPULSE_EXECUTOR", value)
    fresh_settings.setenv("ALPHAPULSE_CELERY__BROKER_URL", BROKER)
    executor = executor_for(check_configuration())
    assert executor.name == expected
    if expected == "k8s":
        from dagster_k8s import k8s_job_executor

        assert executor is k8s_job_executor  # its settings come from the K8sRunLauncher that started the run


def test_an_unknown_executor_is_refused_at_start_naming_the_variable(fresh_settings):
    fresh_settings.setenv("ALPHAPULSE_EXECUTOR", "dask")
    with pytest.raises(SettingsError, match=r"ALPHAPULSE_EXECUTOR='dask'.*'in_process', 'multiprocess', 'celery'"):
        check_configuration()


def test_celery_without_a_broker_is_refused_at_start_naming_the_variable(fresh_settings):
    fresh_settings.setenv("ALPHAPULSE_EXECUTOR", "celery")
    with pytest.raises(SettingsError, match="ALPHAPULSE_EXECUTOR='celery' needs ALPHAPULSE_CELERY__BROKER_URL"):
        check_configuration()


def test_a_bad_broker_url_is_refused_without_showing_it(fresh_settings):
    fresh_settings.setenv("ALPHAPULSE_EXECUTOR", "celery")
    fresh_settings.setenv("ALPHAPULSE_CELERY__BROKER_URL", "broker-password-x1")
    with pytest.raises(SettingsError, match="ALPHAPULSE_CELERY__BROKER_URL") as err:
        check_configuration()
    assert "broker-password-x1" not in str(err.value)


def test_training_steps_go_to_the_configured_celery_queue(fresh_settings):
    from alphapulse_assets.training.assets import training_queue_tag

    assert training_queue_tag() == {}
    fresh_settings.setenv("ALPHAPULSE_CELERY__TRAINING_QUEUE", "training")
    get_settings.cache_clear()
    assert training_queue_tag() == {"dagster-celery/queue": "training"}
