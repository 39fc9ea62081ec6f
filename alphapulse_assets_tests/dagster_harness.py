"""A real production-shaped Dagster deployment for end-to-end tests: daemon + web UI on PostgreSQL.

``DagsterDeployment`` copies ``deploy/dagster.yaml`` unchanged into a temporary DAGSTER_HOME, points its
``DAGSTER_PG_*`` variables at a database on the test PostgreSQL server (``pg_harness.PostgresServer``),
puts every AlphaPulse path (ALPHAPULSE_HOME, candle store, models) in the same temporary directory, and
starts ``dagster-daemon run`` and ``dagster-webserver -h 127.0.0.1 -p <free port>`` as subprocesses in
their own process groups::

    deployment = DagsterDeployment(postgres_server, settings_env={...})
    deployment.start()                       # waits for /server_info and fresh daemon heartbeats
    try:
        run_id = deployment.client().submit_job_execution("ingest_market_data", tags={...})
        deployment.wait_for_run(run_id)
    finally:
        deployment.stop()                    # SIGTERM to each group, SIGKILL after a bound

Logs of both processes are files under ``base_dir/logs``; ``logs()`` returns their tails for failure
messages. Only processes this harness started are ever signalled (by process group id).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from alphapulse_assets_tests.pg_harness import PostgresServer, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_YAML = REPO_ROOT / "deploy" / "dagster.yaml"
WORKSPACE_YAML = REPO_ROOT / "workspace.yaml"
BIN_DIR = Path(sys.executable).parent

# Daemons that must report healthy heartbeats before the deployment counts as up.
REQUIRED_DAEMONS = ("SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING", "EVENT_LOG_CONSUMER")
TERMINAL_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}

DAEMON_HEALTH_QUERY = """
query { instance { daemonHealth { allDaemonStatuses { daemonType healthy required lastHeartbeatTime } } } }
"""
RUN_QUERY = """
query ($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { id status jobName tags { key value } } } }
"""
RUNS_QUERY = """
query ($filter: RunsFilter) { runsOrError(filter: $filter) { __typename
  ... on Runs { results { runId jobName status creationTime startTime endTime tags { key value } } }
  ... on PythonError { message } } }
"""
STEP_STATS_QUERY = """
query ($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status stepStats { stepKey status } } } }
"""
POOL_QUERY = """
query ($key: String) { instance { concurrencyLimit(concurrencyKey: $key) {
  concurrencyKey slotCount claimedSlots { runId stepKey } pendingSteps { runId stepKey } } } }
"""
ASSET_EVENTS_QUERY = """
fragment entry on MetadataEntry { __typename label
  ... on TextMetadataEntry { text } ... on IntMetadataEntry { intRepr } ... on FloatMetadataEntry { floatValue }
  ... on MarkdownMetadataEntry { mdStr } ... on JsonMetadataEntry { jsonString } ... on BoolMetadataEntry { boolValue }
  ... on TimestampMetadataEntry { timestamp } ... on PathMetadataEntry { path } }
query ($key: AssetKeyInput!) { assetOrError(assetKey: $key) { __typename ... on Asset {
  assetMaterializations(limit: 1) { timestamp runId description metadataEntries { ...entry } }
  assetObservations(limit: 1) { timestamp runId description metadataEntries { ...entry } } } } }
"""
# Run statuses of a run that has not ended yet.
UNFINISHED_STATUSES = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


class DeploymentError(RuntimeError):
    """The daemon or webserver did not come up, or died; the message carries their log tails."""


def _scrubbed_environ() -> dict[str, str]:
    """The parent's environment without any Dagster or AlphaPulse setting that could leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "ALPHAPULSE_"))}


