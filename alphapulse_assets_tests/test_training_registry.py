"""Model registry: round trips, version numbering, integrity refusals, decisions, rollback, atomicity.

Backends: a SQLite file under ``tmp_path`` and a real PostgreSQL (``postgres_url``). Artifacts on a local
directory and on an fsspec ``memory://`` root. Concurrency and crash tests use real subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import fsspec
import numpy as np
import pytest
import skops.io
from fsspec.implementations.memory import MemoryFile
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from alphapulse_assets import atomic_files
from alphapulse_assets.platform_db import engine_for
from alphapulse_assets.recovery.errors import ErrorClass, PermanentError
from alphapulse_assets.training import registry as registry_module
from alphapulse_assets.training.registry import ArtifactIntegrityError, ModelRegistry, versions_table

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


class Sneaky:
    """A class defined here, so a skops dump of it carries a type nobody trusts."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


# -- data and models -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    return X, y


@pytest.fixture(scope="module")
def models(data):
    X, y = data
    return {
        "hgb_a": HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(X, y),
        "hgb_b": HistGradientBoostingClassifier(max_iter=25, max_depth=3, random_state=1).fit(X, y),
        "sgd_a": make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)).fit(X, y),
        "sgd_b": make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", alpha=1e-2, random_state=3)).fit(X, y),
    }


