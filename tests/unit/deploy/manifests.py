"""The deployment files as data: docker-compose.yml and every Kubernetes document under
k8s/, and the settings each service's code declares."""

from __future__ import annotations

import copy
import functools
import importlib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from apex_cli.config import START_ORDER

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yml"
K8S = REPO / "k8s"
INFRA = ("nats", "postgres", "redis", "clickhouse")
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def compose() -> dict[str, Any]:
    """A fresh copy each time: tests may change it."""
    return copy.deepcopy(_compose())


@functools.cache
def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` as compose would fill it with nothing set."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


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
        else:
            out[item["name"]] = "example-7d9f8c7b9-abcde"  # metadata.name of a pod
    return out


def config_sources() -> dict[str, dict[str, str]]:
    sources = {name: dict(doc.get("data", {})) for name, doc in of_kind("ConfigMap").items()}
    sources.update({name: dict(doc.get("stringData", {})) for name, doc in of_kind("Secret").items()})
    return sources
