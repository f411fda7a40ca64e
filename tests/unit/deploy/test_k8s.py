"""k8s/ is valid Kubernetes (every document against the API's own JSON schemas, strict:
an unknown or misplaced field fails; kubernetes-validate bundles the schemas, so this
runs offline) and deploys what docs/deploy.md promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from apex_cli.config import SERVICE_PORTS, START_ORDER
from tests.unit.deploy.manifests import K8S, k8s_documents, k8s_files, of_kind

# The oldest Kubernetes the manifests support (native preStop sleep: 1.30) and the newest
# schemas bundled with the validator.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
DOCUMENTS = list(k8s_documents())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("path", "doc"), DOCUMENTS, ids=[f"{p.name}:{d['kind']}:{d['metadata']['name']}" for p, d in DOCUMENTS]
)
def test_every_document_is_valid_kubernetes(path: Path, doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_would_catch_a_mistake() -> None:
    deployment = dict(of_kind("Deployment")["gateway"])
    deployment["spec"] = {**deployment["spec"], "replica": 3}  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_kustomization_lists_every_file() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(str(p.relative_to(K8S)) for p in k8s_files())


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("service", START_ORDER)
def test_each_service_runs_with_probes_resources_autoscaling_and_a_budget(service: str) -> None:
    deployment = of_kind("Deployment")[service]
    container = _container(deployment)
    port = SERVICE_PORTS[service][1]
    assert container["args"] == [service]
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{service} {kind}"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    labels = deployment["spec"]["selector"]["matchLabels"]

    service_doc = of_kind("Service")[service]
    assert service_doc["spec"]["selector"] == labels
    assert service_doc["spec"]["ports"][0]["port"] == port
    hpa = of_kind("HorizontalPodAutoscaler")[service]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert of_kind("PodDisruptionBudget")[service]["spec"]["selector"]["matchLabels"] == labels


def test_any_gateway_replica_serves_any_user() -> None:
    service = of_kind("Service")["gateway"]
    assert service["spec"].get("sessionAffinity", "None") == "None"
    assert of_kind("HorizontalPodAutoscaler")["gateway"]["spec"]["minReplicas"] >= 3
    ingress = of_kind("Ingress")["apex"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "gateway"


def test_nats_is_a_three_node_jetstream_cluster_that_syncs_every_write() -> None:
    nats = of_kind("StatefulSet")["nats"]
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["volumeClaimTemplates"], "JetStream needs persistent volumes"
    conf = of_kind("ConfigMap")["nats-config"]["data"]["nats.conf"]
    assert "sync_interval: always" in conf
    assert conf.count("nats-headless") == 3, "a route to each of the three nodes"
    assert of_kind("ConfigMap")["apex-config"]["data"]["APEX_NATS_REPLICAS"] == "3"
    assert of_kind("PodDisruptionBudget")["nats"]["spec"]["maxUnavailable"] == 1


def test_the_migration_job_uses_the_image_entry_point() -> None:
    job = of_kind("Job")["apex-migrate"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["migrate"]
    assert container["image"] == _container(of_kind("Deployment")["gateway"])["image"]
    dockerfile = (K8S.parent / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "apex_cli.service"]' in dockerfile


def test_traffic_is_denied_unless_a_policy_allows_it() -> None:
    policies = of_kind("NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    auth_from = policies["auth-ingress"]["spec"]["ingress"][0]["from"]
    assert auth_from == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}]