class StepClock:
    """An injected clock: each call is one minute after the previous one."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        return T0 + timedelta(minutes=self.calls)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'platform.db'}"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'platform.db'}"


@pytest.fixture
def memory_root():
    root = f"memory://ap-test-{uuid.uuid4().hex}"
    yield root
    fs, path = fsspec.core.url_to_fs(root)
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.fixture
def skops_load_forbidden(monkeypatch):
    """Any deserialisation through skops fails the test (the registry looks ``sio.load`` up at call time)."""

    def forbidden(*args, **kwargs):
        pytest.fail("skops.io.load was called on an artifact that should have been refused")

    monkeypatch.setattr(skops.io, "load", forbidden)
    monkeypatch.setattr(skops.io, "loads", forbidden)


def same_predictions(a, b, X) -> bool:
    return np.array_equal(a.predict_proba(X), b.predict_proba(X))


def registry(root, url, clock=None) -> ModelRegistry:
    return ModelRegistry(str(root), url, clock=clock or StepClock())


# -- round trips and numbering ---------------------------------------------------------------------------
def test_register_and_load_round_trip_with_per_pair_numbering(tmp_path, db_url, models, data):
    X, _ = data
    clock = StepClock()
    reg = registry(tmp_path / "models", db_url, clock)
    v1 = reg.register("BTCUSDT", "weekly", models["hgb_a"], info={"f1": 0.61, "window": "10w"})
    v2 = reg.register("BTCUSDT", "weekly", models["hgb_b"])
    v3 = reg.register("BTCUSDT", "weekly", models["sgd_a"])
    v4 = reg.register("BTCUSDT", "weekly", models["sgd_b"])
    e1 = reg.register("ETHUSDT", "weekly", models["sgd_a"])
    n1 = reg.register("BTCUSDT", "nightly", models["hgb_a"])

    assert [v.version for v in (v1, v2, v3, v4)] == [1, 2, 3, 4]
    assert (e1.version, n1.version) == (1, 1)  # numbering is per (symbol, cadence)
    assert [v.version for v in reg.versions("BTCUSDT", "weekly")] == [1, 2, 3, 4]
    assert [v.version for v in reg.versions("ETHUSDT", "weekly")] == [1]
    assert v1.created_at == T0 + timedelta(minutes=1)  # the injected clock, not the wall clock
    assert v1.uri.endswith("BTCUSDT/weekly/v0001.skops") and Path(v1.uri).is_file()

    for mv, name in ((v1, "hgb_a"), (v2, "hgb_b"), (v3, "sgd_a"), (v4, "sgd_b"), (e1, "sgd_a"), (n1, "hgb_a")):
        stored = reg.get(mv.symbol, mv.cadence, mv.version)
        assert stored == mv
        assert stored.sha256 == hashlib.sha256(Path(stored.uri).read_bytes()).hexdigest()
        loaded = reg.load(stored)
        assert type(loaded) is type(models[name])
        assert same_predictions(loaded, models[name], X)
    # the two HGB versions really are different models, so equality above is not vacuous
    assert not same_predictions(models["hgb_a"], models["hgb_b"], X)
    assert reg.get("BTCUSDT", "weekly", 1).info == {"f1": 0.61, "window": "10w"}
    # a fresh registry object (another process, later) sees the same versions
    again = ModelRegistry(str(tmp_path / "models"), db_url)
    assert same_predictions(again.load(again.get("BTCUSDT", "weekly", 4)), models["sgd_b"], X)
    with pytest.raises(PermanentError, match="no version 9 of BTCUSDT/weekly"):
        reg.get("BTCUSDT", "weekly", 9)


def test_load_actually_goes_through_skops_load(tmp_path, sqlite_url, models, data, monkeypatch):
    """Control for the refusal tests: the patched function is the one the registry calls."""
    calls = []
    real = skops.io.load

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(skops.io, "load", spy)
    reg = registry(tmp_path / "models", sqlite_url)
    mv = reg.register("BTCUSDT", "weekly", models["hgb_a"])
    assert same_predictions(reg.load(mv), models["hgb_a"], data[0])
    assert calls == [1]


# -- integrity -------------------------------------------------------------------------------------------
def _flip_byte(path: Path, models) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def _truncate(path: Path, models) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _replace_with_other_valid(path: Path, models) -> None:
    path.write_bytes(skops.io.dumps(models["sgd_b"]))  # a perfectly loadable, trusted, different model


def _delete(path: Path, models) -> None:
    path.unlink()


TAMPERS = {"flip_byte": _flip_byte, "truncate": _truncate, "replace": _replace_with_other_valid, "delete": _delete}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_tampered_artifact_is_refused_and_never_deserialised(
    tmp_path, sqlite_url, models, tamper, skops_load_forbidden
):
    reg = registry(tmp_path / "models", sqlite_url)
    reg.register("BTCUSDT", "weekly", models["hgb_a"])
    mv = reg.register("BTCUSDT", "weekly", models["hgb_b"])
    TAMPERS[tamper](Path(mv.uri), models)

    with pytest.raises(ArtifactIntegrityError) as err:
        reg.load(mv)
    message = str(err.value)
    assert "BTCUSDT/weekly/v2" in message and mv.uri in message
    assert err.value.where == mv.uri
    assert err.value.error_class is ErrorClass.PERMANENT  # never retried
    assert ("missing" if tamper == "delete" else "SHA-256") in message
    with pytest.raises(ArtifactIntegrityError):
        reg.verify(mv)
    with pytest.raises(ArtifactIntegrityError):  # a tampered challenger cannot become champion either
        reg.promote(mv, reason="looks good")
    assert reg.champion("BTCUSDT", "weekly") is None
    assert reg.history("BTCUSDT", "weekly") == []


def test_untrusted_type_is_refused_at_register_time(tmp_path, sqlite_url):
    reg = registry(tmp_path / "models", sqlite_url)
    with pytest.raises(ArtifactIntegrityError, match="untrusted types") as err:
        reg.register("BTCUSDT", "weekly", Sneaky())
    assert "test_training_registry.Sneaky" in str(err.value)
    assert reg.versions("BTCUSDT", "weekly") == []
    assert not any(p.is_file() for p in (tmp_path / "models").rglob("*"))


def test_planted_untrusted_artifact_with_matching_digest_is_refused(tmp_path, sqlite_url, models, skops_load_forbidden):
    """Someone who can write both the file and its digest still cannot get foreign code loaded."""
    reg = registry(tmp_path / "models", sqlite_url)
    mv = reg.register("BTCUSDT", "weekly", models["hgb_a"])
    evil = skops.io.dumps(Sneaky())
    Path(mv.uri).write_bytes(evil)
    with engine_for(sqlite_url).begin() as conn:
        conn.execute(
            versions_table.update()
            .where(versions_table.c.version == mv.version)
            .values(sha256=hashlib.sha256(evil).hexdigest())
        )
    planted = reg.get("BTCUSDT", "weekly", mv.version)
    with pytest.raises(ArtifactIntegrityError, match="untrusted types") as err:
        reg.load(planted)
    assert "Sneaky" in str(err.value) and "BTCUSDT/weekly/v1" in str(err.value) and mv.uri in str(err.value)


def test_numpy_function_inside_a_sklearn_estimator_is_not_trusted(tmp_path, sqlite_url):
    """Trust is for classes: a NumPy *function* as an estimator's callable is refused, a ufunc is fine."""
    reg = registry(tmp_path / "models", sqlite_url)
    with pytest.raises(ArtifactIntegrityError, match="numpy.testing"):
        reg.register("BTCUSDT", "weekly", FunctionTransformer(func=np.testing.assert_equal))
    ok = reg.register("BTCUSDT", "weekly", FunctionTransformer(func=np.log1p).fit(np.ones((3, 2))))
    assert isinstance(reg.load(ok), FunctionTransformer)