class DagsterDeployment:
    """Daemon and webserver on loopback against ``deploy/dagster.yaml`` and a PostgreSQL database."""

    def __init__(
        self,
        postgres: PostgresServer,
        *,
        settings_env: dict[str, str] | None = None,
        database: str | None = None,
        startup_timeout: float = 180.0,
        seed: DagsterDeployment | None = None,
    ):
        self.postgres = postgres
        # A prepared, stopped deployment whose database and home this one starts as a copy of.
        self.seed = seed
        self.settings_env = dict(settings_env or {})
        self.database = database or f"dagster_e2e_{os.getpid()}"
        self.startup_timeout = startup_timeout
        self.base_dir: Path | None = None
        self.port: int | None = None
        self._procs: dict[str, subprocess.Popen] = {}
        self._instance = None
        self._latest_keys: dict[str, str] | None = None

    # -- paths and environment -----------------------------------------------------------------------
    @property
    def dagster_home(self) -> Path:
        assert self.base_dir is not None, "deployment not started"
        return self.base_dir / "dagster_home"

    @property
    def alphapulse_home(self) -> Path:
        assert self.base_dir is not None, "deployment not started"
        return self.base_dir / "alphapulse"

    @property
    def log_dir(self) -> Path:
        assert self.base_dir is not None, "deployment not started"
        return self.base_dir / "logs"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        """psycopg 3 URL of the instance database (password role), for direct reads in tests."""
        return self.postgres.password_url(self.database)

    @property
    def env(self) -> dict[str, str]:
        """The environment every process of the deployment (and the ``alphapulse`` CLI) runs with."""
        assert self.base_dir is not None and self.postgres.port is not None
        env = _scrubbed_environ()
        env.update(
            {
                "DAGSTER_HOME": str(self.dagster_home),
                "DAGSTER_PG_HOST": "127.0.0.1",
                "DAGSTER_PG_PORT": str(self.postgres.port),
                "DAGSTER_PG_DB": self.database,
                "DAGSTER_PG_USERNAME": "alphapulse",
                "DAGSTER_PG_PASSWORD": self.postgres.password,
                "ALPHAPULSE_HOME": str(self.alphapulse_home),
                "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
                "PYTHONUNBUFFERED": "1",
                "TZ": "UTC",
            }
        )
        env.update(self.settings_env)
        return env

    # -- lifecycle -----------------------------------------------------------------------------------
    def prepare(self) -> DagsterDeployment:
        """Create the home and the migrated database (a copy of the seed's, if any); start nothing."""
        if self.base_dir is not None:
            return self
        self.base_dir = Path(tempfile.mkdtemp(prefix="alphapulse-dagster-"))
        self.dagster_home.mkdir()
        self.log_dir.mkdir()
        shutil.copyfile(PRODUCTION_YAML, self.dagster_home / "dagster.yaml")
        shutil.copyfile(WORKSPACE_YAML, self.dagster_home / "workspace.yaml")
        if not self.postgres.running:
            self.postgres.start()
        if self.seed is None:
            self.alphapulse_home.mkdir()
            self.postgres.create_database(self.database)
            self._migrate()
        else:
            shutil.copytree(self.seed.alphapulse_home, self.alphapulse_home)
            self.postgres.create_database(self.database, template=self.seed.database)
        return self

    def start(self) -> DagsterDeployment:
        """Prepare the home and database, start webserver and daemon, wait until both are ready."""
        self.prepare()
        try:
            deadline = time.monotonic() + self.startup_timeout
            self.start_webserver()
            self.start_daemon()
            self.wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _migrate(self) -> None:
        # Create Dagster's schema once, before two processes race to create it.
        proc = subprocess.run(
            [str(BIN_DIR / "dagster"), "instance", "migrate"],
            env=self.env,
            cwd=self.dagster_home,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise DeploymentError(f"dagster instance migrate failed:\n{proc.stdout}\n{proc.stderr}")

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(
                args,
                cwd=self.dagster_home,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self._procs[name] = proc
        return proc

    def start_webserver(self) -> None:
        if self.port is None:
            self.port = free_port()
        self._spawn(
            "webserver",
            [
                str(BIN_DIR / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-w",
                str(self.dagster_home / "workspace.yaml"),
            ],
        )

    def start_daemon(self) -> None:
        self._spawn("daemon", [str(BIN_DIR / "dagster-daemon"), "run", "-w", str(self.dagster_home / "workspace.yaml")])

    def stop_process(self, name: str, timeout: float = 30.0) -> None:
        """SIGTERM the process group, SIGKILL it if it has not exited within ``timeout``."""
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Children (code servers, run workers) live in the same group; take the stragglers down too.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def restart_daemon(self, timeout: float = 120.0) -> None:
        self.stop_process("daemon")
        started = time.time()
        self.start_daemon()
        self.wait_ready(time.monotonic() + timeout, heartbeat_after=started)

    def stop(self) -> None:
        """Stop daemon then webserver (bounded) and delete the temporary directory. Safe to call twice."""
        for name in ("daemon", "webserver"):
            self.stop_process(name)
        if self._instance is not None:
            self._instance.dispose()
            self._instance = None
        if self.base_dir is not None and os.environ.get("ALPHAPULSE_KEEP_E2E_DIR") != "1":
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    # -- readiness -----------------------------------------------------------------------------------
    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise DeploymentError(f"dagster {name} exited with code {proc.returncode}\n{self.logs()}")

    def wait_ready(self, deadline: float, *, heartbeat_after: float | None = None) -> None:
        """Until /server_info answers and every required daemon has a healthy heartbeat."""
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                info = self.http_get("/server_info")
                if "dagster_webserver_version" not in info:
                    raise DeploymentError(f"unexpected /server_info answer: {info}")
                statuses = self.daemon_statuses()
                unhealthy = [t for t in REQUIRED_DAEMONS if not statuses.get(t, {}).get("healthy")]
                if heartbeat_after is not None:
                    unhealthy += [
                        t
                        for t in REQUIRED_DAEMONS
                        if (statuses.get(t, {}).get("lastHeartbeatTime") or 0) < heartbeat_after
                    ]
                if not unhealthy:
                    return
                last_error = f"daemons not healthy yet: {sorted(set(unhealthy))}"
            except (OSError, urllib.error.URLError, ValueError, KeyError, DeploymentError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
        raise DeploymentError(f"deployment not ready within the timeout ({last_error})\n{self.logs()}")

    def daemon_statuses(self) -> dict[str, dict[str, Any]]:
        data = self.graphql(DAEMON_HEALTH_QUERY)
        return {s["daemonType"]: s for s in data["instance"]["daemonHealth"]["allDaemonStatuses"]}

    # -- access --------------------------------------------------------------------------------------
    def http_get(self, path: str, timeout: float = 10.0) -> dict:
        with urllib.request.urlopen(self.base_url + path, timeout=timeout) as resp:
            return json.loads(resp.read().decode())

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30.0, attempts: int = 3) -> dict:
        """Raw GraphQL against the webserver; raises on GraphQL errors.

        A request that fails with a server error is tried again (up to ``attempts``): after PostgreSQL
        restarts, each of the webserver's pooled connections fails one request before it is replaced
        (dagster-postgres does not pre-ping them), as an operator reloading the page would see.
        """
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        for attempt in range(attempts):
            req = urllib.request.Request(
                self.base_url + "/graphql", data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    payload = json.loads(resp.read().decode())
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or attempt == attempts - 1:
                    raise
                time.sleep(1)
                continue
            if payload.get("errors"):
                if attempt < attempts - 1 and "OperationalError" in str(payload["errors"]):
                    time.sleep(1)
                    continue
                raise DeploymentError(f"GraphQL errors: {payload['errors']}")
            return payload["data"]
        raise DeploymentError("unreachable")

    def submit(self, job: str, attempts: int = 3, **kwargs) -> str:
        """Launch ``job`` through the GraphQL client (queued); retried like ``graphql`` on a stale connection."""
        from dagster_graphql import DagsterGraphQLClientError

        for attempt in range(attempts):
            try:
                return self.client().submit_job_execution(job, **kwargs)
            except DagsterGraphQLClientError as exc:
                if "OperationalError" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(1)
        raise DeploymentError("unreachable")

    def client(self):
        """Dagster's own Python GraphQL client, as an operator's script would use it."""
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=60)

    def instance(self):
        """A DagsterInstance on the same PostgreSQL storage, for reading runs and events in the test process.

        It is built from a reader yaml with a literal URL in the temporary directory, so the test process
        never has to export the deployment's DAGSTER_PG_* variables (other tests read them).
        """
        if self._instance is None:
            import dagster as dg

            reader = self.base_dir / "reader_home"
            reader.mkdir(exist_ok=True)
            url = self.postgres.url(self.database, user="alphapulse", password=self.postgres.password)
            url = url.replace("postgresql+psycopg://", "postgresql+psycopg2://")
            (reader / "dagster.yaml").write_text(
                json.dumps(
                    {
                        "storage": {"postgres": {"postgres_url": url}},
                        "telemetry": {"enabled": False},
                    }
                )
            )
            self._instance = dg.DagsterInstance.from_config(str(reader))
        return self._instance

    def run_status(self, run_id: str) -> str:
        data = self.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
        if data["__typename"] != "Run":
            raise DeploymentError(f"run {run_id}: {data['__typename']}")
        return data["status"]

    def runs(self, **run_filter: Any) -> list[dict]:
        """Runs as the UI lists them (GraphQL ``runsOrError``), newest first; ``run_filter`` is a GraphQL
        RunsFilter, e.g. ``pipelineName="nightly_cadence", createdAfter=<epoch seconds>``."""
        data = self.graphql(RUNS_QUERY, {"filter": run_filter})["runsOrError"]
        if data["__typename"] != "Runs":
            raise DeploymentError(f"runsOrError: {data}")
        for run in data["results"]:
            run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
        return data["results"]

    def step_statuses(self, run_id: str) -> dict[str, str]:
        """{step key: IN_PROGRESS | SUCCESS | FAILURE | SKIPPED} of one run, as the run page shows them."""
        data = self.graphql(STEP_STATS_QUERY, {"runId": run_id})["runOrError"]
        return {s["stepKey"]: s["status"] for s in data.get("stepStats") or []}

    def pool(self, name: str) -> dict:
        """A concurrency pool: its slot count, the slots claimed (by run and step) and the steps waiting."""
        return self.graphql(POOL_QUERY, {"key": name})["instance"]["concurrencyLimit"]

    def latest_asset_events(self, asset_path: list[str]) -> list[dict]:
        """The asset page's newest materialization and newest observation (those that exist), newest first,
        each with ``metadata`` as {label: value}."""
        data = self.graphql(ASSET_EVENTS_QUERY, {"key": {"path": asset_path}})["assetOrError"]
        if data["__typename"] != "Asset":
            return []
        events = []
        for kind in ("assetMaterializations", "assetObservations"):
            for event in data[kind]:
                values = {}
                for entry in event["metadataEntries"]:
                    rest = {k: v for k, v in entry.items() if k not in ("__typename", "label")}
                    values[entry["label"]] = next(iter(rest.values()), None) if rest else None
                events.append({**event, "kind": kind, "metadata": values})
        return sorted(events, key=lambda e: float(e["timestamp"]), reverse=True)

    def wait_for_run(self, run_id: str, timeout: float = 180.0) -> str:
        """Poll until the run is finished; returns its final status. Raises with logs on timeout."""
        deadline = time.monotonic() + timeout
        status = "?"
        while time.monotonic() < deadline:
            self._check_alive()
            status = self.run_status(run_id)
            if status in TERMINAL_STATUSES:
                return status
            time.sleep(0.5)
        raise DeploymentError(f"run {run_id} still {status} after {timeout:.0f} s\n{self.logs()}")

    def wait_until(self, predicate, timeout: float, what: str, interval: float = 0.5):
        """Poll ``predicate`` until it returns a truthy value; raise with logs after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            self._check_alive()
            time.sleep(interval)
        raise DeploymentError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def cli(self, *args: str, timeout: float = 300.0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run the ``alphapulse`` command against this deployment's instance and settings (``env`` overrides
        some of them for this command only, e.g. another source)."""
        return subprocess.run(
            [str(BIN_DIR / "alphapulse"), *args],
            env={**self.env, **(env or {})},
            cwd=self.dagster_home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cli_popen(self, *args: str, env: dict[str, str] | None = None, name: str = "cli") -> subprocess.Popen:
        """Start the ``alphapulse`` command in the background, in its own process group (so a test can signal
        it and only it); its output goes to ``logs/<name>.log`` (``logs()`` shows it)."""
        log = open(self.log_dir / f"{name}.log", "ab")
        try:
            return subprocess.Popen(
                [str(BIN_DIR / "alphapulse"), *args],
                env={**self.env, **(env or {})},
                cwd=self.dagster_home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def cli_python(self, code: str, timeout: float = 120.0) -> str:
        """Run a Python snippet with the deployment's environment (its settings); return its stdout."""
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env=self.env,
            cwd=self.dagster_home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise DeploymentError(f"python snippet failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def latest_key(self, cadence: str) -> str:
        """The newest complete partition of ``cadence`` under this deployment's settings, as its schedules see it.

        Read once for every cadence, in one subprocess (an import of the package costs seconds), and kept: the
        e2e settings already assume that a session does not cross midnight UTC (``conftest.YESTERDAY``)."""
        if self._latest_keys is None:
            out = self.cli_python(
                "import json\n"
                "from datetime import datetime, timezone\n"
                "from alphapulse_assets.training.schedules import CADENCES, latest_partition_key\n"
                "now = datetime.now(timezone.utc)\n"
                "print(json.dumps({c: latest_partition_key(c, now) for c in CADENCES}))\n"
            )
            self._latest_keys = json.loads(out.strip().splitlines()[-1])
        return self._latest_keys[cadence]

    def logs(self, lines: int = 60) -> str:
        out = []
        if self.base_dir is not None and self.log_dir.exists():
            for path in sorted(self.log_dir.glob("*.log")):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"----- {path.name} (last {len(text)} lines) -----\n" + "\n".join(text))
        return "\n".join(out) or "<no deployment logs>"

    def __enter__(self) -> DagsterDeployment:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _chain_text(err) -> str:
    """The error's message and those of its causes (a retried step's last error is "exceeded max_retries")."""
    parts, seen = [], 0
    while err is not None and seen < 10:
        parts.append(f"{err.cls_name}: {err.message.strip()}")
        err, seen = err.cause or err.context, seen + 1
    return "\n".join(parts)


def per_symbol(asset: str, partition: str | None) -> tuple[str, str | None]:
    """An event on a symbol's partition as an operator reads it: ("models/weekly/BTCUSDT", "2024-05-26") for
    ("models/weekly", "2024-05-26|BTCUSDT"), ("live_scores/weekly/BTCUSDT", None) for ("live_scores/weekly",
    "BTCUSDT"); any other event as it is."""
    if partition and "|" in partition:
        time_key, symbol = partition.split("|")
        return f"{asset}/{symbol}", time_key
    if partition and asset.startswith("live_scores/"):
        return f"{asset}/{partition}", None
    return asset, partition


def cadence_tags(instance, time_key: str, symbols) -> dict[str, str]:
    """The tags of a cadence run over ``time_key`` x ``symbols`` (added to the instance's symbols when missing),
    as the schedules and `alphapulse run` make them."""
    from alphapulse_assets.market_data.symbols import SYMBOLS_NAME, range_tags

    known = instance.get_dynamic_partitions(SYMBOLS_NAME)
    missing = [s for s in symbols if s not in known]
    if missing:
        instance.add_dynamic_partitions(SYMBOLS_NAME, missing)
    return range_tags(time_key, time_key, symbols[0], symbols[-1])


class RunSummary:
    """What one run did, read from the instance's event log: the facts the end-to-end tests assert on."""

    def __init__(self, instance, run_id: str):
        from dagster import DagsterEventType

        self.run_id = run_id
        self.run = instance.get_run_by_id(run_id)
        self.events = instance.all_logs(run_id)
        self.event_types = {e.dagster_event.event_type for e in self.events if e.dagster_event}
        self.materialized: list[tuple[str, str | None]] = []
        self.step_failures: list[tuple[str, str, str]] = []
        self.checks: list[tuple[str, str, bool]] = []
        self.check_severities: dict[tuple[str, str], str] = {}
        self.retries_up = 0
        self.engine_messages: list[str] = []
        for record in self.events:
            ev = record.dagster_event
            if ev is None:
                continue
            if ev.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                mat = ev.step_materialization_data.materialization
                self.materialized.append(per_symbol(mat.asset_key.to_user_string(), mat.partition))
            elif ev.event_type == DagsterEventType.STEP_FAILURE:
                err = ev.step_failure_data.error
                self.step_failures.append((ev.step_key, err.cls_name if err else "", _chain_text(err)))
            elif ev.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
                data = ev.event_specific_data
                asset = per_symbol(data.asset_key.to_user_string(), data.partition)[0]
                self.checks.append((asset, data.check_name, data.passed))
                self.check_severities[(asset, data.check_name)] = data.severity.value
            elif ev.event_type == DagsterEventType.STEP_UP_FOR_RETRY:
                self.retries_up += 1
            elif ev.event_type == DagsterEventType.ENGINE_EVENT:
                self.engine_messages.append(record.message or "")

    def blocking_check_failures(self, asset: str) -> list[str]:
        """Checks of ``asset`` that failed with ERROR severity in this run (those stop downstream steps)."""
        return [
            c
            for a, c, passed in self.checks
            if a == asset and not passed and self.check_severities.get((a, c)) == "ERROR"
        ]

    @property
    def went_through_queue(self) -> bool:
        from dagster import DagsterEventType

        # Enqueued by the run coordinator, then handed to the run launcher (the daemon's dequeuer does that;
        # this Dagster version writes no separate RUN_DEQUEUED event).
        order = [e.dagster_event.event_type for e in self.events if e.dagster_event]
        return (
            DagsterEventType.RUN_ENQUEUED in order
            and DagsterEventType.RUN_STARTING in order
            and order.index(DagsterEventType.RUN_ENQUEUED) < order.index(DagsterEventType.RUN_STARTING)
        )

    @property
    def worker_pid(self) -> int | None:
        import re

        for message in self.engine_messages:
            match = re.search(r"Started process for run \(pid: (\d+)\)", message)
            if match:
                return int(match.group(1))
        return None
