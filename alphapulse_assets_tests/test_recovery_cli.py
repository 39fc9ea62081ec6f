"""``alphapulse breaker ...`` against a real platform database, as an operator types it."""

import pytest

from alphapulse_assets.cli import main
from alphapulse_assets.recovery.gating import default_store
from alphapulse_assets_tests.table_reader import read_table, row_where


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
    rows = read_table(capsys.readouterr().out, "breaker")
    assert [r["breaker"] for r in rows] == ["market_data", "training"]
    assert all(r["state"] == "closed" and r["reason"] == "no outcome recorded yet" for r in rows)
    assert all(r["since"] == r["retry_at"] == "-" and r["ok"] == r["fail"] == "0" for r in rows)

    assert main(["breaker", "force-open", "market_data", "--reason", "exchange maintenance"]) == 0
    state = default_store().get("market_data")
    assert state.state.value == "forced_open" and state.forced_by == "carol"
    assert state.forced_reason == "exchange maintenance"

    assert main(["breaker", "list"]) == 0
    row = row_where(read_table(capsys.readouterr().out, "breaker"), breaker="market_data")
    assert row["state"] == "forced_open" and row["reason"] == "forced open by carol: exchange maintenance"

    assert main(["breaker", "disable", "training", "--reason", "flaky GPU"]) == 0
    assert default_store().get("training").state.value == "disabled"
    assert main(["breaker", "reset", "market_data", "--reason", "maintenance over"]) == 0
    assert default_store().get("market_data").state.value == "closed"

    assert main(["breaker", "history", "market_data"]) == 0
    history = read_table(capsys.readouterr().out, "when (UTC)")
    assert [(r["breaker"], r["from"], r["to"]) for r in history] == [
        ("market_data", "closed", "forced_open"),
        ("market_data", "forced_open", "closed"),
    ]
    assert history[-1]["reason"] == "reset by carol: maintenance over"


def test_unknown_breaker_and_missing_reason_are_refused(home, capsys):
    assert main(["breaker", "reset", "markt_data", "--reason", "typo"]) == 2
    assert "unknown breaker 'markt_data'" in capsys.readouterr().err
    assert default_store().all() == {}
    with pytest.raises(SystemExit):
        main(["breaker", "force-open", "market_data"])  # --reason is required
    assert main(["breaker", "disable", "training", "--reason", "   "]) == 2
