"""A cadence executed across two Celery workers, as in production on several machines (README, "Running on
several machines").

What runs, each in its own process group on 127.0.0.1: PostgreSQL (the Dagster instance and the platform
database), moto's S3 server (the shared store), Redis (the Celery broker, Debian's redis-server), the webserver
and the real dagster-daemon on ``deploy/dagster.yaml``, and two Celery workers (``celery -A
alphapulse_assets.celery_app worker -c 1``), each with a local disk (ALPHAPULSE_HOME and DAGSTER_HOME) of its own
and numeric threads capped to one. The weekly cadence runs through the daemon's queue with
ALPHAPULSE_EXECUTOR=celery for two partitions: the first crowns champions, the second gates against them.

Which worker takes which step is set by Celery queues: the training steps go to the queue "training"
(ALPHAPULSE_CELERY__TRAINING_QUEUE), the other steps to Celery's "dagster". For the first week worker A serves
"dagster" and worker B "training"; then the queues are swapped between the running workers (Celery's remote
control), so in the second week B builds the training set and A trains, loading the champions B wrote. Dagster's
event log names the Celery worker of every step. The decisions, metrics and champion versions are compared with
the same two weeks run in one process with the in-process executor and the store on local disk.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import s3fs

from alphapulse_assets_tests.dagster_harness import BIN_DIR, REPO_ROOT, DagsterDeployment, cadence_tags
from alphapulse_assets_tests.service_harness import BUCKET, CREDENTIALS, RedisServer

SYMBOLS = "ETHUSDT,BTCUSDT"
INGEST = ("2024-03-01", "2024-06-09")
# Two weekly partitions: the first crowns champions, the second loads them to gate its challengers against.
WEEKS = ("2024-05-26", "2024-06-02")
TRAINING_STEP = "weekly_models"
TRAINING_SET_STEP = "training_sets__weekly"
# One numeric thread per worker (scikit-learn's and BLAS' pools), as the README tells production workers.
ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}

SETTINGS = {"ALPHAPULSE_SYMBOLS": SYMBOLS, "ALPHAPULSE_SOURCES": "sample"}

# What the registry decided, read through the platform's own API in a process configured by the environment.
REGISTRY = r"""
import json
from alphapulse_assets.settings import get_settings
from alphapulse_assets.training.assets import ModelRegistryResource

registry = ModelRegistryResource().get()
out = {"history": [], "versions": {}, "champions": {}}
for d in sorted(registry.history(cadence="weekly"), key=lambda d: (d.symbol, d.version or 0, d.action)):
    out["history"].append([d.symbol, d.action, d.version, d.previous_champion, d.reason])
for symbol in get_settings().symbols:
    out["versions"][symbol] = [
        {"version": v.version, "partition": v.info.get("partition"), "metrics": v.info.get("metrics"),
         "gate": [v.info.get("gate_verdict"), v.info.get("gate_reason")], "uri": v.uri}
        for v in registry.versions(symbol, "weekly")
    ]
    out["champions"][symbol] = registry.champion_version(symbol, "weekly")
print(json.dumps(out, default=str))
"""

# The local reference: the same weeks in one process, in-process executor, store on local disk, SQLite.
LOCAL = r"""
import sys
import dagster as dg
from alphapulse_assets.definitions import defs

instance = dg.DagsterInstance.get()
result = defs.get_job_def("ingest_market_data").execute_in_process(
    instance=instance,
    tags={"dagster/asset_partition_range_start": sys.argv[1], "dagster/asset_partition_range_end": sys.argv[2]},
)
assert result.success
from alphapulse_assets.market_data.symbols import ensure_seeded
from alphapulse_assets.training.schedules import cadence_run_tags

for week in sys.argv[3:]:
    [tags] = cadence_run_tags("weekly", week, ensure_seeded(instance), per_run=0)  # as the schedule asks
    assert defs.get_job_def("weekly_cadence").execute_in_process(instance=instance, tags=tags).success
