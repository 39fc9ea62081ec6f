"""One shared store: candles, training sets, model artifacts and signals on an S3 server, nothing on local disk.

The server is moto's standalone S3 server (``moto_server``, fixture ``s3_server`` in conftest.py), started for the session on 127.0.0.1 and a free
port. Every run is a fresh process configured only by its environment (ALPHAPULSE_STORE__URL=s3://...,
ALPHAPULSE_STORE__ENDPOINT_URL, AWS_* credentials), as a Kubernetes pod is: it runs the platform's own jobs
from ``definitions.py`` through the same fsspec paths users use. Between the two cadence runs the worker's
ALPHAPULSE_HOME is wiped; the Dagster instance and platform database (PostgreSQL in production) stay.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from alphapulse_assets_tests.service_harness import BUCKET, CREDENTIALS

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = Path(sys.executable).parent
SYMBOLS = "ETHUSDT,BTCUSDT"
# Two weekly partitions: the first crowns a champion, the second loads it to gate its challenger against.
WEEKS = ("2024-05-26", "2024-06-02")

# Runs in one fresh process: the platform's jobs from definitions.py, configured by the environment only. Each
# argument is one run ("ingest,<start>,<end>" | "weekly,<week>" | "signals,<day>"); one JSON line per run.
RUN = r"""
import json, sys
import dagster as dg
from alphapulse_assets.definitions import defs
from alphapulse_assets.training.assets import ModelRegistryResource

instance = dg.DagsterInstance.get()
for arg in sys.argv[1:]:
    what, *params = arg.split(",")
    if what == "ingest":
        result = defs.get_job_def("ingest_market_data").execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": params[0], "dagster/asset_partition_range_end": params[1]},
            raise_on_error=False,
        )
    elif what == "signals":  # the champions' answers for one day, recorded in the store
        from alphapulse_assets.serving.assets import signals_assets

        signals = next(a for a in signals_assets if a.key == dg.AssetKey(["signals", "weekly"]))
        result = dg.materialize([signals], partition_key=params[0], instance=instance, resources=defs.resources,
                                raise_on_error=False)
    else:
        from alphapulse_assets.market_data.symbols import ensure_seeded
        from alphapulse_assets.training.schedules import cadence_run_tags

        [tags] = cadence_run_tags("weekly", params[0], ensure_seeded(instance), per_run=0)  # as the schedule asks
        result = defs.get_job_def("weekly_cadence").execute_in_process(instance=instance, tags=tags,
                                                                       raise_on_error=False)
    registry = ModelRegistryResource().get()
    print(json.dumps({
        "success": result.success,
        "failures": [str(e.event_specific_data.error.message)[:400] for e in result.all_events if e.is_step_failure],
        "history": [[d.symbol, d.action, d.version, d.previous_champion] for d in registry.history(cadence="weekly")],
        "artifacts": sorted(v.uri for s in ("ETHUSDT", "BTCUSDT") for v in registry.versions(s, "weekly")),
    }), flush=True)
