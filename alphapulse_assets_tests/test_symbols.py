"""Symbols are data: added and retired at run time by a command, one asset per kind whatever the symbols."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from alphapulse_assets.market_data.symbol_ledger import validate_symbol
from alphapulse_assets.market_data.symbols import symbol_ranges
from alphapulse_assets.training.schedules import cadence_run_tags

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_symbol_names_are_validated_with_an_error_naming_the_symbol():
    assert validate_symbol(" solusdt ") == "SOLUSDT"
    assert validate_symbol("BRK.B") == "BRK.B"
    for bad in ("", "BTC|USDT", "BTC/USDT", "BTC USDT", "-BTC", "X" * 33):
        with pytest.raises(ValueError, match="is not valid") as info:
            validate_symbol(bad)
        assert repr(bad) in str(info.value)


def test_a_cadence_partition_is_one_run_unless_split_into_contiguous_symbol_ranges():
    symbols = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT"]
    assert symbol_ranges(symbols, 0) == [("BTCUSDT", "LINKUSDT")]
    assert symbol_ranges(symbols, 2) == [("BTCUSDT", "ETHUSDT"), ("ADAUSDT", "DOTUSDT"), ("LINKUSDT", "LINKUSDT")]
    [one] = cadence_run_tags("weekly", "2024-05-26", symbols, per_run=0)
    assert one == {
        "dagster/asset_partition_range_start": "2024-05-26|BTCUSDT",
        "dagster/asset_partition_range_end": "2024-05-26|LINKUSDT",
    }
    assert len(cadence_run_tags("weekly", "2024-05-26", symbols, per_run=2)) == 3


def _definition_counts(symbols: list[str]) -> dict:
    """Assets, checks, jobs and load time of the definitions as a fresh process loads them with these symbols."""
    code = textwrap.dedent(
        """
        import json, time
        t0 = time.perf_counter()
        from alphapulse_assets.definitions import defs
        graph = defs.resolve_asset_graph()
        print(json.dumps({
            "seconds": time.perf_counter() - t0,
            "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
            "checks": sorted(k.to_user_string() for k in graph.asset_check_keys),
            "jobs": sorted(j.name for j in defs.resolve_all_job_defs()),
        }))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAPULSE_")}
    env["ALPHAPULSE_SYMBOLS"] = ",".join(symbols)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_definitions_with_500_symbols_hold_the_same_assets_and_checks_as_with_5():
    five = _definition_counts(["BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT"])
    many = _definition_counts([f"S{i:03d}USDT" for i in range(500)])
    assert many["assets"] == five["assets"] and many["checks"] == five["checks"] and many["jobs"] == five["jobs"]
    assert "models/weekly" in five["assets"] and not [a for a in five["assets"] if "USDT" in a]
    assert len(five["assets"]) < 30  # 3,510 before symbols were partitions
    # The load time itself is measured in bench/bench_definitions.py (a timed test would be flaky here).


DRIVER = textwrap.dedent(
    """
    # One process, definitions loaded once: a symbol added after they loaded is trained with no reload.
    import contextlib, io, json, sys
    from alphapulse_assets.cli import main

    steps = json.loads(sys.argv[1])
    out = []
    for argv in steps:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's refusals and the commands' own exits, kept as the code
                code = exc.code
        out.append({"argv": argv, "code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()})
    print(json.dumps(out))
    """
)


def _run_cli(home: Path, env: dict, steps: list[list[str]]) -> dict[str, dict]:
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(steps)],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return {" ".join(r["argv"]): r for r in results}


