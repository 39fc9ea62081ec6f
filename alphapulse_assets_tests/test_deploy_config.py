"""Production and scale-out configuration, validated as far as this machine allows (no cluster, no Docker).

- deploy/dagster.yaml loads as a Dagster instance config with its settings from the environment;
- deploy/dagster-k8s.yaml loads with dagster-k8s installed and builds its K8sRunLauncher from a kubeconfig
  that points nowhere (nothing is contacted);
- the Dockerfile's entry point command serves the definitions over gRPC when run here;
- the Helm values parse and carry the keys Dagster's chart needs, with the same limits as the instance.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from alphapulse_assets_tests.pg_harness import free_port

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
PG_ENV = {
    "DAGSTER_PG_HOST": "db.invalid",
    "DAGSTER_PG_PORT": "5433",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "from-the-environment",
}


def _home_with(tmp_path: Path, source: Path, edit=None) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    config = yaml.safe_load(source.read_text())
    if edit:
        edit(config)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


@pytest.fixture
def pg_env(monkeypatch):
    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)


def test_production_instance_reads_every_connection_setting_from_the_environment(tmp_path, pg_env):
    # Internal: no public way to load an instance from a given dagster.yaml without opening its storage.
    from dagster._core.instance.ref import InstanceRef

    ref = InstanceRef.from_dir(str(_home_with(tmp_path, DEPLOY / "dagster.yaml")))
    storage = ref.storage_data
    assert storage.class_name == "DagsterPostgresStorage"
    config = yaml.safe_load(storage.config_yaml)
    assert config["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    # Resolve the config the way the storage does when it is created, and build its URL, without connecting.
    url = _storage_url(config)
    assert url == "postgresql+psycopg2://dagster:from-the-environment@db.invalid:5433/dagster"
    assert ref.run_coordinator_data.class_name == "QueuedRunCoordinator"
    settings = ref.settings
    assert settings["telemetry"]["enabled"] is False
    assert settings["run_monitoring"]["enabled"] is True
    assert settings["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    assert settings["concurrency"]["pools"]["default_limit"] == 1
    assert {"key": "alphapulse/cadence", "value": "monthly", "limit": 1} in settings["concurrency"]["runs"][
        "tag_concurrency_limits"
    ]


def _storage_url(config: dict) -> str:
    # Internal: Dagster's own config schema for postgres storage, to resolve the env-var settings the way it does.
    from dagster._config import process_config
    from dagster._core.storage.config import pg_config
    from dagster_postgres.utils import pg_url_from_config

    result = process_config(pg_config(), config)
    if not result.success:
        raise ValueError("; ".join(e.message for e in result.errors))
    return pg_url_from_config(result.value)


def test_production_instance_refuses_to_start_without_its_password(tmp_path, pg_env, monkeypatch):
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["storage"]["postgres"]
    with pytest.raises(ValueError, match="DAGSTER_PG_PASSWORD"):
        _storage_url(config)


def test_local_instance_config_is_valid_and_uses_the_same_run_policies(tmp_path):
    # Internal: the validator Dagster runs on dagster.yaml; no public function checks a file without an instance.
    from dagster._core.instance.config import dagster_instance_config

    local, _ = dagster_instance_config(str(REPO))
    production = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert local["run_retries"] == production["run_retries"]
    assert local["concurrency"]["pools"]["default_limit"] == production["concurrency"]["pools"]["default_limit"]
    assert local["telemetry"]["enabled"] is False


def test_k8s_instance_loads_with_dagster_k8s_without_contacting_a_cluster(tmp_path, pg_env):
    pytest.importorskip("dagster_k8s")
    # Internal: no public way to load an instance from a given dagster.yaml without opening its storage.
    from dagster._core.instance.ref import InstanceRef
    from dagster_k8s import K8sRunLauncher

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "none",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "none", "user": {}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
            }
        )
    )

    def outside_cluster(config):
        config["run_launcher"]["config"].update(load_incluster_config=False, kubeconfig_file=str(kubeconfig))

    ref = InstanceRef.from_dir(str(_home_with(tmp_path, DEPLOY / "dagster-k8s.yaml", outside_cluster)))
    launcher = ref.run_launcher
    assert isinstance(launcher, K8sRunLauncher)
    assert launcher.job_namespace == "alphapulse"
    assert launcher.supports_check_run_worker_health  # run monitoring can see dead run pods
    assert ref.run_coordinator_data.class_name == "QueuedRunCoordinator"
    k8s = yaml.safe_load((DEPLOY / "dagster-k8s.yaml").read_text())
    local = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    for key in ("storage", "run_retries", "telemetry"):
        assert k8s[key] == local[key], key
    assert k8s["concurrency"]["pools"]["granularity"] == local["concurrency"]["pools"]["granularity"]


def _dockerfile_cmd() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text()
    (cmd,) = re.findall(r"^CMD (\[.*\])\s*$", text, flags=re.M)
    return json.loads(cmd)


def test_dockerfile_copies_what_exists_and_runs_the_definitions_module():
    text = (DEPLOY / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", text, flags=re.M):
        for source in shlex.split(line)[:-1]:
            assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
    cmd = _dockerfile_cmd()
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert cmd[cmd.index("-m") + 1] == "alphapulse_assets.definitions"
    assert re.search(r"^USER \d+", text, flags=re.M), "the image must not run as root"


@pytest.mark.slow
@pytest.mark.e2e
def test_image_entry_point_serves_the_definitions_over_grpc(tmp_path):
    # Internal: Dagster's own gRPC client, the only way to ask the image's code server what it serves.
    from dagster._grpc.client import DagsterGrpcClient

    cmd = _dockerfile_cmd()
    port = free_port()
    cmd[cmd.index("-h") + 1] = "127.0.0.1"  # here: loopback only
    cmd[cmd.index("-p") + 1] = str(port)
    cmd[0] = str(Path(sys.executable).parent / "dagster")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "DAGSTER_HOME": str(tmp_path),
        "ALPHAPULSE_HOME": str(tmp_path / "alphapulse"),
        "HOME": str(tmp_path),
    }
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    log = open(tmp_path / "code-server.log", "wb")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "code-server.log").read_text(errors="replace")
            try:
                client.ping("x")
                break
            except Exception:
                assert time.monotonic() < deadline, "code server did not answer within 90 s"
                time.sleep(0.5)

        response = dg.deserialize_value(client.list_repositories())
        assert list(response.repository_code_pointer_dict) == ["__repository__"]
        pointers = str(response.repository_code_pointer_dict)
        assert "alphapulse_assets.definitions" in pointers, pointers
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_helm_values_have_what_the_chart_needs():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlHost"]
    assert "postgresqlPassword" not in values["postgresql"]  # the password comes from the secret
    assert values["global"]["postgresqlSecretName"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["codeServerArgs"]
    assert args[args.index("--module-name") + 1] == "alphapulse_assets.definitions"
    assert deployment["image"]["repository"] and deployment["image"]["tag"] not in ("", "latest")
    assert values["dagster-user-deployments"]["enabled"] is True
    # The chart fails when run limits are set both under concurrency and in the queued run coordinator.
    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert not daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert daemon["runRetries"]["retryOnAssetOrOpFailure"] is False
    assert daemon["runMonitoring"]["enabled"] is True
    instance = yaml.safe_load((DEPLOY / "dagster-k8s.yaml").read_text())
    assert (
        values["concurrency"]["runs"]["tagConcurrencyLimits"]
        == instance["concurrency"]["runs"]["tag_concurrency_limits"]
    )
    assert values["concurrency"]["pools"]["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"]
    assert values["telemetry"]["enabled"] is False


def test_the_image_installs_what_every_executor_setting_needs():
    """ALPHAPULSE_EXECUTOR=k8s or celery in a pod needs its extra in the image (config_check refuses it otherwise)."""
    import tomllib

    from alphapulse_assets.config_check import EXECUTOR_EXTRAS

    (installed,) = re.findall(r'^RUN pip install "\.\[([^\]]*)\]"', (DEPLOY / "Dockerfile").read_text(), flags=re.M)
    extras = set(installed.split(","))
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for executor, (module, extra) in EXECUTOR_EXTRAS.items():
        assert extra in extras, f"ALPHAPULSE_EXECUTOR={executor} needs the [{extra}] extra in the image"
        assert any(dep.replace("-", "_").startswith(module) for dep in declared[extra]), (extra, declared[extra])