"""


class CeleryWorker:
    """One ``celery -A alphapulse_assets.celery_app worker`` process (concurrency 1) in its own process group, with
    the deployment's settings and a local disk of its own; its log is in the deployment's log folder."""

    def __init__(self, deployment: DagsterDeployment, name: str, queue: str):
        self.name = name
        self.hostname = f"{name}@alphapulse-test"
        self.home = deployment.base_dir / name
        (self.home / "dagster_home").mkdir(parents=True)
        shutil.copyfile(deployment.dagster_home / "dagster.yaml", self.home / "dagster_home" / "dagster.yaml")
        env = {
            **deployment.env,
            **ONE_THREAD,
            "DAGSTER_HOME": str(self.home / "dagster_home"),
            "ALPHAPULSE_HOME": str(self.home / "alphapulse"),
        }
        with open(deployment.log_dir / f"{name}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN_DIR / "celery"), "-A", "alphapulse_assets.celery_app", "worker", "-c", "1",
                 "--prefetch-multiplier=1", "-n", self.hostname, "-Q", queue, "-l", "INFO",
                 "--without-gossip", "--without-mingle"],
                cwd=self.home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the pool's children, if any outlived their parent
        except ProcessLookupError:
            pass


@pytest.fixture
def redis_server():
    with RedisServer() as server:
        yield server


def _control(broker: str):
    from celery import Celery

    return Celery("alphapulse-test-control", broker=broker).control


def _wait_for_workers(control, workers: list[CeleryWorker], deployment: DagsterDeployment, timeout: float = 180):
    deadline = time.monotonic() + timeout
    names = [w.hostname for w in workers]
    while time.monotonic() < deadline:
        for w in workers:
            if w.proc.poll() is not None:
                raise AssertionError(f"celery worker {w.name} exited ({w.proc.returncode})\n{deployment.logs(80)}")
        answered = {name for reply in control.ping(destination=names, timeout=1.0) or [] for name in reply}
        if answered >= set(names):
            return
    raise AssertionError(f"celery workers not up within {timeout} s\n{deployment.logs(80)}")


def _move_queue(control, queue: str, source: CeleryWorker, target: CeleryWorker) -> None:
    """The running workers change queues (Celery's remote control): ``target`` starts consuming ``queue``, then
    ``source`` stops."""
    for reply in (
        control.add_consumer(queue, destination=[target.hostname], reply=True, timeout=10),
        control.cancel_consumer(queue, destination=[source.hostname], reply=True, timeout=10),
    ):
        assert reply and all("ok" in answer for r in reply for answer in r.values()), reply


def _step_workers(deployment: DagsterDeployment, run_id: str) -> dict[str, str]:
    """{step key: the Celery worker that executed it}, from the engine events dagster-celery writes per step."""
    out = {}
    for record in deployment.instance().all_logs(run_id):
        event = record.dagster_event
        if event is None or not event.is_engine_event:
            continue
        worker = event.engine_event_data.metadata.get("Celery worker")
        if worker is not None:
            out[event.step_key] = worker.value
    return out


def _run_week(deployment: DagsterDeployment, week: str) -> tuple[str, dict[str, str]]:
    run_id = deployment.submit("weekly_cadence", tags=cadence_tags(deployment.instance(), week, SYMBOLS.split(",")))
    status = deployment.wait_for_run(run_id, timeout=600)
    assert status == "SUCCESS", f"{week}: {status}\n{deployment.logs(120)}"
    return run_id, _step_workers(deployment, run_id)


def _start_local_reference(tmp_path: Path) -> subprocess.Popen:
    """The same weeks in one process (in-process executor, local disk, SQLite), started in the background: it
    runs while the deployment does; its last output line is the registry report."""
    home = tmp_path / "local"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "ALPHAPULSE_", "AWS_"))}
    env.update({"DAGSTER_HOME": str(home), "ALPHAPULSE_HOME": str(home / "alphapulse"), "TZ": "UTC", **SETTINGS})
    return subprocess.Popen(
        [sys.executable, "-c", LOCAL + REGISTRY, *INGEST, *WEEKS],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.fixture
def local_reference(tmp_path):
    """The local reference run, started before the deployment; killed (its process group) if the test ends first."""
    proc = _start_local_reference(tmp_path)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)


def _local_reference(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-4000:]
    return json.loads(out.strip().splitlines()[-1])


def _model_files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.suffix in (".parquet", ".skops", ".tmp"))


@pytest.mark.slow
def test_a_cadence_runs_across_two_celery_workers_through_the_daemon_as_it_runs_in_one_process(
    postgres_server, redis_server, s3_server, local_reference
):
    settings = {
        **SETTINGS,
        "ALPHAPULSE_STORE__URL": f"s3://{BUCKET}/distributed",
        "ALPHAPULSE_STORE__ENDPOINT_URL": s3_server,
        **CREDENTIALS,
        "ALPHAPULSE_EXECUTOR": "celery",
        "ALPHAPULSE_CELERY__BROKER_URL": redis_server.url,
        "ALPHAPULSE_CELERY__TRAINING_QUEUE": "training",
    }
    deployment = DagsterDeployment(postgres_server, settings_env=settings, database=f"dagster_dist_{os.getpid()}")
    workers: list[CeleryWorker] = []
    try:
        deployment.start()
        proc = deployment.cli("ingest", "--start", INGEST[0], "--end", INGEST[1], timeout=600)
        assert proc.returncode == 0, f"ingest failed:\n{proc.stdout}\n{proc.stderr}"
        a = CeleryWorker(deployment, "worker-a", "dagster")
        workers.append(a)
        b = CeleryWorker(deployment, "worker-b", "training")
        workers.append(b)
        control = _control(redis_server.url)
        _wait_for_workers(control, workers, deployment)

        first_run, first = _run_week(deployment, WEEKS[0])
        _move_queue(control, "training", b, a)
        _move_queue(control, "dagster", a, b)
        second_run, second = _run_week(deployment, WEEKS[1])
        distributed = json.loads(deployment.cli_python(REGISTRY).strip().splitlines()[-1])
        worker_disks = [_model_files(w.home) for w in workers]
    finally:
        for w in workers:
            w.stop()
        deployment.stop()

    # Every step ran on a Celery worker, and the two steps of each run on different ones: the training set written
    # by one worker was read by the other (through the store), in both weeks.
    assert first == {TRAINING_SET_STEP: a.hostname, TRAINING_STEP: b.hostname}, first
    assert second == {TRAINING_SET_STEP: b.hostname, TRAINING_STEP: a.hostname}, second
    # The first week crowned champions on worker B; the second week's challengers were gated on worker A against
    # them: the champion B wrote, A loaded.
    first_versions = {s: [v for v in vs if v["partition"] == WEEKS[0]] for s, vs in distributed["versions"].items()}
    assert all(first_versions.values()), distributed
    promoted_first = [h for h in distributed["history"] if h[1] == "promoted" and h[3] is None]
    assert promoted_first, distributed["history"]
    second_versions = {
        (s, v["version"]) for s, vs in distributed["versions"].items() for v in vs if v["partition"] == WEEKS[1]
    }
    gated_second = [h for h in distributed["history"] if (h[0], h[2]) in second_versions and h[3] is not None]
    assert gated_second, distributed["history"]  # decided with a champion in place, i.e. after loading it

    # Nothing any run needs is on a worker's disk: models, training sets and candles are in the store.
    assert worker_disks == [[], []]
    fs = s3fs.S3FileSystem(
        endpoint_url=s3_server, key=CREDENTIALS["AWS_ACCESS_KEY_ID"], secret=CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    )
    assert fs.glob(f"{BUCKET}/distributed/models/*/weekly/v*.skops")
    assert fs.glob(f"{BUCKET}/distributed/training_sets/**/*.parquet")

    # The same decisions, metrics and champion versions as the same weeks in one process on local disk.
    local = _local_reference(local_reference)

    def comparable(report: dict) -> dict:
        return {
            "history": [h[:4] for h in report["history"]],
            "versions": {
                s: [{k: v for k, v in x.items() if k != "uri"} for x in vs] for s, vs in report["versions"].items()
            },
            "champions": report["champions"],
        }

    assert comparable(distributed) == comparable(local)