# -- decisions, champions, rollback ----------------------------------------------------------------------
def test_decisions_are_recorded_with_reasons(tmp_path, db_url, models):
    clock = StepClock()
    reg = registry(tmp_path / "models", db_url, clock)
    v1 = reg.register("BTCUSDT", "weekly", models["hgb_a"])
    v2 = reg.register("BTCUSDT", "weekly", models["hgb_b"])
    v3 = reg.register("BTCUSDT", "weekly", models["sgd_a"])
    other = reg.register("ETHUSDT", "weekly", models["sgd_a"])

    reg.promote(v1, reason="first model: beats baseline F1 0.58 > 0.51")
    reg.reject(v2, reason="F1 0.59 < champion 0.58 + 0.03")
    reg.keep_champion("BTCUSDT", "weekly", reason="weekly run failed: source timeout")
    reg.promote(v3, reason="F1 0.66 beats champion by 0.08", by="operator:alice")
    reg.rollback("BTCUSDT", "weekly", reason="live precision dropped 20%")
    reg.promote(other, reason="eth first")

    rows = reg.history("BTCUSDT", "weekly")
    assert [(d.action, d.version, d.previous_champion, d.by) for d in rows] == [
        ("promoted", 1, None, "promotion-gate"),
        ("rejected", 2, 1, "promotion-gate"),
        ("kept", 1, 1, "fallback"),
        ("promoted", 3, 1, "operator:alice"),
        ("rolled_back", 1, 3, "operator"),
    ]
    assert [d.reason for d in rows] == [
        "first model: beats baseline F1 0.58 > 0.51",
        "F1 0.59 < champion 0.58 + 0.03",
        "weekly run failed: source timeout",
        "F1 0.66 beats champion by 0.08",
        "live precision dropped 20%",
    ]
    # every decision is stamped by the injected clock, in order
    assert [d.at for d in rows] == sorted(d.at for d in rows)
    assert all(d.at.tzinfo is not None and T0 < d.at < T0 + timedelta(hours=1) for d in rows)
    assert reg.champion("BTCUSDT", "weekly").version == 1
    assert [(c.symbol, c.version) for c in reg.champions()] == [("BTCUSDT", 1), ("ETHUSDT", 1)]
    assert len(reg.history()) == 6 and len(reg.history("ETHUSDT")) == 1
    # ``limit`` keeps the most recent decisions, oldest first
    assert [d.action for d in reg.history("BTCUSDT", "weekly", limit=2)] == ["promoted", "rolled_back"]


def test_keep_champion_without_champion_is_recorded(tmp_path, sqlite_url):
    reg = registry(tmp_path / "models", sqlite_url)
    d = reg.keep_champion("ADAUSDT", "monthly", reason="first monthly run failed")
    assert (d.action, d.version, d.previous_champion) == ("kept", None, None)
    assert reg.history("ADAUSDT")[0].reason == "first monthly run failed"


