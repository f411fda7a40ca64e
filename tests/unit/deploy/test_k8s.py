"""k8s/ as kustomize renders it (the base, and the production overlay with the
External Secrets and alert components) is valid Kubernetes: built-in kinds against the
API's own schemas (strict: an unknown or misplaced field fails; kubernetes-validate
bundles them, so this runs offline), custom resources against schemas/*.json. And it
deploys what docs/deploy.md promises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from apex_cli.config import SERVICE_PORTS, START_ORDER
from apex_runtime import nats_servers
from tests.unit.deploy.manifests import K8S, OVERLAY, k8s_files, rendered

# The oldest Kubernetes the manifests support (native preStop sleep: 1.30) and the newest
# schemas bundled with the validator.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SCHEMAS = Path(__file__).parent / "schemas"
CUSTOM = {
    "ScaledObject": "scaledobject",
    "TriggerAuthentication": "triggerauthentication",
    "ExternalSecret": "externalsecret",
    "PrometheusRule": "prometheusrule",
}
BASE = rendered(K8S)
PRODUCTION = rendered(OVERLAY)


def _ids(docs: list[dict[str, Any]]) -> list[str]:
    return [f"{d['kind']}:{d['metadata']['name']}" for d in docs]


def by_kind(kind: str, docs: list[dict[str, Any]] = PRODUCTION) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def custom_schema(kind: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{CUSTOM[kind]}.json").read_text())  # type: ignore[no-any-return]


def validate(doc: dict[str, Any], version: str) -> None:
    if doc["kind"] in CUSTOM:
        jsonschema.validate(doc, custom_schema(doc["kind"]))
    else:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("doc", PRODUCTION, ids=_ids(PRODUCTION))
def test_every_rendered_document_is_valid(doc: dict[str, Any], version: str) -> None:
    validate(doc, version)


def test_the_validators_would_catch_a_mistake() -> None:
    deployment = by_kind("Deployment")["gateway"]
    deployment["spec"]["replica"] = 3  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, VERSIONS[0])
    for kind, field in (
        ("ScaledObject", "maxReplicas"),
        ("ExternalSecret", "refresh"),
        ("PrometheusRule", "group"),
    ):
        doc = next(iter(by_kind(kind).values()))
        doc["spec"][field] = 1
        with pytest.raises(jsonschema.ValidationError):
            validate(doc, VERSIONS[0])


def test_the_base_lists_every_file_and_the_overlay_adds_only_the_components() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(str(p.relative_to(K8S)) for p in k8s_files())
    added = {d["kind"] for d in PRODUCTION} - {d["kind"] for d in BASE}
    assert added == {"ExternalSecret", "PrometheusRule"}


@pytest.mark.parametrize("docs", [BASE, PRODUCTION], ids=["base", "production"])
def test_no_secret_is_a_resource(docs: list[dict[str, Any]]) -> None:
    """An apply never replaces the store's Secret with template values."""
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"] == []
    blob = yaml.safe_dump_all(docs).lower()
    assert "change-me" not in blob and "changeme" not in blob


def test_the_secret_comes_from_the_store_with_every_key_the_pods_read() -> None:
    external = by_kind("ExternalSecret")["apex-secrets"]
    assert external["spec"]["target"]["name"] == "apex-secrets"
    mapped = {item["secretKey"] for item in external["spec"]["data"]}
    read = set()
    for doc in PRODUCTION:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        for container in (*pod.get("initContainers", []), *pod["containers"]):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "apex-secrets"
                    read.add(ref["key"])
    assert read <= mapped, f"read but never fetched from the store: {sorted(read - mapped)}"


def _autoscaled() -> dict[str, str]:
    """Deployment name -> what scales it (an HPA or a KEDA ScaledObject)."""
    targets = {}
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for name, doc in by_kind(kind).items():
            ref = doc["spec"]["scaleTargetRef"]
            assert ref.get("kind", "Deployment") == "Deployment", name
            targets[ref["name"]] = f"{kind}/{name}"
    return targets


def test_no_autoscaled_workload_sets_replicas() -> None:
    """An apply never resets what the autoscaler chose (every gateway back to 3)."""
    targets = _autoscaled()
    assert set(targets) == set(START_ORDER), "every service is autoscaled"
    for name in targets:
        assert "replicas" not in by_kind("Deployment")[name]["spec"], (
            f"{name} sets replicas under {targets[name]}"
        )
    assert not set(targets.values()) - {
        f"{k}/{n}" for k in ("HorizontalPodAutoscaler", "ScaledObject") for n in START_ORDER
    }
    assert len([t for t in targets.values()]) == len(set(targets)), "one autoscaler per Deployment"


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])}


