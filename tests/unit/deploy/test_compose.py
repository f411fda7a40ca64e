"""docker-compose.yml is a valid Compose file (the Compose specification's JSON schema,
as vendored by check-jsonschema: no network needed) and runs what Apex needs: every
service, each with a healthcheck and a restart policy, after the migration job."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest

from apex_cli.config import START_ORDER
from tests.unit.deploy.manifests import INFRA, REPO, compose

NATS_CONF = "deploy/nats/nats.conf"


def compose_schema() -> dict[str, object]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(vendored.read_text())  # type: ignore[no-any-return]


def test_the_file_matches_the_compose_specification() -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def test_the_schema_would_catch_a_mistake() -> None:
    broken = compose()
    broken["services"]["gateway"]["restart"] = ["always"]
    broken["services"]["auth"]["healthcheck"]["interval"] = {"seconds": 5}
    schema = compose_schema()
    assert len(list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))) >= 2


def test_every_apex_service_and_the_stores_run_with_healthchecks_and_restarts() -> None:
    services = compose()["services"]
    assert set(services) == {*START_ORDER, *INFRA, "migrate"}
    for name in (*START_ORDER, *INFRA):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert services[name].get("restart") in ("unless-stopped", "always", "on-failure"), name
    for name in START_ORDER:
        assert services[name]["command"] == [name]
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully", name
        assert needs["nats"]["condition"] == "service_healthy", name


def test_the_migration_job_runs_once_before_the_services() -> None:
    migrate = compose()["services"]["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert {"postgres", "clickhouse"} <= set(migrate["depends_on"])


def test_the_services_take_the_bus_nodes_and_replicas_from_one_setting() -> None:
    env = compose()["x-service"]["environment"]
    assert env["APEX_NATS_URL"] == "${APEX_NATS_URL:-tls://nats:4222}"
    assert env["APEX_NATS_REPLICAS"] == "${APEX_NATS_REPLICAS:-1}"
    for name in START_ORDER:
        assert compose()["services"][name]["environment"]["APEX_NATS_REPLICAS"] == env["APEX_NATS_REPLICAS"]


def test_nats_keeps_every_acknowledged_publish_on_disk() -> None:
    nats = compose()["services"]["nats"]
    assert any(NATS_CONF in volume for volume in nats["volumes"])
    conf = (REPO / NATS_CONF).read_text()
    assert "sync_interval: always" in conf and "store_dir" in conf


def test_nats_stops_in_lame_duck_mode_and_streams_fit_its_store() -> None:
    """``docker compose stop`` sends SIGUSR2 (lame duck): clients move before it exits."""
    nats = compose()["services"]["nats"]
    assert nats["stop_signal"] == "SIGUSR2"
    lines = [line.split(":", 1) for line in (REPO / NATS_CONF).read_text().splitlines() if ":" in line]
    conf = {key.strip(): value.strip() for key, value in lines if not key.strip().startswith("#")}
    lame = int(conf["lame_duck_duration"].strip().rstrip("s")) + int(
        conf["lame_duck_grace_period"].strip().rstrip("s")
    )
    assert int(nats["stop_grace_period"].rstrip("s")) > lame
    assert "GOMEMLIMIT" in nats["environment"]
    caps = json.loads(compose()["services"]["gateway"]["environment"]["APEX_NATS_STREAM_MAX_BYTES"])
    store = int(conf["max_file_store"].strip().rstrip("G")) * 1024**3
    assert sum(caps.values()) <= 0.85 * store


def test_probes_are_off_the_published_port_and_the_language_model_is_configurable() -> None:
    services = compose()["services"]
    gateway = services["gateway"]
    assert gateway["environment"]["APEX_GATEWAY_OPS_PORT"] == "9000"
    assert "9000" in " ".join(gateway["healthcheck"]["test"]) and gateway["ports"] == ["8000:8000"]
    for name in START_ORDER:
        assert {"APEX_LLM_BASE_URL", "APEX_LLM_MODEL", "APEX_LLM_API_KEY"} <= set(
            services[name]["environment"]
        )


@pytest.mark.parametrize("name", ["auth", "orchestrator", "agents", "tools", "persistence", "ingest"])
def test_only_the_gateway_is_published(name: str) -> None:
    """The page talks to one origin: the gateway serves it and proxies /auth/*."""
    services = compose()["services"]
    assert services["gateway"]["ports"] == ["8000:8000"]
    assert "ports" not in services[name]