def test_rollback_restores_the_exact_previous_model(tmp_path, db_url, models, data):
    X, _ = data
    reg = registry(tmp_path / "models", db_url)
    v1 = reg.register("BTCUSDT", "weekly", models["hgb_a"])
    v2 = reg.register("BTCUSDT", "weekly", models["sgd_a"])
    reg.promote(v1, reason="first")
    reg.promote(v2, reason="better")
    assert same_predictions(reg.load(reg.champion("BTCUSDT", "weekly")), models["sgd_a"], X)

    d = reg.rollback("BTCUSDT", "weekly", reason="drift severity 31%")
    assert (d.action, d.version, d.previous_champion, d.reason) == ("rolled_back", 1, 2, "drift severity 31%")
    champion = reg.champion("BTCUSDT", "weekly")
    assert champion.version == 1
    assert same_predictions(reg.load(champion), models["hgb_a"], X)


def test_plain_rollbacks_walk_back_the_champion_chain(tmp_path, sqlite_url, models):
    """Rolling back twice goes two champions back; it never reinstates the version just rolled away from."""
    reg = registry(tmp_path / "models", sqlite_url)
    vs = [reg.register("BTCUSDT", "weekly", models[n]) for n in ("hgb_a", "hgb_b", "sgd_a")]
    with pytest.raises(PermanentError, match="no earlier champion"):
        reg.rollback("BTCUSDT", "weekly", reason="nothing yet")
    for v in vs:
        reg.promote(v, reason=f"v{v.version}")
    assert reg.rollback("BTCUSDT", "weekly", reason="v3 bad").version == 2
    assert reg.rollback("BTCUSDT", "weekly", reason="v2 bad too").version == 1
    with pytest.raises(PermanentError, match="no earlier champion"):
        reg.rollback("BTCUSDT", "weekly", reason="nothing before v1")
    assert reg.champion("BTCUSDT", "weekly").version == 1
    # an explicit target is honoured, and a plain rollback then returns to where we came from
    assert reg.rollback("BTCUSDT", "weekly", to_version=3, reason="v3 was fine after all").version == 3
    assert reg.rollback("BTCUSDT", "weekly", reason="no it was not").version == 1


def test_rollback_chain_with_a_re_promoted_version(tmp_path, sqlite_url, models):
    reg = registry(tmp_path / "models", sqlite_url)
    v1, v2, v3 = (reg.register("BTCUSDT", "weekly", models[n]) for n in ("hgb_a", "hgb_b", "sgd_a"))
    for v in (v1, v2, v1, v3):  # v1 was champion twice
        reg.promote(v, reason=f"v{v.version}")
    assert reg.rollback("BTCUSDT", "weekly", reason="v3 bad").version == 1
    assert reg.rollback("BTCUSDT", "weekly", reason="v1 bad").version == 2  # the champion before v1's return
    assert reg.rollback("BTCUSDT", "weekly", reason="v2 bad").version == 1


def test_rollback_chain_survives_a_long_history(tmp_path, sqlite_url, models):
    """The rollback target is not taken from a truncated ``history()`` page."""
    reg = registry(tmp_path / "models", sqlite_url)
    v1 = reg.register("BTCUSDT", "weekly", models["hgb_a"])
    v2 = reg.register("BTCUSDT", "weekly", models["hgb_b"])
    for i in range(1005):  # years of nightly "kept" decisions come before the promotions
        reg.keep_champion("BTCUSDT", "weekly", reason=f"night {i} failed")
    reg.promote(v1, reason="first")
    reg.promote(v2, reason="second")
    assert len(reg.history("BTCUSDT", "weekly")) == 1000
    assert reg.history("BTCUSDT", "weekly")[-1].reason == "second"  # the newest page, not the oldest
    assert reg.rollback("BTCUSDT", "weekly", reason="bad").version == 1