@pytest.mark.parametrize("service", START_ORDER)
def test_each_service_runs_with_probes_resources_spread_and_a_budget(service: str) -> None:
    deployment = by_kind("Deployment")[service]
    container = _container(deployment)
    port = SERVICE_PORTS[service][1]
    assert container["args"] == [service]
    assert {"name": "http", "containerPort": port} in container["ports"]
    probe_port = container["readinessProbe"]["httpGet"]["port"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": probe_port}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{service} {kind}"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    keys = {c["topologyKey"] for c in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    labels = deployment["spec"]["selector"]["matchLabels"]
    service_doc = by_kind("Service")[service]
    assert service_doc["spec"]["selector"] == labels
    assert service_doc["spec"]["ports"][0]["port"] == port
    assert by_kind("PodDisruptionBudget")[service]["spec"]["selector"]["matchLabels"] == labels


@pytest.mark.parametrize(("service", "ops_port"), [("gateway", 9000), ("auth", 9001)])
def test_probes_and_metrics_are_on_a_port_the_ingress_never_routes(service: str, ops_port: int) -> None:
    deployment = by_kind("Deployment")[service]
    container = _container(deployment)
    assert {"name": "ops", "containerPort": ops_port} in container["ports"]
    assert _env(container)[f"APEX_{service.upper()}_OPS_PORT"] == str(ops_port)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "ops"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ops_port)
    published = {p.get("targetPort") for p in by_kind("Service")[service]["spec"]["ports"]}
    assert "ops" not in published and ops_port not in published
    for rule in by_kind("Ingress")["apex"]["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert (backend["name"], backend["port"]) == ("gateway", {"name": "http"})


def test_any_gateway_replica_serves_any_user_and_rollouts_are_paced() -> None:
    assert by_kind("Service")["gateway"]["spec"].get("sessionAffinity", "None") == "None"
    deployment = by_kind("Deployment")["gateway"]
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert deployment["spec"]["minReadySeconds"] >= 10
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    drain_s = float(_env(container)["APEX_GATEWAY_DRAIN_S"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert drain_s > 0
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain_s + 10, "room for the final cursor flush"


def test_workers_scale_on_jetstream_pending_and_their_capacity_matches() -> None:
    """KEDA scales orchestrator, agents and tools on their consumer's pending commands;
    each service's max_ack_pending comes from the same maximum of replicas."""
    from apex_contracts.streams import AGENT_STEP_CONSUMER, RUN_START_CONSUMER, TOOL_CALL_CONSUMER

    consumers = {
        "orchestrator": RUN_START_CONSUMER,
        "agents": AGENT_STEP_CONSUMER,
        "tools": TOOL_CALL_CONSUMER,
    }
    for service, spec in consumers.items():
        scaled = by_kind("ScaledObject")[service]["spec"]
        (trigger,) = scaled["triggers"]
        assert trigger["type"] == "nats-jetstream"
        assert (trigger["metadata"]["stream"], trigger["metadata"]["consumer"]) == (spec.stream, spec.durable)
        env = _env(_container(by_kind("Deployment")[service]))
        assert env[f"APEX_{service.upper()}_MAX_REPLICAS"] == str(scaled["maxReplicaCount"])
        down = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 300 and down["policies"] == [
            {"type": "Pods", "value": 1, "periodSeconds": 120}
        ], "scale-down is paced"


def test_the_gateway_scales_on_connections_per_pod() -> None:
    scaled = by_kind("ScaledObject")["gateway"]["spec"]
    prometheus = next(t for t in scaled["triggers"] if t["type"] == "prometheus")
    assert prometheus["metricType"] == "AverageValue"
    assert "apex_gateway_connections" in prometheus["metadata"]["query"]
    assert scaled["minReplicaCount"] >= 3
    down = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300 and down["policies"][0]["value"] == 1


def _bytes(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def _nats_conf() -> dict[str, str]:
    conf = by_kind("ConfigMap")["nats-config"]["data"]["nats.conf"]
    return {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in conf.splitlines()
        if ":" in line
    }


def test_nats_is_a_three_node_jetstream_cluster_that_syncs_every_write() -> None:
    nats = by_kind("StatefulSet")["nats"]
    assert nats["spec"]["replicas"] == 3
    conf = by_kind("ConfigMap")["nats-config"]["data"]["nats.conf"]
    assert "sync_interval: always" in conf
    assert conf.count("nats-headless") == 3, "a route to each of the three nodes"
    assert by_kind("ConfigMap")["apex-config"]["data"]["APEX_NATS_REPLICAS"] == "3"
    servers = nats_servers(by_kind("ConfigMap")["apex-config"]["data"]["APEX_NATS_URL"])
    assert [s.split(".", 1)[0] for s in servers] == ["tls://nats-0", "tls://nats-1", "tls://nats-2"]
    assert by_kind("PodDisruptionBudget")["nats"]["spec"]["maxUnavailable"] == 1
    keys = {c["topologyKey"] for c in nats["spec"]["template"]["spec"]["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}


def test_nats_stops_in_lame_duck_mode() -> None:
    """preStop signals lame duck mode through the pid file the config writes; the grace
    period covers the grace and the eviction; the kubelet's SIGTERM is ignored meanwhile."""
    conf = _nats_conf()
    pod = by_kind("StatefulSet")["nats"]["spec"]["template"]["spec"]
    nats = next(c for c in pod["containers"] if c["name"] == "nats")
    assert nats["lifecycle"]["preStop"]["exec"]["command"] == ["nats-server", f"-sl=ldm={conf['pid_file']}"]
    pid_dir = str(Path(conf["pid_file"]).parent)
    assert any(m["mountPath"] == pid_dir for m in nats["volumeMounts"]), "the pid file is writable"
    lame = int(conf["lame_duck_duration"].rstrip("s")) + int(conf["lame_duck_grace_period"].rstrip("s"))
    assert pod["terminationGracePeriodSeconds"] > lame


def test_nats_memory_metrics_and_disk_headroom() -> None:
    pod = by_kind("StatefulSet")["nats"]["spec"]["template"]["spec"]
    nats = next(c for c in pod["containers"] if c["name"] == "nats")
    assert _bytes(_env(nats)["GOMEMLIMIT"]) < _bytes(nats["resources"]["limits"]["memory"])
    exporter = next(c for c in pod["containers"] if c["name"] == "metrics")
    assert "-jsz=all" in exporter["args"] and "http://localhost:8222/" in exporter["args"]
    volume = by_kind("StatefulSet")["nats"]["spec"]["volumeClaimTemplates"][0]["spec"]["resources"][
        "requests"
    ]
    file_store = _bytes(_nats_conf()["max_file_store"])
    assert file_store <= 0.85 * _bytes(volume["storage"]), "the file store leaves headroom on the volume"
    caps = json.loads(by_kind("ConfigMap")["apex-config"]["data"]["APEX_NATS_STREAM_MAX_BYTES"])
    from apex_contracts.streams import STREAMS

    assert set(caps) == {spec.name for spec in STREAMS}, "every stream has a cap"
    assert sum(caps.values()) <= 0.9 * file_store, "the streams fit the file store with room for buckets"


def test_every_stream_alerts_before_its_cap() -> None:
    caps = json.loads(by_kind("ConfigMap")["apex-config"]["data"]["APEX_NATS_STREAM_MAX_BYTES"])
    rules = [r for g in by_kind("PrometheusRule")["apex-nats"]["spec"]["groups"] for r in g["rules"]]
    alerted = {}
    for rule in rules:
        if rule.get("alert") == "ApexStreamNearlyFull":
            stream = rule["expr"].split('stream_name="')[1].split('"')[0]
            fraction, limit = rule["expr"].rsplit(">", 1)[1].split("*")
            alerted[stream] = (float(fraction), int(limit))
    assert {stream: limit for stream, (_, limit) in alerted.items()} == caps
    assert all(fraction <= 0.85 for fraction, _ in alerted.values())
    names = {r.get("alert") for r in rules}
    assert {"ApexJetStreamStoreNearlyFull", "ApexNatsVolumeNearlyFull", "ApexCommandBacklog"} <= names


def test_new_pods_wait_for_the_migration_job() -> None:
    job = by_kind("Job")["apex-migrate"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["migrate"]
    assert container["image"] == _container(by_kind("Deployment")["gateway"])["image"]
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "Sync"
    assert annotations["kustomize.toolkit.fluxcd.io/force"] == "enabled"
    for service in ("auth", "persistence"):
        init = by_kind("Deployment")[service]["spec"]["template"]["spec"]["initContainers"]
        assert [c["args"][:2] for c in init] == [[service, "wait-schema"]]
    dockerfile = (K8S.parent / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "apex_cli.service"]' in dockerfile


def test_the_language_model_is_configured_in_one_place() -> None:
    data = by_kind("ConfigMap")["apex-config"]["data"]
    assert {"APEX_LLM_BASE_URL", "APEX_LLM_MODEL"} <= set(data)
    env = _env(_container(by_kind("Deployment")["agents"]))
    assert env["APEX_LLM_API_KEY"]["secretKeyRef"]["key"] == "APEX_LLM_API_KEY"


def test_documented_dsns_verify_the_server() -> None:
    docs = (K8S.parent / "docs" / "deploy.md").read_text()
    dsns = [line for line in docs.splitlines() if "postgresql://" in line]
    assert dsns and all("sslmode=verify-full" in line for line in dsns)


def test_traffic_is_denied_unless_a_policy_allows_it() -> None:
    policies = by_kind("NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    auth_from = policies["auth-ingress"]["spec"]["ingress"][0]["from"]
    assert auth_from == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}]
    public = policies["gateway-ingress"]["spec"]["ingress"][0]["ports"]
    assert public == [{"protocol": "TCP", "port": 8000}], "only the public port from the ingress controller"