def _cli_env(tmp_path, **extra: str) -> dict[str, str]:
    """A local instance of its own (SQLite, a store under ``tmp_path``) seeded with BTCUSDT and ETHUSDT, run by
    user alice, for the CLI in a subprocess; ``extra`` settings on top."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHAPULSE_", "DAGSTER_"))}
    env |= {
        "DAGSTER_HOME": str(home),
        "ALPHAPULSE_SYMBOLS": "BTCUSDT,ETHUSDT",  # the seed
        "ALPHAPULSE_HOME": str(tmp_path / "ap"),
        "ALPHAPULSE_STORE__URL": str(tmp_path / "store"),
        "ALPHAPULSE_PLATFORM_DB_URL": f"sqlite:///{tmp_path}/platform.db",
        "USER": "alice",
        **extra,
    }
    return env


@pytest.mark.slow
def test_a_symbol_added_and_retired_at_run_time_is_trained_gated_shown_and_then_no_longer(tmp_path, monkeypatch):
    """No code change and no reload: `symbols add` makes the next ingestion fetch it and the next cadence run
    train and gate it, shown per symbol partition; `symbols retire` stops both, and its history stays."""
    env = _cli_env(tmp_path)
    home = Path(env["DAGSTER_HOME"])
    first = _run_cli(
        home,
        env,
        [
            ["symbols", "list"],  # nothing yet
            ["symbols", "add", "dotusdt", "--reason", "new listing"],
            ["symbols", "add", "BAD|NAME"],
            ["ingest", "--start", "2024-03-01", "--end", "2024-06-08"],
            ["run", "weekly", "--partition", "2024-05-26"],
            ["symbols", "retire", "DOTUSDT", "--reason", "delisted"],
            ["run", "weekly", "--partition", "2024-06-02"],
            ["predict", "DOTUSDT", "--cadence", "weekly"],
            ["predict", "SOLUSDT", "--cadence", "weekly"],
            ["symbols", "list"],
            ["models", "history", "DOTUSDT", "--cadence", "weekly"],
            ["status", "--no-sources"],
            ["symbols", "sync"],
        ],
    )
    assert first["symbols add dotusdt --reason new listing"]["code"] == 0
    assert "DOTUSDT: added" in first["symbols add dotusdt --reason new listing"]["stdout"]
    bad = first["symbols add BAD|NAME"]
    assert bad["code"] == 2 and "symbol 'BAD|NAME' is not valid" in bad["stderr"]
    assert first["ingest --start 2024-03-01 --end 2024-06-08"]["code"] == 0
    run = first["run weekly --partition 2024-05-26"]
    assert run["code"] == 0, run
    # One run for the week x the three active symbols: the seed's two and the one added at run time.
    assert "partition 2024-05-26, symbols BTCUSDT..DOTUSDT" in run["stdout"]  # in the order they were added

    later = first["run weekly --partition 2024-06-02"]
    assert later["code"] == 0 and "symbols BTCUSDT..ETHUSDT" in later["stdout"], later  # DOTUSDT retired

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions("symbols") == ["BTCUSDT", "ETHUSDT"]  # DOTUSDT retired
        models = dg.AssetKey(["models", "weekly"])
        trained = instance.get_materialized_partitions(models)
        assert trained == {"2024-05-26|DOTUSDT", "2024-05-26|BTCUSDT", "2024-05-26|ETHUSDT"} | {
            "2024-06-02|BTCUSDT",
            "2024-06-02|ETHUSDT",
        }  # the retired symbol was not trained the week after
        dot = instance.fetch_materializations(
            dg.AssetRecordsFilter(models, asset_partitions=["2024-05-26|DOTUSDT"]), limit=5
        ).records
        assert len(dot) == 1  # one materialization per partition, with the symbol's own figures
        shown = dot[0].asset_materialization.metadata
        assert shown["version"].value == "v1" and "model_log_loss" in shown and "gate" in shown
        verdicts = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(models, "promotion_gate"), limit=100
        )
        by_partition = {v.partition: v for v in verdicts}
        assert set(by_partition) == trained  # a verdict per (week, symbol), none left planned
        dot_verdict = by_partition["2024-05-26|DOTUSDT"]
        assert dot_verdict.status.value in ("SUCCEEDED", "FAILED")
        assert dot_verdict.event.dagster_event.event_specific_data.metadata["symbol"].value == "DOTUSDT"
        # The check-alert sensor reads each symbol's newest verdict: one alert per rejected symbol, none for one
        # whose newest verdict passed (the same definitions serve any symbols: they are data).
        from alphapulse_assets.alerting.alert_store import AlertStore
        from alphapulse_assets.definitions import defs

        monkeypatch.setenv("ALPHAPULSE_PLATFORM_DB_URL", env["ALPHAPULSE_PLATFORM_DB_URL"])
        sensor = defs.resolve_sensor_def("check_failure_alert_sensor")
        sensor(dg.build_sensor_context(instance=instance, definitions=defs))
        newest = {}
        for v in verdicts:  # newest first
            newest.setdefault(v.partition.split("|")[1], v.status.value)
        gate_alerts = {
            a.key for a in AlertStore(env["ALPHAPULSE_PLATFORM_DB_URL"]).open_alerts() if "promotion_gate" in a.key
        }
        assert gate_alerts == {f"check:models/weekly:promotion_gate:{s}" for s, st in newest.items() if st == "FAILED"}
        assert len(newest) == 3

        ingested = instance.fetch_materializations(
            dg.AssetRecordsFilter(dg.AssetKey("market_candles")), limit=1
        ).records[0]
        assert ingested.asset_materialization.metadata["symbols"].value == 3  # DOTUSDT fetched once added

    # The champion table of the run and the models history show the added symbol's rows.
    table = run["stdout"]
    assert any(line.split()[:2] == ["DOTUSDT", "weekly"] for line in table.splitlines())
    history = first["models history DOTUSDT --cadence weekly"]
    assert history["code"] == 0 and "DOTUSDT" in history["stdout"]  # its history stays readable
    # Retired: not served, with a clear error; an unknown symbol neither.
    refused = first["predict DOTUSDT --cadence weekly"]
    assert refused["code"] == 1 and "symbol DOTUSDT was retired on " in refused["stderr"]
    assert "by alice: delisted" in refused["stderr"]
    unknown = first["predict SOLUSDT --cadence weekly"]
    assert unknown["code"] == 1 and "symbol SOLUSDT is not an active symbol" in unknown["stderr"]
    listed = first["symbols list"]["stdout"]  # the last `symbols list` (same command line, later result)
    rows = {line.split()[0]: line for line in listed.splitlines()[2:] if line.strip()}
    assert set(rows) == {"BTCUSDT", "ETHUSDT", "DOTUSDT"}
    assert "retired" in rows["DOTUSDT"] and "alice" in rows["DOTUSDT"] and "delisted" in rows["DOTUSDT"]
    assert "active" in rows["BTCUSDT"] and "seed (ALPHAPULSE_SYMBOLS)" in rows["BTCUSDT"]
    status = first["status --no-sources"]["stdout"]  # the operator's overview says which symbols are in service
    assert "Symbols: 2 active (BTCUSDT, ETHUSDT)" in status
    assert "retired DOTUSDT since " in status and "by alice: delisted" in status
    assert first["symbols sync"]["stdout"].strip() == "nothing to add"  # a seed does not re-add a retired symbol


@pytest.mark.slow
def test_a_symbol_added_with_a_backfill_gets_its_history_and_its_cadence_partitions_trained_and_gated(tmp_path):
    """`symbols add SYM --backfill START --until END`: the days [START, END] are ingested with the new symbol in
    them, and each cadence's partitions whose whole window lies in those days are trained and gated for that symbol
    alone, one run per cadence; `models`, `models history` and `status` show it. (The weekly window is 28 days here
    so that one weekly partition fits in five weeks of history.)"""
    env = _cli_env(tmp_path, ALPHAPULSE_WEEKLY__WINDOW_DAYS="28")
    home = Path(env["DAGSTER_HOME"])
    add = ["symbols", "add", "DOTUSDT", "--backfill", "2024-04-20", "--until", "2024-05-25", "--reason", "listed"]
    backwards = ["symbols", "add", "SOLUSDT", "--backfill", "2024-05-26", "--until", "2024-05-25"]
    out = _run_cli(
        home,
        env,
        [
            add,
            backwards,
            ["models", "list"],
            ["models", "history", "DOTUSDT", "--cadence", "nightly"],
            ["status", "--no-sources"],
        ],
    )
    added = out[" ".join(add)]
    assert added["code"] == 0, added
    lines = added["stdout"].splitlines()
    assert "DOTUSDT: added" in added["stdout"]
    # Nightly: 16 days of bars plus the features' warm-up (104 bars of 15 min) after 2024-04-20, so the first
    # day whose window is all in the ingested history is 2024-05-07. Weekly (28 days + 104 hourly bars): the week
    # of 2024-05-19 (it ends 2024-05-26, after --until 2024-05-25's last bar). Monthly (548 days): none.
    assert any(line.startswith("nightly backfill 2024-05-07..2024-05-25 for DOTUSDT ... done") for line in lines)
    assert any(line.startswith("weekly backfill 2024-05-19..2024-05-19 for DOTUSDT ... done") for line in lines)
    assert "monthly: no partition whose whole window lies in 2024-04-20..2024-05-25" in lines
    refused = out[" ".join(backwards)]
    assert refused["code"] == 2 and "--until 2024-05-25 needs --backfill START on or before it" in refused["stderr"]

    nightly_days = [f"2024-05-{d:02d}" for d in range(7, 26)]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions("symbols") == ["BTCUSDT", "ETHUSDT", "DOTUSDT"]  # SOLUSDT refused
        # Its history: every day of [START, END] ingested, with the new symbol among the day's symbols.
        candles = instance.fetch_materializations(dg.AssetKey("market_candles"), limit=100).records
        days = {r.asset_materialization.partition: r.asset_materialization.metadata["symbols"].value for r in candles}
        assert days == {str(d.date()): 3 for d in pd.date_range("2024-04-20", "2024-05-25")}
        # Its cadence partitions, and only the new symbol's: the seed's symbols were not retrained.
        for cadence, keys in (("nightly", nightly_days), ("weekly", ["2024-05-19"]), ("monthly", [])):
            models = dg.AssetKey(["models", cadence])
            expected = {f"{k}|DOTUSDT" for k in keys}
            assert instance.get_materialized_partitions(models) == expected, cadence
            verdicts = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(models, "promotion_gate"), limit=100
            )
            assert {v.partition for v in verdicts} == expected, cadence  # one gate verdict per partition
            for v in verdicts:
                assert v.status.value in ("SUCCEEDED", "FAILED"), (cadence, v.partition, v.status)
                assert v.event.dagster_event.event_specific_data.metadata["symbol"].value == "DOTUSDT"
                # A backfill's verdicts report (WARN): each day's decision was taken in order, none pages anyone.
                assert v.event.dagster_event.event_specific_data.description.startswith("backfill: ") == (len(keys) > 1)

    # What an operator sees: its champions' rows, each nightly challenger's decision, the symbol in service.
    rows = {line.split()[1]: line for line in out["models list"]["stdout"].splitlines() if line.startswith("DOTUSDT ")}
    assert rows["nightly"].split()[3] == f"v{len(nightly_days)}" and rows["weekly"].split()[3] == "v1", rows
    assert "not trained yet" in rows["monthly"]
    history = out["models history DOTUSDT --cadence nightly"]["stdout"].splitlines()
    decided = [line for line in history if " DOTUSDT " in line and " nightly " in line]
    assert len(decided) == len(nightly_days), history  # promoted, rejected or held: one per day
    status = out["status --no-sources"]["stdout"]
    assert "Symbols: 3 active (BTCUSDT, ETHUSDT, DOTUSDT)" in status
