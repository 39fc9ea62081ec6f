"""What the README promises about the Dagster instance holds for EVERY shipped config, not just the local one.

Configs: the local SQLite instance (dagster.yaml), the PostgreSQL server instance (deploy/dagster.yaml), the
Kubernetes instance (deploy/dagster-k8s.yaml) and the Helm values (deploy/helm/values.yaml), the last turned
into the dagster.yaml that Dagster's chart renders from them (the chart's instance config map templates, key by
key). Each is loaded by Dagster itself (``InstanceRef.from_dir``: schema validation included) and read the way
the daemon reads it: an instance with no ``scheduler`` block catches up five missed ticks, whatever another
yaml says.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
PG_ENV = {
    "DAGSTER_PG_HOST": "db.invalid",
    "DAGSTER_PG_PORT": "5433",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "from-the-environment",
}


def _snake(config: dict | None, keys: dict[str, str]) -> dict:
    """The chart's camelCase keys -> the instance's snake_case keys, for the keys that are set."""
    return {snake: config[camel] for camel, snake in keys.items() if config and config.get(camel) is not None}


def helm_instance_config(values: dict) -> dict:
    """The instance dagster.yaml that Dagster's chart (1.13) renders from ``values`` (configmap-instance.yaml and
    helpers/instance/*.tpl), for the settings the README promises. Storage is the external PostgreSQL."""
    daemon = values.get("dagsterDaemon", {})
    out: dict = {
        "storage": yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["storage"],
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }
    scheduler = values.get("scheduler", {"type": "DagsterDaemonScheduler"})
    # Module paths as Dagster's own instance config names its classes (strings, not imports).
    if scheduler["type"] == "DagsterDaemonScheduler":
        out["scheduler"] = {"module": "dagster._core.scheduler", "class": "DagsterDaemonScheduler"}
        config = _snake(
            (scheduler.get("config") or {}).get("daemonScheduler"),
            {"maxCatchupRuns": "max_catchup_runs", "maxTickRetries": "max_tick_retries"},
        )
        if config:
            out["scheduler"]["config"] = config
    if daemon.get("enabled") and daemon.get("runCoordinator", {}).get("enabled"):
        assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
        out["run_coordinator"] = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}
    monitoring = daemon.get("runMonitoring", {})
    if daemon.get("enabled") and monitoring.get("enabled"):
        out["run_monitoring"] = {
            "enabled": True,
            **_snake(
                monitoring,
                {
                    "startTimeoutSeconds": "start_timeout_seconds",
                    "cancelTimeoutSeconds": "cancel_timeout_seconds",
                    "maxResumeRunAttempts": "max_resume_run_attempts",
                    "pollIntervalSeconds": "poll_interval_seconds",
                    "freeSlotsAfterRunEndSeconds": "free_slots_after_run_end_seconds",
                },
            ),
        }
    retries = daemon.get("runRetries", {})
    if daemon.get("enabled") and retries.get("enabled"):
        out["run_retries"] = {
            "enabled": True,
            **_snake(retries, {"maxRetries": "max_retries", "retryOnAssetOrOpFailure": "retry_on_asset_or_op_failure"}),
        }
    concurrency = values.get("concurrency") or {}
    rendered: dict = {}
    if concurrency.get("pools"):
        rendered["pools"] = _snake(
            concurrency["pools"], {"defaultLimit": "default_limit", "granularity": "granularity"}
        )
    if concurrency.get("runs"):
        rendered["runs"] = _snake(
            concurrency["runs"],
            {"maxConcurrentRuns": "max_concurrent_runs", "tagConcurrencyLimits": "tag_concurrency_limits"},
        )
    if rendered:
        out["concurrency"] = rendered
    return out


SHIPPED = {
    "local": REPO / "dagster.yaml",
    "postgres": DEPLOY / "dagster.yaml",
    "kubernetes": DEPLOY / "dagster-k8s.yaml",
    "helm": DEPLOY / "helm" / "values.yaml",
}


@pytest.fixture(params=sorted(SHIPPED))
def instance_ref(request, tmp_path, monkeypatch):
    """The shipped config as Dagster loads it from $DAGSTER_HOME/dagster.yaml."""
    # Internal: no public way to load an instance from a given dagster.yaml without opening its storage.
    from dagster._core.instance.ref import InstanceRef

    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    source = SHIPPED[request.param]
    config = yaml.safe_load(source.read_text())
    if request.param == "helm":
        config = helm_instance_config(config)
    config.pop("run_launcher", None)  # the K8sRunLauncher needs a cluster; its own test loads it
    home = tmp_path / request.param
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return InstanceRef.from_dir(str(home))


def test_a_cadence_catches_up_once_after_missed_ticks(instance_ref):
    # The daemon passes this scheduler's max_catchup_runs to every schedule tick (dagster._daemon.daemon).
    assert instance_ref.scheduler.max_catchup_runs == 1


def test_run_retries_only_restart_crashed_workers(instance_ref):
    retries = instance_ref.settings["run_retries"]
    assert retries["enabled"] is True
    assert retries["max_retries"] >= 1
    assert retries["retry_on_asset_or_op_failure"] is False  # step failures: each asset's RetryPolicy, or none


def test_run_monitoring_detects_dead_workers_and_frees_their_slots(instance_ref):
    monitoring = instance_ref.settings["run_monitoring"]
    assert monitoring["enabled"] is True
    assert monitoring.get("max_resume_run_attempts", 0) == 0  # a dead worker's run fails; run retries restart it
    assert 0 < monitoring["free_slots_after_run_end_seconds"] <= 60


# Slots of pool "training" (one per models step training at once): one where every run worker shares one
# machine (a models step uses all its cores), one per cadence run allowed at once where each run is a pod
# with its own CPUs.
TRAINING_SLOTS = {"local": 1, "postgres": 1, "kubernetes": 2, "helm": 2}


def test_runs_are_queued_with_limits_and_trainings_share_one_pool(instance_ref, request):
    assert instance_ref.run_coordinator_data.class_name == "QueuedRunCoordinator"
    concurrency = instance_ref.settings["concurrency"]
    assert {"key": "alphapulse/cadence", "value": "monthly", "limit": 1} in concurrency["runs"][
        "tag_concurrency_limits"
    ]
    assert concurrency["runs"]["max_concurrent_runs"] >= 1
    assert concurrency["pools"]["default_limit"] == TRAINING_SLOTS[request.node.callspec.params["instance_ref"]]


def _run_pod_container(name: str) -> dict:
    config = yaml.safe_load(SHIPPED[name].read_text())
    if name == "helm":
        return config["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]
    return config["run_launcher"]["config"]["run_k8s_config"]["container_config"]


@pytest.mark.parametrize("name", ["kubernetes", "helm"])
def test_a_run_pod_requests_the_cpus_its_models_step_trains_on(name):
    """A pod sees its node's cores, not its share: its workers are set, and it requests one CPU per worker."""
    container = _run_pod_container(name)
    workers = {e["name"]: e["value"] for e in container["env"]}["ALPHAPULSE_SCALE__WORKERS"]
    assert int(workers) >= 1 and str(container["resources"]["requests"]["cpu"]) == workers


def test_telemetry_is_off(instance_ref):
    assert instance_ref.settings["telemetry"]["enabled"] is False