@pytest.mark.parametrize("explicit", [False, True])
def test_rollback_to_a_corrupted_version_is_refused(tmp_path, db_url, models, explicit, skops_load_forbidden):
    reg = registry(tmp_path / "models", db_url)
    v1 = reg.register("BTCUSDT", "weekly", models["hgb_a"])
    v2 = reg.register("BTCUSDT", "weekly", models["sgd_a"])
    reg.promote(v1, reason="first")
    reg.promote(v2, reason="better")
    _flip_byte(Path(v1.uri), models)

    with pytest.raises(ArtifactIntegrityError) as err:
        reg.rollback("BTCUSDT", "weekly", to_version=1 if explicit else None, reason="live drop")
    assert "BTCUSDT/weekly/v1" in str(err.value) and v1.uri in str(err.value)
    assert reg.champion("BTCUSDT", "weekly").version == 2
    assert [d.action for d in reg.history("BTCUSDT", "weekly")] == ["promoted", "promoted"]


# -- fsspec memory:// ----------------------------------------------------------------------------------
def test_memory_root_round_trip_and_refusals(memory_root, sqlite_url, models, data, monkeypatch):
    X, _ = data
    reg = registry(memory_root, sqlite_url)
    fs = reg.fs
    v1 = reg.register("BTCUSDT", "weekly", models["hgb_a"])
    v2 = reg.register("BTCUSDT", "weekly", models["sgd_a"])
    assert v1.uri.startswith("memory://") and v1.uri.endswith("/BTCUSDT/weekly/v0001.skops")
    assert fs.cat_file(v1.uri) and hashlib.sha256(fs.cat_file(v1.uri)).hexdigest() == v1.sha256
    assert same_predictions(reg.load(v1), models["hgb_a"], X)
    assert same_predictions(reg.load(v2), models["sgd_a"], X)
    reg.promote(v1, reason="first")
    reg.promote(v2, reason="second")
    assert same_predictions(reg.load(reg.champion("BTCUSDT", "weekly")), models["sgd_a"], X)
    # only the two version files remain: no staging leftovers
    assert sorted(p.rsplit("/", 1)[1] for p in fs.find(memory_root)) == ["v0001.skops", "v0002.skops"]

    monkeypatch.setattr(skops.io, "load", lambda *a, **k: pytest.fail("deserialised a tampered file"))
    fs.pipe_file(v1.uri, fs.cat_file(v1.uri)[:-10])
    with pytest.raises(ArtifactIntegrityError, match="SHA-256") as err:
        reg.rollback("BTCUSDT", "weekly", reason="drop")
    assert v1.uri in str(err.value) and "v1" in str(err.value)
    fs.rm(v2.uri)
    with pytest.raises(ArtifactIntegrityError, match="missing"):
        reg.load(v2)
    assert reg.champion("BTCUSDT", "weekly").version == 2


