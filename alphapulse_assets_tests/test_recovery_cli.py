"""``alphapulse breaker ...`` against a real platform database, as an operator types it."""

import pytest

from alphapulse_assets.cli import main
from alphapulse_assets.recovery.gating import default_store


@pytest.fixture
def home(tmp_path, monkeypatch):
    (tmp_path / "dagster.yaml").write_text("")
    monkeypatch.chdir(tmp_path)  # the CLI moves into DAGSTER_HOME; chdir restores afterwards
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("ALPHAPULSE_PLATFORM_DB_URL", f"sqlite:///{tmp_path / 'platform.db'}")
    monkeypatch.setenv("USER", "carol")
    return tmp_path


def test_force_open_disable_reset_and_list_record_who_and_why(home, capsys):
    assert main(["breaker", "list"]) == 0
    out = capsys.readouterr().out
    assert "market_data" in out and "training" in out and "no outcome recorded yet" in out

    assert main(["breaker", "force-open", "market_data", "--reason", "exchange maintenance"]) == 0
    state = default_store().get("market_data")
    assert state.state.value == "forced_open" and state.forced_by == "carol"
    assert state.forced_reason == "exchange maintenance"

    assert main(["breaker", "list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("market_data"))
    assert "forced_open" in line and "forced open by carol: exchange maintenance" in line

    assert main(["breaker", "disable", "training", "--reason", "flaky GPU"]) == 0
    assert default_store().get("training").state.value == "disabled"
    assert main(["breaker", "reset", "market_data", "--reason", "maintenance over"]) == 0
    assert default_store().get("market_data").state.value == "closed"

    assert main(["breaker", "history", "market_data"]) == 0
    history = capsys.readouterr().out
    assert "closed -> forced_open" in history and "reset by carol: maintenance over" in history


def test_unknown_breaker_and_missing_reason_are_refused(home, capsys):
    assert main(["breaker", "reset", "markt_data", "--reason", "typo"]) == 2
    assert "unknown breaker 'markt_data'" in capsys.readouterr().err
    assert default_store().all() == {}
    with pytest.raises(SystemExit):
        main(["breaker", "force-open", "market_data"])  # --reason is required
    assert main(["breaker", "disable", "training", "--reason", "   "]) == 2