"""


def _env(base: Path, store: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "ALPHAPULSE_", "AWS_"))}
    env.update(
        {
            "DAGSTER_HOME": str(base / "dagster_home"),  # the instance and platform DB (PostgreSQL in production)
            "ALPHAPULSE_HOME": str(base / "worker_home"),  # the worker's local disk
            "ALPHAPULSE_SYMBOLS": SYMBOLS,
            "ALPHAPULSE_SOURCES": "sample",
            "TZ": "UTC",
            **store,
        }
    )
    return env


def _run(env: dict[str, str], *runs: str) -> list[dict]:
    """``runs`` in one fresh process; each run's result, checked to have succeeded."""
    proc = subprocess.run(
        [sys.executable, "-c", RUN, *runs],
        env=env,
        cwd=env["DAGSTER_HOME"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    outs = [json.loads(line) for line in proc.stdout.strip().splitlines() if line.startswith("{")][-len(runs) :]
    assert len(outs) == len(runs), proc.stdout[-4000:]
    for out in outs:
        assert out["success"] and not out["failures"], out
    return outs


def _project(base: Path) -> None:
    (base / "dagster_home").mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", base / "dagster_home" / "dagster.yaml")


def _store_files(*roots: Path) -> list[str]:
    """Candle, training-set and model files under ``roots`` (Parquet and skops files, staged or not)."""
    return sorted(
        str(p) for root in roots if root.exists() for p in root.rglob("*") if p.suffix in (".parquet", ".skops", ".tmp")
    )


INGEST = "ingest,2024-03-01,2024-06-09"
SIGNALS = "signals,2024-06-09"  # served by the champion loaded from the store


def _cadence_on_fresh_workers(env: dict[str, str], wipe: Path) -> list[dict]:
    """Each run in a process of its own, the worker's local disk wiped before each cadence run and the
    signals (a new pod: nothing of the last run's local disk or memory survives)."""
    _run(env, INGEST)
    results = []
    for week in WEEKS:
        if wipe.exists():
            shutil.rmtree(wipe)
        results.extend(_run(env, f"weekly,{week}"))
    if wipe.exists():
        shutil.rmtree(wipe)
    _run(env, SIGNALS)
    return results


def _cadence_in_one_process(env: dict[str, str]) -> list[dict]:
    """The same runs on local disk, the reference: one process (what it decides does not depend on that)."""
    return _run(env, INGEST, *(f"weekly,{week}" for week in WEEKS), SIGNALS)[1:3]


@pytest.mark.slow
def test_artifacts_live_only_on_the_shared_store_and_a_wiped_worker_decides_as_on_local_disk(s3_server, tmp_path):
    import s3fs

    local, shared = tmp_path / "local", tmp_path / "shared"
    _project(local)
    _project(shared)
    root = f"s3://{BUCKET}/{tmp_path.name}"
    store_env = {"ALPHAPULSE_STORE__URL": root, "ALPHAPULSE_STORE__ENDPOINT_URL": s3_server, **CREDENTIALS}

    on_s3 = _cadence_on_fresh_workers(_env(shared, store_env), wipe=shared / "worker_home")
    on_disk = _cadence_in_one_process(_env(local, {}))

    # The second run loaded the first one's champion from the store and gated against it, as on local disk.
    assert [r["history"] for r in on_s3] == [r["history"] for r in on_disk]
    first, second = on_s3
    assert any(action == "promoted" for _, action, _, _ in first["history"]), first
    later = second["history"][len(first["history"]) :]
    assert later and any(previous is not None for _, _, _, previous in later), second  # gated against a champion
    assert all(uri.startswith(f"{root}/models/") for uri in second["artifacts"]), second["artifacts"]

    # Nothing a later run needs was written to the worker's disk (or beside the instance).
    assert _store_files(shared) == []
    assert _store_files(local)  # the same runs without a store URL do write there: the check can fail
    fs = s3fs.S3FileSystem(
        endpoint_url=s3_server, key=CREDENTIALS["AWS_ACCESS_KEY_ID"], secret=CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    )
    kinds = {p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)}
    assert {"candles", "training_sets", "models", "signals"} <= kinds
    assert fs.glob(f"{root}/signals/signals/weekly/2024-06-09__*.parquet")
    assert fs.glob(f"{root}/training_sets/**/weekly/by_key/*.parquet")
    assert len(fs.glob(f"{root}/models/*/weekly/v*.skops")) == len(second["artifacts"])
    assert not fs.glob(f"{root}/**/.*.tmp")  # no staged file left behind


def _s3(endpoint: str):
    import s3fs

    return s3fs.S3FileSystem(
        endpoint_url=endpoint, key=CREDENTIALS["AWS_ACCESS_KEY_ID"], secret=CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    )


@pytest.fixture
def s3_settings(s3_server, monkeypatch):
    """This process's settings pointed at the S3 server (endpoint from ALPHAPULSE_STORE__ENDPOINT_URL,
    credentials from AWS_*), restored afterwards."""
    from alphapulse_assets.settings import get_settings

    monkeypatch.setenv("ALPHAPULSE_STORE__ENDPOINT_URL", s3_server)
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield s3_server
    get_settings.cache_clear()


@pytest.mark.parametrize("size", [1_000, 12 * 2**20], ids=["one-shot", "multipart"])
def test_a_failed_upload_publishes_nothing_and_leaves_the_previous_object(s3_settings, size, tmp_path):
    from alphapulse_assets.atomic_files import atomic_write
    from alphapulse_assets.store_fs import open_store

    fs, root, is_local = open_store(f"s3://{BUCKET}/{tmp_path.name}-{size}")
    assert not is_local
    target = f"{root}/segment.parquet"
    atomic_write(fs, is_local, target, lambda fh: fh.write(b"old"), what="first")

    def fails_midway(fh):
        fh.write(b"x" * size)  # a multipart upload has sent parts by now
        raise OSError("connection reset while writing")

    with pytest.raises(OSError, match="connection reset"):
        atomic_write(fs, is_local, target, fails_midway, what="second")
    other = _s3(s3_settings)  # another machine's view
    assert other.cat(target) == b"old"
    assert not other.glob(f"{root}/.*") and other.ls(root, detail=False) == [target]
    assert not other.call_s3("list_multipart_uploads", Bucket=BUCKET).get("Uploads")  # aborted, not left open


@pytest.mark.slow
def test_model_versions_on_s3_are_never_overwritten_even_after_the_database_is_lost(s3_settings, tmp_path):
    from sklearn.linear_model import LogisticRegression

    from alphapulse_assets.training.registry import ModelRegistry

    root = f"s3://{BUCKET}/{tmp_path.name}/models"
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    first = ModelRegistry(root, f"sqlite:///{tmp_path / 'first.db'}").register("ETHUSDT", "weekly", model)
    assert first.uri == f"{root}/ETHUSDT/weekly/v0001.skops"
    original = _s3(s3_settings).cat(first.uri)
    # A database restored empty (or another instance) sharing the store: v1's file exists, so v2 is taken.
    fresh = ModelRegistry(root, f"sqlite:///{tmp_path / 'restored-empty.db'}")
    second = fresh.register("ETHUSDT", "weekly", LogisticRegression(C=0.5).fit([[0.0], [1.0]], [0, 1]))
    assert second.version == 2 and _s3(s3_settings).cat(first.uri) == original
    assert fresh.load(second).C == 0.5
    assert sorted(p.rsplit("/", 1)[-1] for p in _s3(s3_settings).ls(f"{root}/ETHUSDT/weekly")) == [
        "v0001.skops",
        "v0002.skops",
    ]


def test_a_long_lived_reader_sees_segments_another_machine_wrote_after_it_listed(s3_settings, tmp_path):
    import pandas as pd
    import pyarrow as pa

    from alphapulse_assets.market_data.storage import ParquetPartitionStore

    url = f"s3://{BUCKET}/{tmp_path.name}/candles"
    reader = ParquetPartitionStore(url)  # a sensor or the web UI: one process, one filesystem object
    frame = pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-01 00:00"]).as_unit("ns"), "symbol": ["ETHUSDT"]})
    reader.write_days("market_candles", pa.Table.from_pandas(frame, preserve_index=False), ["2024-01-01"])
    assert reader.list_partitions("market_candles") == ["2024-01-01"]  # its listing is now cached by s3fs
    other = _s3(s3_settings)  # another machine's upload of the next day
    [first] = other.ls(f"{url}/market_candles", detail=False)
    other.pipe(f"{url}/market_candles/2024-01-02__2024-01-02__99999999999999999999ffffffff.parquet", other.cat(first))
    assert reader.list_partitions("market_candles") == ["2024-01-01", "2024-01-02"]


class s3_requests:  # noqa: N801 - used as a context manager, like a function
    """The requests the S3 server received inside the ``with`` block, as (method, path and query) pairs."""

    def __init__(self, endpoint: str):
        self.endpoint, self.requests = endpoint, []

    def _call(self, what: str) -> bytes:
        with urllib.request.urlopen(
            urllib.request.Request(f"{self.endpoint}/moto-api/recorder/{what}", method="POST")
        ) as r:
            return r.read()

    def __enter__(self):
        self._call("reset-recording")
        self._call("start-recording")
        return self

    def __exit__(self, *exc):
        self._call("stop-recording")
        lines = self._call("download-recording").decode().splitlines()
        self.requests = [(e["method"], e["url"].split("://", 1)[-1].split("/", 1)[-1]) for e in map(json.loads, lines)]

    def listings(self) -> list[str]:
        return [url for method, url in self.requests if method == "GET" and ("list-type=" in url or "prefix=" in url)]


def test_reading_many_days_lists_the_dataset_once_not_once_per_day(s3_settings, tmp_path):
    """On an object store a listing is a request: a 60-day window (a training set's, a drift week with
    warm-up) is checked and read with one listing each, whatever the number of days."""
    import pandas as pd
    import pyarrow as pa

    from alphapulse_assets.market_data.storage import ParquetPartitionStore

    store = ParquetPartitionStore(f"s3://{BUCKET}/{tmp_path.name}/candles")
    days = [str(d.date()) for d in pd.date_range("2024-01-01", periods=60, freq="D")]
    stamps = pd.to_datetime(days).as_unit("ns")
    frame = pd.DataFrame({"timestamp": stamps, "symbol": "ETHUSDT", "close": range(60)})
    store.write_days("market_candles", pa.Table.from_pandas(frame[:30], preserve_index=False), days[:30])
    store.write_days("market_candles", pa.Table.from_pandas(frame[30:], preserve_index=False), days[30:])

    with s3_requests(s3_settings) as checked:
        assert store.missing_days("market_candles", [*days, "2024-03-01"]) == ["2024-03-01"]
    with s3_requests(s3_settings) as read:
        assert list(store.read_days("market_candles", days)["close"]) == list(range(60))
    assert len(checked.listings()) == 1, checked.requests
    assert len(read.listings()) == 1, read.requests
    assert len(read.requests) <= 1 + 2 * 4, read.requests  # the listing, a few reads per segment, not per day


def test_the_health_check_of_champion_files_lists_the_store_once_and_reads_only_changed_files(s3_settings, tmp_path):
    """Every health tick checks the champions' files: one listing of the store, and a GET only for a file whose
    ETag changed since this process verified it (it read every champion of every symbol and cadence)."""
    from sklearn.linear_model import LogisticRegression

    from alphapulse_assets.monitoring import readers
    from alphapulse_assets.training.registry import ModelRegistry

    url = f"sqlite:///{tmp_path / 'platform.db'}"
    reg = ModelRegistry(f"s3://{BUCKET}/{tmp_path.name}/models", url)
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    for symbol in ("BTCUSDT", "ETHUSDT", "ADAUSDT"):
        reg.promote(reg.register(symbol, "weekly", model), reason="gate")
    assert readers.champion_files_check(url, reg).reason == "3 champion file(s) verified"
    with s3_requests(s3_settings) as tick:
        check = readers.champion_files_check(url, reg)
    assert check.reason == "3 champion file(s) verified (0 read, 3 unchanged since verified)"
    assert len(tick.requests) == 1 and len(tick.listings()) == 1, tick.requests  # a listing, no file read
    eth = reg.champion("ETHUSDT", "weekly")
    _s3(s3_settings).pipe(eth.uri, b"not a model")  # another machine overwrites a champion's file
    with s3_requests(s3_settings) as tick:
        check = readers.champion_files_check(url, reg)
    assert check.reason.startswith("1 champion file(s) refused") and "ETHUSDT/weekly/v1" in check.reason
    assert len(tick.listings()) == 1 and len(tick.requests) <= 3, tick.requests  # the listing, that file