def test_memory_root_crash_while_writing_leaves_nothing(memory_root, sqlite_url, models, monkeypatch):
    reg = registry(memory_root, sqlite_url)

    def crash_write(self, data):
        super(MemoryFile, self).write(data[: len(data) // 2])
        raise OSError("disk went away mid-write")

    with monkeypatch.context() as m:
        m.setattr(MemoryFile, "write", crash_write)
        with pytest.raises(OSError, match="mid-write"):
            reg.register("BTCUSDT", "weekly", models["hgb_a"])
    assert reg.versions("BTCUSDT", "weekly") == []
    assert reg.fs.find(memory_root) == []  # the half-written staging file was removed too

    with monkeypatch.context() as m:
        m.setattr(type(reg.fs), "mv", lambda self, *a, **k: (_ for _ in ()).throw(OSError("mv failed")))
        with pytest.raises(OSError, match="mv failed"):
            reg.register("BTCUSDT", "weekly", models["hgb_a"])
    assert reg.versions("BTCUSDT", "weekly") == []
    assert reg.fs.find(memory_root) == []
    assert reg.register("BTCUSDT", "weekly", models["hgb_a"]).version == 1  # and the registry still works


# -- atomicity on a local disk -----------------------------------------------------------------------------
def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_crash_in_replace_leaves_no_row_and_no_file(tmp_path, db_url, models, data, monkeypatch):
    root = tmp_path / "models"
    reg = registry(root, db_url)
    v1 = reg.register("BTCUSDT", "weekly", models["hgb_a"])

    def broken_link(src, dst):
        raise OSError("crash during rename")

    monkeypatch.setattr(registry_module.os, "link", broken_link)
    with pytest.raises(OSError, match="crash during rename"):
        reg.register("BTCUSDT", "weekly", models["sgd_a"])
    monkeypatch.undo()

    assert [v.version for v in reg.versions("BTCUSDT", "weekly")] == [1]
    assert _files(root) == ["BTCUSDT/weekly/v0001.skops"]
    v2 = reg.register("BTCUSDT", "weekly", models["sgd_a"])
    assert v2.version == 2
    assert same_predictions(reg.load(v2), models["sgd_a"], data[0])
    assert same_predictions(reg.load(v1), models["hgb_a"], data[0])


def test_crash_in_write_leaves_no_row_and_no_file(tmp_path, sqlite_url, models, monkeypatch):
    root = tmp_path / "models"
    reg = registry(root, sqlite_url)
    real_open = open

    class HalfWriter:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            raise OSError("no space left mid-write")

    def crashing_open(path, mode="r", *args, **kwargs):
        return HalfWriter(real_open(path, mode, *args, **kwargs))

    monkeypatch.setattr(atomic_files, "open", crashing_open, raising=False)  # where the registry writes files
    with pytest.raises(OSError, match="mid-write"):
        reg.register("BTCUSDT", "weekly", models["hgb_a"])
    monkeypatch.undo()
    assert reg.versions("BTCUSDT", "weekly") == []
    assert _files(root) == []


_KILL_IN_PUBLISH = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from alphapulse_assets.training import registry as r
    reg = r.ModelRegistry(sys.argv[1], sys.argv[2])
    X = np.arange(20.0).reshape(10, 2); y = np.array([0, 1] * 5)
    def die(src, dst):
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies with the row inserted, uncommitted
    r.os.link = die
    reg.register("BTCUSDT", "weekly", LogisticRegression().fit(X, y))
""")


def test_process_killed_while_publishing_leaves_no_row(tmp_path, db_url):
    root = tmp_path / "models"
    ModelRegistry(str(root), db_url)  # create the tables first
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_IN_PUBLISH, str(root), db_url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stderr
    reg = ModelRegistry(str(root), db_url)
    assert reg.versions("BTCUSDT", "weekly") == []
    assert not (root / "BTCUSDT" / "weekly" / "v0001.skops").exists()


# -- concurrency -------------------------------------------------------------------------------------------
_WORKER = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from alphapulse_assets.training.registry import ModelRegistry
    root, url, go, n, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    reg = ModelRegistry(root, url)
    rng = np.random.default_rng(seed)
    models = []
    for i in range(n):
        X = rng.normal(size=(40, 3)); y = (X[:, 0] > 0).astype(int)
        models.append(LogisticRegression(C=1.0 + seed + i / 10).fit(X, y))
    open(go + f".ready{seed}", "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(go):  # start together, so the registrations really overlap
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.005)
    out = [(reg.register("BTCUSDT", "weekly", m, info={"seed": seed, "i": i}).version,
            float(m.coef_.sum())) for i, m in enumerate(models)]
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_concurrent_registrations_get_distinct_versions(tmp_path, db_url):
    root = tmp_path / "models"
    ModelRegistry(str(root), db_url)  # tables exist before the race
    go = tmp_path / "go"
    n_procs, per_proc = 3, 6
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(root), db_url, str(go), str(per_proc), str(s)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in range(n_procs)
    ]
    try:
        # wait until every worker has imported sklearn and fitted its models, then release them at once
        ready = [tmp_path / f"go.ready{s}" for s in range(n_procs)]
        deadline = time.monotonic() + 180  # three cold imports of sklearn on a busy 2-core machine
        while not all(r.exists() for r in ready):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "workers did not start"
            time.sleep(0.01)
        go.write_text("go")
        results = [p.communicate(timeout=90) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_out, err) in zip(procs, results, strict=False):
        assert p.returncode == 0, err
    claimed = [json.loads(out) for out, _ in results]
    versions = sorted(v for rows in claimed for v, _ in rows)
    assert versions == list(range(1, n_procs * per_proc + 1))  # distinct, no gaps, none lost

    reg = ModelRegistry(str(root), db_url)
    stored = reg.versions("BTCUSDT", "weekly")
    assert [v.version for v in stored] == versions
    by_version = {v: coef for rows in claimed for v, coef in rows}
    for mv in stored:  # every row points at the file its own writer wrote
        model = reg.load(mv)
        assert float(model.coef_.sum()) == pytest.approx(by_version[mv.version], rel=0, abs=0)
    assert sorted(p.name for p in (root / "BTCUSDT" / "weekly").iterdir()) == [f"v{v:04d}.skops" for v in versions]


@pytest.mark.parametrize(
    "name, trusted",
    [
        ("sklearn.linear_model._logistic.LogisticRegression", True),
        ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor", True),
        ("numpy.testing._private.utils.runstring", False),  # a function that execs its argument
        ("numpy.f2py.__main__.main", False),  # importing it would run a program: never resolved
        ("sklearn.no_such_module.Thing", False),
        ("posix.system", False),
        ("alphapulse_assets_tests.test_training_registry.Sneaky", False),
    ],
)
def test_trust_policy(name, trusted):
    assert registry_module._is_trusted_type(name) is trusted


# -- look-ups by indexed columns -------------------------------------------------------------------------
class _Statements:
    """The SQL statements an engine runs inside the ``with`` block."""

    def __init__(self, engine):
        self.engine, self.sql = engine, []

    def _record(self, conn, cursor, statement, *args):
        self.sql.append(statement)

    def __enter__(self):
        registry_module.sa.event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc):
        registry_module.sa.event.remove(self.engine, "before_cursor_execute", self._record)


@pytest.mark.parametrize("n_symbols", [5, 50])
def test_look_ups_by_run_and_the_newest_version_cost_one_query_whatever_the_symbols(tmp_path, db_url, n_symbols):
    """The models step asks which partitions this run already trained (a retried step skips them): one query on
    the indexed run column for every symbol, reading no stored JSON; the newest version and the champions
    likewise (they loaded every version, or one query per champion)."""
    from sklearn.linear_model import LogisticRegression

    reg = registry(tmp_path / "models", db_url)
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    symbols = [f"S{i:03d}USDT" for i in range(n_symbols)]
    profile = {"reference_profile": {f"f{i}": list(range(101)) for i in range(20)}}  # kilobytes, as in real runs
    for symbol in symbols:
        old = reg.register(symbol, "nightly", model, info={"run_id": "run-1", "partition": "2024-06-01", **profile})
        reg.promote(old, reason="first")
        reg.register(symbol, "nightly", model, info={"run_id": "run-2", "partition": "2024-06-02", **profile})
    reg.register(symbols[0], "nightly", model, info={"run_id": "run-2", "partition": "2024-06-03", **profile})

    with _Statements(reg.engine) as statements:
        trained = reg.partitions_trained("nightly", "run-2")
        latest = reg.latest_version(symbols[-1], "nightly")
        champions = reg.champions()
    assert trained == {s: {"2024-06-02"} for s in symbols} | {symbols[0]: {"2024-06-02", "2024-06-03"}}
    assert latest.version == 2 and latest.info["partition"] == "2024-06-02"
    assert [c.label for c in champions] == [f"{s}/nightly/v1" for s in symbols]
    assert len(statements.sql) == 3, statements.sql
    assert "info_json" not in statements.sql[0]  # the run's partitions come from columns, not the JSON
    assert reg.partitions_trained("nightly", "no-such-run") == {}
    assert reg.partitions_trained("nightly", "run-2", symbols[0]) == {symbols[0]: {"2024-06-02", "2024-06-03"}}
