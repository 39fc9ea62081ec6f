"""The local instance (``dagster.yaml``) as the web UI sees it."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_the_local_web_ui_shows_no_newsletter_pop_up(tmp_path, monkeypatch):
    """dagster-webserver opens its "community" sign-up dialog (newsletter) on 127.0.0.1 unless the instance
    says ``nux: enabled: false``; its GraphQL field ``shouldShowNux`` is ``instance.nux_enabled and not seen``."""
    shutil.copy(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.chdir(tmp_path)  # the storage paths in dagster.yaml are relative to the project folder
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.nux_enabled is False
