"""Where a run's steps execute, chosen by ALPHAPULSE_EXECUTOR (checked at start by config_check): Dagster's own
executors only.

- ``in_process`` (default): every step in the run's own process. Steps are small; a process per step costs
  about 2 s here, more than most steps' work.
- ``multiprocess``: a process per step on the run's machine (forkserver, so each starts from a warm parent).
- ``celery``: each step is a Celery task, executed by whichever worker listening to its queue takes it, on any
  machine (``alphapulse_assets.celery_app`` is the workers' app). The broker and backend URLs are read from the
  environment by each run worker (``{"env": ...}``): they never enter a job definition, the run config or the UI.
  ALPHAPULSE_CELERY__TRAINING_QUEUE sends the training steps to a queue of their own (training/assets.py).
- ``k8s``: a Kubernetes Job per step (dagster-k8s' ``k8s_job_executor``), configured from the K8sRunLauncher
  that started the run (namespace, image, config maps, secrets: deploy/dagster-k8s.yaml).

Steps hand data to each other only through the shared store (ALPHAPULSE_STORE__URL) and the platform database,
so a step may run on another machine than the step before it.
"""

from __future__ import annotations

import dagster as dg

from alphapulse_assets.config_check import CELERY_BACKEND_ENV, CELERY_BROKER_ENV
from alphapulse_assets.settings import AlphaPulseSettings


def executor_for(settings: AlphaPulseSettings) -> dg.ExecutorDefinition:
    """The executor named by ``settings.executor``."""
    if settings.executor == "multiprocess":
        return dg.multiprocess_executor.configured({"start_method": {"forkserver": {}}}, name="multiprocess")
    if settings.executor == "celery":
        # dagster-celery is an optional extra ([celery]); config_check has made sure it is installed.
        from dagster_celery import celery_executor

        backend = CELERY_BACKEND_ENV if settings.celery.backend_url is not None else CELERY_BROKER_ENV
        return celery_executor.configured({"broker": {"env": CELERY_BROKER_ENV}, "backend": {"env": backend}})
    if settings.executor == "k8s":
        # dagster-k8s is an optional extra ([k8s]); config_check has made sure it is installed.
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return dg.in_process_executor
