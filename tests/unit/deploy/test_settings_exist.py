"""Every service and every APEX_* setting the deployment files name exists in the code,
and the values they give are accepted by the services' settings classes: a typo or a
renamed setting fails here, not silently in production."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from apex_cli.config import START_ORDER
from apex_cli.service import main as service_entry
from tests.unit.deploy.manifests import (
    COMPOSE,
    COMPOSE_ENV,
    INFRA,
    compose,
    config_sources,
    container_env,
    env_names,
    interpolate,
    known_settings,
    of_kind,
    settings_class,
)

EVERY_SETTING = set().union(*known_settings().values())


@pytest.mark.parametrize("service", START_ORDER)
def test_each_service_is_a_package_the_entry_point_runs(service: str) -> None:
    assert importlib.util.find_spec(f"apex_{service}.__main__") is not None
    assert service in compose()["services"]
    assert service in of_kind("Deployment")


def test_the_entry_point_refuses_anything_else() -> None:
    assert service_entry(["no-such-service"]) == 2


def test_compose_names_only_services_of_the_code() -> None:
    assert set(compose()["services"]) - set(START_ORDER) == {*INFRA, "migrate"}


def test_every_setting_in_compose_exists() -> None:
    named = {
        key
        for svc in compose()["services"].values()
        for key in (svc.get("environment") or {})
        if key.startswith("APEX_")
    }
    assert named and not named - EVERY_SETTING, f"unknown settings: {sorted(named - EVERY_SETTING)}"


def test_every_setting_in_k8s_exists() -> None:
    named = {key for source in config_sources().values() for key in source if key.startswith("APEX_")}
    for workload in (*of_kind("Deployment").values(), *of_kind("Job").values()):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            named |= {item["name"] for item in container.get("env", []) if item["name"].startswith("APEX_")}
    assert named and not named - EVERY_SETTING, f"unknown settings: {sorted(named - EVERY_SETTING)}"


@pytest.mark.parametrize("service", START_ORDER)
def test_compose_settings_are_accepted_by_the_service(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment = compose()["services"][service]["environment"]
    env = {key: interpolate(str(value), COMPOSE_ENV) for key, value in environment.items()}
    _only(monkeypatch, _mounted(env, tmp_path))
    settings = settings_class(service)()
    assert getattr(settings, f"{service}_port") == int(environment[f"APEX_{service.upper()}_PORT"])


@pytest.mark.parametrize("service", START_ORDER)
def test_k8s_settings_are_accepted_by_the_service(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    container = of_kind("Deployment")[service]["spec"]["template"]["spec"]["containers"][0]
    mine = {item["name"] for item in container.get("env", [])}
    assert not mine - env_names(settings_class(service)), f"{service} is given settings it does not read"
    _only(monkeypatch, _mounted(container_env(container, config_sources()), tmp_path))
    settings = settings_class(service)()
    assert settings.env == "production"  # type: ignore[attr-defined]
    assert getattr(settings, f"{service}_port") == container["ports"][0]["containerPort"]


# Files a production service checks at start (auth's, for service accounts): mounted from
# secrets in the containers; test_nats_auth.py proves the paths are the mounts.
_FILES_CHECKED_AT_START = ("APEX_NATS_ISSUER_FILE", "APEX_NATS_SYSTEM_CREDS")


def _mounted(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """``env`` with each file checked at start put in ``tmp_path``, as the mount would."""
    placed = dict(env)
    for key in _FILES_CHECKED_AT_START:
        if key in env:
            path = tmp_path / Path(env[key]).name
            path.write_text("{}")
            placed[key] = str(path)
    return placed


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_auth_refuses_to_start_without_the_issuer_mounted(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Service accounts are on in both: a missing mount stops auth at start, naming it."""
    if where == "compose":
        environment = compose()["services"]["auth"]["environment"]
        env = {key: interpolate(str(value), COMPOSE_ENV) for key, value in environment.items()}
    else:
        container = of_kind("Deployment")["auth"]["spec"]["template"]["spec"]["containers"][0]
        env = container_env(container, config_sources())
    assert env["APEX_SERVICE_ACCOUNTS"] == "true"
    _only(monkeypatch, env)  # the paths name mounts absent from this machine
    with pytest.raises(ValueError, match="APEX_NATS_ISSUER_FILE, APEX_NATS_SYSTEM_CREDS"):
        settings_class("auth")()


def _only(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """This process's environment holds exactly these APEX_* settings."""
    for key in list(os.environ):
        if key.startswith("APEX_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_the_k8s_pods_settings_cover_every_secret_the_store_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each key of apex-secrets is a setting some service reads."""
    store = config_sources()["apex-secrets"]
    assert store and not set(store) - EVERY_SETTING


@pytest.mark.parametrize("service", ["gateway", "auth", "agents", "persistence"])
def test_production_refuses_the_old_placeholders(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The values the repository once shipped (the CHANGE-ME template, compose's local
    defaults) stop a production process at start, naming the variable."""
    container = of_kind("Deployment")[service]["spec"]["template"]["spec"]["containers"][0]
    env = container_env(container, config_sources())
    placeholders = {
        "APEX_POSTGRES_DSN": "postgresql://apex:CHANGE-ME@postgres.example.internal:5432/apex",
        "APEX_REDIS_URL": "rediss://:CHANGE-ME@redis.example.internal:6380/0",
        "APEX_CLICKHOUSE_URL": "http://apex:apex-local-only@clickhouse:8123/apex",
        "APEX_AUTH_KEY_PASSPHRASE": "change-me-in-production",
        "APEX_LLM_API_KEY": "CHANGE-ME",
    }
    read = [key for key in placeholders if key in env_names(settings_class(service))]
    assert read, f"{service} reads none of the secrets"
    for key in read:
        _only(monkeypatch, {**env, key: placeholders[key]})
        with pytest.raises(ValueError, match=key):
            settings_class(service)()


def test_compose_refuses_to_start_without_its_secrets() -> None:
    from tests.unit.deploy.manifests import required_variables

    assert required_variables(COMPOSE.read_text()) == set(COMPOSE_ENV)
    environment = compose()["services"]["auth"]["environment"]
    with pytest.raises(KeyError, match="APEX_AUTH_KEY_PASSPHRASE"):
        interpolate(str(environment["APEX_AUTH_KEY_PASSPHRASE"]), {})
