"""The Kubernetes manifests under deploy/kubernetes/ are valid objects, strictly, and wired together.

Each object is validated against the Kubernetes OpenAPI schemas that `kubernetes-validate` ships
(no network), in its strict form where an unknown field is an error; then the references between
them are checked: probes, ports, secret files, selectors, the kustomization's list.
"""

from __future__ import annotations

import posixpath
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from config import SECRET_FILE_VARIABLES, ConfigError, load_settings
from rtarf_sync.pipelines_file import load_pipelines

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.34"  # a recent release the validator ships the schemas of
KUSTOMIZATION = "kustomization.yaml"
OBJECT_FILES = sorted(path for path in MANIFESTS.glob("*.yaml") if path.name != KUSTOMIZATION)


PIPELINES_CONFIGMAP = "rtarf-event-sync-pipelines"


def objects() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object of the manifests, by kind (one of each kind; the pipelines ConfigMap apart)."""
    found: dict[str, dict[str, Any]] = {}
    for path in OBJECT_FILES:
        for document in yaml.safe_load_all(path.read_text()):
            key = document["kind"]
            if key == "ConfigMap" and document["metadata"]["name"] == PIPELINES_CONFIGMAP:
                key = "ConfigMap/pipelines"
            assert key not in found, f"two {key} objects"
            found[key] = document
    return found


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    """The one container of the Deployment."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def container_port(deployment: dict[str, Any], port: int | str) -> int:
    """The container port a probe or a Service names, by number or by name."""
    ports = container(deployment)["ports"]
    matches = [entry["containerPort"] for entry in ports if port in (entry["containerPort"], entry.get("name"))]
    assert matches, f"no container port {port!r} in {ports}"
    return int(matches[0])


@pytest.mark.parametrize("path", OBJECT_FILES, ids=lambda path: path.name)
def test_every_manifest_is_valid_for_kubernetes_strictly(path: Path) -> None:
    documents = list(yaml.safe_load_all(path.read_text()))
    assert documents, f"{path.name} holds no object"
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / KUSTOMIZATION).read_text())
    assert sorted(kustomization["resources"]) == [path.name for path in OBJECT_FILES]
    image_names = {entry["name"] for entry in kustomization["images"]}
    assert container(objects()["Deployment"])["image"].split(":")[0] in image_names


def test_two_replicas() -> None:
    assert objects()["Deployment"]["spec"]["replicas"] == 2


def test_the_probes_ask_the_health_routes_on_the_container_port() -> None:
    deployment = objects()["Deployment"]
    spec = container(deployment)
    bind_port = int(objects()["ConfigMap"]["data"]["RTARF_BIND"].rsplit(":", 1)[1])
    expected = {"livenessProbe": "/livez", "readinessProbe": "/readyz", "startupProbe": "/livez"}
    for probe, path in expected.items():
        get = spec[probe]["httpGet"]
        assert get["path"] == path, probe
        assert container_port(deployment, get["port"]) == bind_port, probe
    # /readyz answers within 5 s: a shorter timeout would mark a slow but healthy answer a failure.
    assert spec["readinessProbe"]["timeoutSeconds"] > 5


