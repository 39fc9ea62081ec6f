"""The registry keeps its promises, as an operator checks them.

- ``alphapulse models rollback`` (the real CLI, in a subprocess) refuses a version that was never champion or
  was rejected by the gate, and the current champion, listing the eligible versions; ``--force`` crowns it with
  who and why recorded; every rollback shows on the champion asset of the instance.
- A tampered or missing champion file: ``status`` critical, then the registry refuses it, records a
  ``fell_back`` decision, raises one critical alert, and the previous verified champion serves.
- A moved or copied instance reads its own files (old absolute rows too); a lost database never leads to a
  version file being overwritten.
- A corrupted platform database makes ``status`` critical, naming the file and the error.

Real registry, real SQLite files, real Dagster instance (the project's dagster.yaml on a temp folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression

from alphapulse_assets import cli
from alphapulse_assets.alerting.alert_store import AlertStore
from alphapulse_assets.platform_db import engine_for
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training.champion_events import ChampionChangeReporter, artifact_alert_key
from alphapulse_assets.training.registry import ArtifactIntegrityError, ModelRegistry, versions_table

REPO = Path(__file__).resolve().parents[1]
DAGSTER_YAML = "storage:\n  sqlite:\n    base_dir: .alphapulse/storage\ntelemetry:\n  enabled: false\n"
CHAMPION = dg.AssetKey(["champions", "weekly"])  # one asset; each symbol's changes on its own partitions


def _model(seed: int) -> LogisticRegression:
    return LogisticRegression(C=1.0 + seed).fit([[0.0], [1.0], [0.2], [0.9 - seed / 100]], [0, 1, 0, 1])


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder of its own: DAGSTER_HOME with a SQLite instance, platform DB and models under it."""
    (tmp_path / "dagster.yaml").write_text(DAGSTER_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    for name in (
        "ALPHAPULSE_PLATFORM_DB_URL",
        "DAGSTER_PG_HOST",
        "ALPHAPULSE_SLACK_WEBHOOK_URL",
        "ALPHAPULSE_ALERT_WEBHOOK_URL",
        "ALPHAPULSE_SMTP_HOST",
        "ALPHAPULSE_HOME",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()  # this process's settings follow this project's DAGSTER_HOME
    yield tmp_path
    get_settings.cache_clear()


def _db_url(project: Path) -> str:
    (project / ".alphapulse").mkdir(exist_ok=True)
    return f"sqlite:///{project / '.alphapulse' / 'platform.db'}"


def _registry(project: Path, instance=None) -> ModelRegistry:
    """The registry where the platform keeps it for this project (what a fresh ``alphapulse`` process uses)."""
    url = _db_url(project)
    return ModelRegistry(str(project / ".alphapulse" / "models"), url, on_change=ChampionChangeReporter(instance, url))


def _history(project: Path):
    return _registry(project).history("BTCUSDT", "weekly")


def _champion_events(instance) -> list:
    records = instance.fetch_materializations(CHAMPION, limit=100).records
    observations = instance.fetch_observations(CHAMPION, limit=100).records
    return sorted(
        (r for r in records + observations if _symbol_of(r) == "BTCUSDT"),
        key=lambda r: r.storage_id,
    )


def _symbol_of(record) -> str:
    event = record.event_log_entry.asset_materialization or record.event_log_entry.asset_observation
    return event.metadata["symbol"].value if "symbol" in event.metadata else str(record.partition_key).split("|")[-1]


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHAPULSE_", "DAGSTER_PG"))}
    env.update(DAGSTER_HOME=str(project), USER="dana")
    return subprocess.run(
        [sys.executable, "-m", "alphapulse_assets.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


# -- rollback ------------------------------------------------------------------------------------------
def _history_with_every_kind_of_version(project: Path) -> None:
    """v1 and v2 promoted (v2 champion), v3 rejected by the gate, v4 passed but never champion."""
    reg = _registry(project)
    v1 = reg.register("BTCUSDT", "weekly", _model(1), info={"gate_passed": True, "partition": "2026-11-01"})
    reg.promote(v1, reason="passed the weekly gate (2026-11-01)")
    v2 = reg.register("BTCUSDT", "weekly", _model(2), info={"gate_passed": True, "partition": "2026-11-08"})
    reg.promote(v2, reason="passed the weekly gate (2026-11-08)")
    v3 = reg.register(
        "BTCUSDT", "weekly", _model(3), info={"gate_passed": False, "gate_reason": "beats_baselines: p=0.31"}
    )
    reg.reject(v3, reason="beats_baselines: p=0.31")
    reg.register("BTCUSDT", "weekly", _model(4), info={"gate_passed": True})


@pytest.mark.parametrize(
    "target, why",
    [
        ("3", "v3 was rejected by the promotion gate (beats_baselines: p=0.31)"),
        ("4", "v4 was never a champion"),
        ("2", "v2 is already the champion of BTCUSDT/weekly"),
        ("9", "BTCUSDT/weekly has no version 9"),
    ],
)
@pytest.mark.slow
def test_cli_rollback_refuses_ineligible_versions_and_lists_the_eligible(project, target, why):
    _history_with_every_kind_of_version(project)
    before = _history(project)

    done = _cli(project, "models", "rollback", "BTCUSDT", "weekly", "--to", target, "--reason", "bad week")

    assert done.returncode != 0, done.stdout
    assert why in done.stderr, done.stderr
    assert "eligible versions: v1" in done.stderr  # v1 only: v2 serves, v3 rejected, v4 never champion
    assert _registry(project).champion("BTCUSDT", "weekly").version == 2
    assert _history(project) == before  # nothing recorded


@pytest.mark.slow
def test_cli_rollback_to_an_earlier_champion_and_a_forced_one_show_on_the_champion_asset(project):
    _history_with_every_kind_of_version(project)

    done = _cli(project, "models", "rollback", "BTCUSDT", "weekly", "--to", "1", "--reason", "bad week")
    assert done.returncode == 0, done.stderr
    assert "champion is now v1 (was v2)" in done.stdout
    forced = _cli(
        project,
        "models",
        "rollback",
        "BTCUSDT",
        "--cadence",
        "weekly",
        "--to",
        "3",
        "--force",
        "--reason",
        "desk override: v3 on purpose",
    )
    assert forced.returncode == 0, forced.stderr

    assert _registry(project).champion("BTCUSDT", "weekly").version == 3
    rolled = [d for d in _history(project) if d.action == "rolled_back"]
    assert [(d.version, d.previous_champion, d.by) for d in rolled] == [(1, 2, "dana"), (3, 1, "dana")]
    assert rolled[0].reason == "bad week"
    assert rolled[1].reason.startswith("FORCED although v3 was rejected by the promotion gate")
    assert rolled[1].reason.endswith("desk override: v3 on purpose")

    with dg.DagsterInstance.from_config(str(project)) as instance:
        events = _champion_events(instance)
    shown = [
        {k: getattr(v, "value", v) for k, v in e.event_log_entry.asset_materialization.metadata.items()} for e in events
    ]
    assert [(m["change"], m["version"], m["previous_version"], m["by"]) for m in shown] == [
        ("rolled_back", "v1", "v2", "dana"),
        ("rolled_back", "v3", "v1", "dana"),
    ]
    assert shown[0]["reason"] == "bad week"
    assert events[0].partition_key == "2026-11-01|BTCUSDT"  # the reinstated champion's own (week, symbol)


# -- tampered or missing champion file --------------------------------------------------------------------
def _status(capsys) -> tuple[int, dict]:
    code = cli.main(["status", "--json", "--no-sources"])
    return code, json.loads(capsys.readouterr().out)


def _check(status: dict, name: str) -> dict:
    return next(c for c in status["health"]["checks"] if c["name"] == name)


@pytest.mark.parametrize("tamper", ["flip_byte", "delete"])
def test_tampered_champion_is_refused_recorded_alerted_once_and_the_previous_one_serves(project, capsys, tamper):
    with dg.DagsterInstance.from_config(str(project)) as instance:
        reg = _registry(project, instance)
        v1 = reg.register("BTCUSDT", "weekly", _model(1), info={"partition": "2026-11-01"})
        reg.promote(v1, reason="gate")
        v2 = reg.register("BTCUSDT", "weekly", _model(2), info={"partition": "2026-11-08"})
        reg.promote(v2, reason="gate")
        path = Path(v2.uri)
        if tamper == "delete":
            path.unlink()
        else:
            raw = bytearray(path.read_bytes())
            raw[len(raw) // 2] ^= 0x01
            path.write_bytes(bytes(raw))

        # Before anything loads it, status already says so.
        code, status = _status(capsys)
        assert code == 2 and status["health"]["status"] == "critical"
        check = _check(status, "champion_files")
        assert check["status"] == "critical" and "BTCUSDT/weekly/v2" in check["reason"]

        # The next load (a cadence run's, here directly) refuses it and falls back.
        serving = reg.serving_champion("BTCUSDT", "weekly")
        assert serving.version == 1
        assert reg.champion("BTCUSDT", "weekly").version == 1
        reg.load(serving)
        with pytest.raises(ArtifactIntegrityError):
            reg.load(v2)
        assert reg.serving_champion("BTCUSDT", "weekly").version == 1  # a second load: nothing new happens

        [fell] = [d for d in reg.history("BTCUSDT", "weekly") if d.action == "fell_back"]
        assert (fell.version, fell.previous_champion, fell.by) == (1, 2, "registry")
        assert "champion v2 refused" in fell.reason and "v1 serves" in fell.reason
        assert ("missing" if tamper == "delete" else "SHA-256") in fell.reason

        store = AlertStore(_db_url(project))
        key = artifact_alert_key("BTCUSDT", "weekly")
        [alert] = [a for a in store.open_alerts() if a.key.startswith("model_artifact:")]
        assert alert.key == key and alert.severity.value == "critical" and "v2" in alert.body
        assert len(store.history(key=key, event="raised")) == 1

        [event] = _champion_events(instance)
        metadata = {k: getattr(v, "value", v) for k, v in event.event_log_entry.asset_materialization.metadata.items()}
        assert (metadata["change"], metadata["version"], metadata["previous_version"]) == ("fell_back", "v1", "v2")

    code, status = _status(capsys)
    assert code == 2  # the alert stays open until a champion chosen by the gate or an operator serves
    assert _check(status, "champion_files")["status"] == "healthy"
    assert key in _check(status, "alerts")["reason"]

    # A new promotion ends the incident.
    with dg.DagsterInstance.from_config(str(project)) as instance:
        reg = _registry(project, instance)
        reg.promote(reg.register("BTCUSDT", "weekly", _model(5)), reason="gate")
    assert store.open_alert(key) is None


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_rollback_eligibility_and_fall_back_on_each_database(tmp_path, request, backend):
    """The same rules on PostgreSQL (the production platform database) as on SQLite, registry only."""
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'p.db'}"
    changes = []
    reg = ModelRegistry(str(tmp_path / "models"), url, on_change=lambda d, v: changes.append((d.action, d.version)))
    v1 = reg.register("BTCUSDT", "weekly", _model(1))
    reg.promote(v1, reason="gate")
    v2 = reg.register("BTCUSDT", "weekly", _model(2), info={"gate_passed": False, "gate_reason": "drift"})
    reg.reject(v2, reason="drift")
    v3 = reg.register("BTCUSDT", "weekly", _model(3))
    reg.promote(v3, reason="gate")
    assert reg.rollback_targets("BTCUSDT", "weekly") == [1]
    with pytest.raises(Exception, match="v2 was rejected by the promotion gate"):
        reg.rollback("BTCUSDT", "weekly", 2, reason="try")

    Path(v3.uri).unlink()
    assert reg.serving_champion("BTCUSDT", "weekly").version == 1
    Path(v1.uri).write_bytes(b"tampered too")
    assert reg.serving_champion("BTCUSDT", "weekly") is None  # nothing earlier verifies: nothing serves
    assert reg.champion("BTCUSDT", "weekly") is None
    last = reg.history("BTCUSDT", "weekly")[-1]
    assert (last.action, last.version, last.previous_champion) == ("fell_back", None, 1)
    assert "no champion serves" in last.reason
    assert changes == [("promoted", 1), ("promoted", 3), ("fell_back", 1), ("fell_back", None)]


# -- paths relative to the artifact root, numbers never reused -------------------------------------------
def test_a_moved_or_copied_instance_reads_its_own_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    reg_a = ModelRegistry(str(a / "models"), f"sqlite:///{a / 'platform.db'}")
    v1 = reg_a.register("BTCUSDT", "weekly", _model(1))
    reg_a.promote(v1, reason="gate")
    v2 = reg_a.register("BTCUSDT", "weekly", _model(2))
    # A row written by an older version, with the absolute path of the original instance.
    with engine_for(f"sqlite:///{a / 'platform.db'}").begin() as conn:
        conn.execute(versions_table.update().where(versions_table.c.version == 2).values(uri=str(Path(v2.uri))))
    engine_for(f"sqlite:///{a / 'platform.db'}").dispose()

    shutil.copytree(a, b)
    for f in (a / "models").rglob("*.skops"):  # the original now holds other bytes: b must not read them
        f.write_bytes(b"not the copied model")

    reg_b = ModelRegistry(str(b / "models"), f"sqlite:///{b / 'platform.db'}")
    champion = reg_b.serving_champion("BTCUSDT", "weekly")
    assert champion.version == 1 and Path(champion.uri).is_relative_to(b)
    assert reg_b.load(champion).get_params()["C"] == 2.0
    legacy = reg_b.get("BTCUSDT", "weekly", 2)
    assert Path(legacy.uri) == b / "models" / "BTCUSDT" / "weekly" / "v0002.skops"
    assert reg_b.load(legacy).get_params()["C"] == 3.0
    with engine_for(f"sqlite:///{b / 'platform.db'}").connect() as conn:
        stored = conn.execute(sa.select(versions_table.c.uri).where(versions_table.c.version == 1)).scalar()
    assert stored == "BTCUSDT/weekly/v0001.skops"


def test_a_lost_database_never_leads_to_overwriting_a_model_file(tmp_path):
    root = tmp_path / "models"
    reg = ModelRegistry(str(root), f"sqlite:///{tmp_path / 'first.db'}")
    v1 = reg.register("BTCUSDT", "weekly", _model(1))
    v1_bytes = hashlib.sha256(Path(v1.uri).read_bytes()).hexdigest()

    fresh = ModelRegistry(str(root), f"sqlite:///{tmp_path / 'restored-empty.db'}")  # the database was lost
    v_new = fresh.register("BTCUSDT", "weekly", _model(2))

    assert v_new.version == 2 and Path(v_new.uri).name == "v0002.skops"
    assert hashlib.sha256(Path(v1.uri).read_bytes()).hexdigest() == v1_bytes
    assert sorted(p.name for p in (root / "BTCUSDT" / "weekly").iterdir()) == ["v0001.skops", "v0002.skops"]
    fresh.load(v_new)


def test_a_file_appearing_under_a_number_being_allocated_is_not_overwritten(tmp_path, monkeypatch):
    """Another writer (a restored backup, an old process on a lost database) creates v1 between the number
    being chosen and the file being published: the new model takes the next number."""
    root = tmp_path / "models"
    reg = ModelRegistry(str(root), f"sqlite:///{tmp_path / 'platform.db'}")
    real_publish = reg._publish
    planted = root / "BTCUSDT" / "weekly" / "v0001.skops"

    def racing_publish(tmp, path):
        if not planted.exists():
            planted.write_bytes(b"someone else's model")
        real_publish(tmp, path)

    monkeypatch.setattr(reg, "_publish", racing_publish)
    mv = reg.register("BTCUSDT", "weekly", _model(1))
    assert mv.version == 2
    assert planted.read_bytes() == b"someone else's model"
    assert [v.version for v in reg.versions("BTCUSDT", "weekly")] == [2]


# -- a corrupted platform database ------------------------------------------------------------------------
def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def _damaged_pages(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[4096:] = os.urandom(len(raw) - 4096)  # the header survives; the tables do not
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [_garbage, _damaged_pages], ids=["garbage", "damaged_pages"])
def test_status_is_critical_on_a_corrupted_platform_database_and_names_it(project, capsys, damage):
    reg = _registry(project)
    reg.promote(reg.register("BTCUSDT", "weekly", _model(1)), reason="gate")
    engine_for(_db_url(project)).dispose()
    db = project / ".alphapulse" / "platform.db"
    with sqlite3_checkpoint(db):
        pass
    damage(db)

    code, status = _status(capsys)

    assert code == 2 and status["health"]["status"] == "critical"
    check = _check(status, "platform_db")
    assert check["status"] == "critical"
    assert str(db) in check["reason"]
    assert "not a database" in check["reason"] or "malformed" in check["reason"] or "quick_check" in check["reason"]


class sqlite3_checkpoint:
    """Fold the WAL into the database file and remove it, so the damage hits the only copy."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        import sqlite3

        conn = sqlite3.connect(self.path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.close()
        return self

    def __exit__(self, *exc):
        for suffix in ("-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)


# -- the same through a real cadence run --------------------------------------------------------------------
@pytest.mark.slow
def test_a_cadence_run_falls_back_from_a_tampered_champion_and_shows_it(tmp_path):
    """The weekly cadence (real assets, real run) meets a tampered champion file: it trains against the previous
    verified champion, records the fall-back, alerts once, and the champion asset shows the change."""
    from alphapulse_assets.market_data.resources import CandleStoreResource, PartitionedParquetIOManager
    from alphapulse_assets.training.assets import ModelRegistryResource, cadence_assets
    from alphapulse_assets_tests.candles import ingest, symbol_tags

    db_url = f"sqlite:///{tmp_path / 'platform.db'}"
    resources = {
        "candle_store": CandleStoreResource(base_url=str(tmp_path / "candles")),
        "training_set_io_manager": PartitionedParquetIOManager(base_url=str(tmp_path / "ts"), layout="keys"),
        "model_registry": ModelRegistryResource(artifact_root=str(tmp_path / "models"), db_url=db_url),
    }

    def run_weekly(instance, key):
        return dg.materialize(
            cadence_assets["weekly"],
            tags=symbol_tags(instance, key, ["ETHUSDT"]),
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )

    with dg.instance_for_test() as instance:
        ingest(instance, str(tmp_path / "candles"), "2024-03-01", "2024-06-09", symbols=["ETHUSDT"])
        reg = resources["model_registry"].get(instance)
        run_weekly(instance, "2024-05-26")
        v1 = reg.champion("ETHUSDT", "weekly")
        assert v1 is not None and v1.version == 1  # the sample market: ETH clears the gate this week
        v2 = reg.register("ETHUSDT", "weekly", reg.load(v1), info=v1.info)  # a second champion, then tampered
        reg.promote(v2, reason="second champion")
        Path(v2.uri).write_bytes(Path(v2.uri).read_bytes()[:-7])

        result = run_weekly(instance, "2024-06-02")

        model = next(
            m
            for m in result.get_asset_materialization_events()
            if m.asset_key == dg.AssetKey(["models", "weekly"]) and m.partition.endswith("|ETHUSDT")
        ).materialization
        assert model.metadata["champion_before"].value == "v1"  # compared with the verified champion, not v2
        fell = [d for d in reg.history("ETHUSDT", "weekly") if d.action == "fell_back"]
        assert [(d.version, d.previous_champion) for d in fell] == [(1, 2)]
        store_ = AlertStore(db_url)
        assert [a.key for a in store_.open_alerts()] == [artifact_alert_key("ETHUSDT", "weekly")]
        assert len(store_.history(key=artifact_alert_key("ETHUSDT", "weekly"), event="raised")) == 1
        shown = [
            {k: getattr(v, "value", v) for k, v in r.event_log_entry.asset_materialization.metadata.items()}
            for r in instance.fetch_materializations(CHAMPION, limit=10).records
            if _symbol_of(r) == "ETHUSDT"
        ]
        changes = sorted((m["change"], m["version"], m["previous_version"], m["by"]) for m in shown)
        assert ("fell_back", "v1", "v2", "registry") in changes
        assert (
            "promoted",
            "v1",
            "none (first champion)",
            "promotion-gate",
        ) in changes  # the first promotion, with who and why
