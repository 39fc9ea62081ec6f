"""The Celery app AlphaPulse's Celery workers run (``ALPHAPULSE_EXECUTOR=celery``)::

    celery -A alphapulse_assets.celery_app worker -c 1 -Q dagster      # any machine; -Q training for training

Each worker needs what a run worker needs: the package, DAGSTER_HOME with the production dagster.yaml and its
DAGSTER_PG_* variables, the ALPHAPULSE_* settings (above all ALPHAPULSE_STORE__URL and
ALPHAPULSE_CELERY__BROKER_URL) and the object store's credentials. The broker and backend are read from the
environment here, as the run workers read them (executors.py), so both sides always meet on the same broker and
no URL (which may hold a password) is written to disk. The task is dagster-celery's own: it executes one step of a
run against the run's Dagster instance.
"""

from __future__ import annotations

import os

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from alphapulse_assets.config_check import CELERY_BACKEND_ENV, CELERY_BROKER_ENV, check_configuration
from alphapulse_assets.settings import SettingsError

settings = check_configuration()
if settings.executor != "celery":
    raise SettingsError(
        f"ALPHAPULSE_EXECUTOR={settings.executor!r}: a Celery worker serves runs whose steps go to Celery; "
        "set ALPHAPULSE_EXECUTOR=celery (and the same settings as the run workers)",
        where="ALPHAPULSE_EXECUTOR",
    )
app = make_app(
    CeleryExecutor.for_cli(
        broker=os.environ[CELERY_BROKER_ENV],
        backend=os.environ.get(CELERY_BACKEND_ENV) or os.environ[CELERY_BROKER_ENV],
    ).app_args()
)
execute_plan = create_task(app)
