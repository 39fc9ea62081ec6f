"""What the operator's command line prints: whole figures and run ids, clear errors, no warning noise."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from sklearn.linear_model import LogisticRegression

from alphapulse_assets.cli import champion_table, main
from alphapulse_assets.monitoring.status import render_status
from alphapulse_assets.training.registry import ModelRegistry
from alphapulse_assets_tests.table_reader import read_table, row_where


@pytest.fixture
def home(tmp_path, monkeypatch):
    (tmp_path / "dagster.yaml").write_text("")
    monkeypatch.chdir(tmp_path)  # the CLI moves into DAGSTER_HOME; chdir restores afterwards
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'platform.db'}"
    monkeypatch.setenv("ALPHAPULSE_PLATFORM_DB_URL", url)
    return tmp_path, url


def test_the_champion_table_shows_the_whole_verdict_and_missing_figures_as_dashes(home, monkeypatch):
    tmp_path, url = home
    from alphapulse_assets.training import assets

    resource = assets.ModelRegistryResource(artifact_root=str(tmp_path / "models"), db_url=url)
    monkeypatch.setattr(assets, "ModelRegistryResource", lambda: resource)
    reason = (
        "beats_baselines: not significantly better than base_rate (diff -0.0012, p=0.201), "
        "persistence_calibrated (diff -0.0009, p=0.062)"
    )
    registry = ModelRegistry(str(tmp_path / "models"), url)
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    registry.reject(
        registry.register(
            "BTCUSDT",
            "weekly",
            model,
            info={"gate_passed": False, "gate_reason": reason, "metrics": {"log_loss": 0.69123, "auc": 0.51}},
        ),
        reason=reason,
    )
    out = io.StringIO()
    champion_table(out=out)
    row = row_where(read_table(out.getvalue(), "symbol"), symbol="BTCUSDT", cadence="weekly")
    assert row["verdict"] == f"rejected: {reason}"  # p=0.062, not p=0.0
    assert row["champion"] == "none" and row["latest"] == "v1"
    assert (row["logloss"], row["auc"]) == ("0.6912", "0.510")
    assert row["base"] == row["persist"] == row["sharpe"] == "-"  # no baseline or sharpe recorded: a dash
    assert row_where(read_table(out.getvalue(), "symbol"), symbol="ETHUSDT", cadence="weekly")["verdict"] == (
        "not trained yet"
    )


def test_models_with_an_unknown_symbol_is_an_error_naming_the_known_ones(home, capsys):
    assert main(["models", "history", "BTCUSD"]) == 2
    err = capsys.readouterr().err
    assert "unknown symbol 'BTCUSD'" in err and "BTCUSDT" in err and "ETHUSDT" in err
    assert main(["models", "history", "ethusdt"]) == 0  # known symbols are not case-sensitive
    assert "no decisions recorded yet" in capsys.readouterr().out


def test_breaker_history_says_when_there_is_nothing_and_refuses_unknown_names(home, capsys):
    assert main(["breaker", "history"]) == 0
    assert "no transitions recorded yet" in capsys.readouterr().out
    assert main(["breaker", "history", "training"]) == 0
    assert "no transitions recorded yet for training" in capsys.readouterr().out
    assert main(["breaker", "history", "trainig"]) == 2
    assert "unknown breaker 'trainig'; known: market_data, training" in capsys.readouterr().err


def test_status_prints_run_ids_and_check_descriptions_whole():
    run_id = "3f1c2b9e-8d7a-4c6b-9e5f-0a1b2c3d4e5f"
    description = (
        "rejected: beats_baselines: not significantly better than base_rate (diff -0.0012, p=0.201), "
        "persistence_calibrated (diff -0.0009, p=0.062)"
    )
    status = {
        "at": 0.0,
        "health": {"status": "healthy", "reasons": [], "checks": []},
        "breakers": {},
        "open_alerts": [],
        "cadences": {
            "weekly": {
                "run_id": run_id,
                "status": "success",
                "partition": "2024-05-26",
                "start": 1.0,
                "end": 2.0,
                "duration_seconds": 1.0,
            }
        },
        "champions": [],
        "resources": None,
        "failed_checks": [
            {
                "asset": "models/weekly/BTCUSDT",
                "check": "promotion_gate",
                "severity": "ERROR",
                "at": 1.0,
                "description": description,
            }
        ],
    }
    screen = render_status(status)
    weekly = row_where(read_table(screen, "cadence"), cadence="weekly")
    assert weekly["run"] == run_id  # usable in the UI: /runs/<run id>
    assert (weekly["status"], weekly["partition"], weekly["took"]) == ("success", "2024-05-26", "1 s")
    failed = row_where(read_table(screen, "asset"), asset="models/weekly/BTCUSDT")
    assert failed["description"] == description  # whole: p=0.062), not p=0.0
    assert (failed["check"], failed["severity"]) == ("promotion_gate", "error")


@pytest.mark.slow
def test_importing_the_assets_prints_no_beta_or_preview_warning_and_leaves_users_warnings_alone():
    """The CLI imports the training assets before the definitions: nothing may be printed on the console. The
    known Dagster previews are silenced only while the assets are made: the process's warning filters are the
    same afterwards, and a user's own warning of the same kind still shows."""
    code = (
        "import warnings, dagster, numpy, pandas, scipy.stats, sklearn.ensemble\n"  # they add filters of their own
        "before = list(warnings.filters)\n"
        "import alphapulse_assets.training.assets, alphapulse_assets.market_data.assets, alphapulse_assets.definitions\n"
        "assert warnings.filters == before, [f for f in warnings.filters if f not in before]\n"
        "import dagster as dg\n"
        "warnings.warn('my_feature is currently in beta', dg.BetaWarning)\n"
        "warnings.warn('my_check is currently in preview', dg.PreviewWarning)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # Python's defaults, as on a console
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    shown = [line for line in done.stderr.splitlines() if "Warning" in line]
    assert len(shown) == 2, done.stderr  # only the user's two: none from the package
    assert "BetaWarning: my_feature is currently in beta" in shown[0]
    assert "PreviewWarning: my_check is currently in preview" in shown[1]