def test_the_service_targets_the_container_port_of_the_pods() -> None:
    deployment, service = objects()["Deployment"], objects()["Service"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    for port in service["spec"]["ports"]:
        container_port(deployment, port["targetPort"])


def test_the_disruption_budget_selects_the_pods_of_the_deployment() -> None:
    deployment, budget = objects()["Deployment"], objects()["PodDisruptionBudget"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def secret_files(deployment: dict[str, Any], secret: dict[str, Any]) -> dict[str, str]:
    """Path in the container → key of the Secret, for every file the Secret's volume mounts."""
    pod = deployment["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    files: dict[str, str] = {}
    for mount in container(deployment)["volumeMounts"]:
        source = volumes[mount["name"]].get("secret")
        if source is None or source["secretName"] != secret["metadata"]["name"]:
            continue
        items = source.get("items") or [{"key": key, "path": key} for key in secret_keys(secret)]
        files.update({posixpath.join(mount["mountPath"], item["path"]): item["key"] for item in items})
    return files


def secret_keys(secret: dict[str, Any]) -> set[str]:
    """The keys the Secret holds."""
    return set(secret.get("stringData", {})) | set(secret.get("data", {}))


def test_every_file_variable_names_a_file_of_the_mounted_secret() -> None:
    deployment, secret = objects()["Deployment"], objects()["Secret"]
    files = secret_files(deployment, secret)
    env = {entry["name"]: entry["value"] for entry in container(deployment)["env"]}
    file_variables = {name: path for name, path in env.items() if name.endswith("_FILE")}
    assert {"RTARF_API_TOKEN_FILE", "RTARF_DATABASE_URL_FILE"} <= file_variables.keys()
    assert file_variables.keys() <= set(SECRET_FILE_VARIABLES.values()), "a *_FILE variable config/ does not read"
    for name, path in file_variables.items():
        assert path in files, f"{name}={path} is not a file of the mounted Secret {sorted(files)}"
    # The Secret holds exactly the keys that are mounted, and each mounted file is named by a variable.
    assert set(files.values()) == secret_keys(secret)
    assert set(files) == set(file_variables.values())


def test_the_configmap_holds_only_variables_the_service_reads_and_no_secret() -> None:
    data = objects()["ConfigMap"]["data"]
    secret_names = set(SECRET_FILE_VARIABLES) | set(SECRET_FILE_VARIABLES.values())
    assert not secret_names & data.keys()
    config_source = "\n".join(path.read_text() for path in sorted((ROOT / "config").glob("*.py")))
    for name in data:
        assert f'"{name}"' in config_source, f"{name} is not read by config/"


def pod_environment(tmp_path: Path, token: str | None = None) -> dict[str, str]:
    """The pod's RTARF_ environment, its secret files written under `tmp_path` from the Secret."""
    deployment, secret = objects()["Deployment"], objects()["Secret"]
    files = secret_files(deployment, secret)
    environ = dict(objects()["ConfigMap"]["data"])
    for entry in container(deployment)["env"]:
        value = entry["value"]
        if entry["name"].endswith("_FILE"):
            key = files[value]
            content = token if token is not None and entry["name"] == "RTARF_API_TOKEN_FILE" else None
            (tmp_path / key).write_text((content or secret["stringData"][key]) + "\n")
            value = str(tmp_path / key)
        environ[entry["name"]] = value
    return environ


def test_the_configmap_and_the_secret_files_make_valid_settings(tmp_path: Path) -> None:
    settings = load_settings(pod_environment(tmp_path, token="k8s-token-" + "x" * 16))
    assert settings.bind == "0.0.0.0:8000"
    assert settings.api_token is not None and settings.api_token.reveal() == "k8s-token-" + "x" * 16


def test_the_pipelines_configmap_is_mounted_where_the_service_reads_it_and_parses(tmp_path: Path) -> None:
    deployment, pipelines_map = objects()["Deployment"], objects()["ConfigMap/pipelines"]
    wanted = PurePosixPath(objects()["ConfigMap"]["data"]["RTARF_PIPELINES_FILE"])
    [volume] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == PIPELINES_CONFIGMAP
    [mount] = [m for m in container(deployment)["volumeMounts"] if m["name"] == volume["name"]]
    [item] = volume["configMap"]["items"]
    assert PurePosixPath(mount["mountPath"]) / item["path"] == wanted
    assert item["key"] in pipelines_map["data"]
    # The file it holds makes valid pipelines, each on its own table, with the environment of the pod.
    (tmp_path / "pipelines.toml").write_text(pipelines_map["data"][item["key"]])
    environ = pod_environment(tmp_path, token="k8s-token-" + "x" * 16)
    environ["RTARF_PIPELINES_FILE"] = str(tmp_path / "pipelines.toml")
    pipelines = load_pipelines(environ)
    assert list(pipelines) == ["default", "alerts"]
    assert [column.type for column in pipelines["alerts"].columns] == ["inet", "smallint", "text", "text[]"]
    assert pipelines["default"].es_index == pipelines["alerts"].es_index == "rtarf-events*"


def test_the_placeholder_token_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RTARF_API_TOKEN"):
        load_settings(pod_environment(tmp_path))


def test_the_pod_runs_unprivileged_on_a_read_only_root() -> None:
    pod = objects()["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert "--uid 10001" in (ROOT / "Dockerfile").read_text()
    context = container(objects()["Deployment"])["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]


def test_resources_have_requests_and_limits() -> None:
    resources = container(objects()["Deployment"])["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()
