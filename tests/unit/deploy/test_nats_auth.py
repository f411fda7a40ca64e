"""The bus in docker compose and k8s/: NATS accepts TLS clients only, in operator mode (no
anonymous user), every service mounts its own user's .creds and the CA, the secrets come
from ``apex nats-auth init`` or the store and none is committed. The servers' configurations
are parsed by the real ``nats-server -t`` with the files ``apex nats-auth init`` makes put
where compose and the pods mount them."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from apex_cli.config import START_ORDER
from apex_cli.embedded import nats_binary
from apex_cli.natsauth import init_deployment
from apex_cli.natstls import DEFAULT_HOSTS
from apex_runtime import nats_servers
from tests.unit.deploy.manifests import (
    COMPOSE_NATS_CONF,
    REPO,
    compose,
    compose_nats,
    compose_secret,
    interpolate,
    of_kind,
    place,
    rendered,
)
from tests.unit.deploy.test_k8s import PRODUCTION, by_kind

# Each key of the store, as docs/deploy.md maps it, to the file `apex nats-auth init` writes.
STORE_FILES = {
    "apex/nats-server-auth": "server-auth.conf",
    "apex/nats-account": "apex-account.pub",
    "apex/nats-tls-crt": "tls/tls.crt",
    "apex/nats-tls-key": "tls/tls.key",
    "apex/nats-ca-crt": "tls/ca.crt",
    **{f"apex/nats-creds-{service}": f"{service}.creds" for service in START_ORDER},
    "apex/nats-issuer": "issuer.json",
    "apex/nats-system-creds": "system.creds",
}
# What auth alone mounts besides its user and the CA, to issue tenants' service accounts:
# the setting naming the file -> the file of `apex nats-auth init`.
ISSUER_FILES = {"APEX_NATS_ISSUER_FILE": "issuer.json", "APEX_NATS_SYSTEM_CREDS": "system.creds"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What an operator runs once: ``apex nats-auth init --out DIR --tls``."""
    out = tmp_path_factory.mktemp("nats-auth")
    init_deployment(out, tls_hosts=DEFAULT_HOSTS)
    return out


def _conf_lines(text: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def _refuses_anonymous_clients(conf: str) -> None:
    lines = _conf_lines(conf)
    assert not any(line.startswith(("no_auth_user", "authorization", "accounts")) for line in lines)
    assert "include ./auth/server-auth.conf" in lines, "operator mode comes from the included block"
    assert any(line.startswith("tls {") for line in lines), "clients over TLS"


def _nats_check(root: Path, conf: Path, env: dict[str, str] | None = None) -> None:
    """``nats-server -t``: parses the configuration, the included operator block and loads
    the certificates, as the server would at start."""
    check = subprocess.run(
        [nats_binary(), "-t", "-c", str(conf)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        cwd=root,
    )
    assert check.returncode == 0, check.stdout + check.stderr


# --- docker compose ------------------------------------------------------------------


def test_compose_nats_takes_tls_clients_in_operator_mode_and_its_config_parses(
    generated: Path, tmp_path: Path
) -> None:
    _refuses_anonymous_clients(COMPOSE_NATS_CONF.read_text())
    _nats_check(tmp_path, compose_nats(generated, tmp_path))


def test_compose_gives_each_service_its_own_user_and_the_ca() -> None:
    services = compose()["services"]
    for name in START_ORDER:
        env = services[name]["environment"]
        mounted = {s["target"]: s["source"] for s in services[name]["secrets"]}
        if name == "auth":
            mounted = {t: s for t, s in mounted.items() if s not in ("nats-issuer", "nats-system")}
        assert mounted == {env["APEX_NATS_CREDS"]: f"nats-{name}", env["APEX_NATS_CA"]: "nats-ca"}, name
        assert compose()["secrets"][f"nats-{name}"]["file"].endswith(f"/{name}.creds")
        assert all(server.startswith("tls://") for server in nats_servers(interpolate(env["APEX_NATS_URL"])))
    assert compose()["secrets"]["nats-ca"]["file"].endswith("/tls/ca.crt")
    assert "secrets" not in services["migrate"], "the migration job does not use the bus"


_ENV_KEYS = set(compose()["x-service"]["environment"])  # every service's (the anchor's)


def test_compose_gives_auth_alone_the_issuer_and_the_system_user(generated: Path) -> None:
    services = compose()["services"]
    env = {k: interpolate(str(v)) for k, v in services["auth"]["environment"].items() if k not in _ENV_KEYS}
    mounted = {s["target"]: s["source"] for s in services["auth"]["secrets"]}
    for setting, file in ISSUER_FILES.items():
        secret = mounted[env[setting]]  # the setting names a file compose mounts
        assert compose()["secrets"][secret]["file"].endswith(f"/{file}"), setting
        assert compose_secret(secret, generated).is_file(), file
    assert env["APEX_SERVICE_ACCOUNTS"] == "true", "on, and auth refuses to start without both files"
    _certificate_names(env["APEX_NATS_PUBLIC_URL"])
    issuer = {"nats-issuer", "nats-system"}
    for name, service in services.items():
        if name != "auth":
            assert not issuer & {s["source"] for s in service.get("secrets", []) if isinstance(s, dict)}, name
            assert not set(ISSUER_FILES) & set(service.get("environment") or {}), name


def test_compose_names_the_files_apex_nats_auth_init_writes(generated: Path) -> None:
    for name in compose()["secrets"]:
        assert compose_secret(name, generated).is_file(), name


# --- Kubernetes ----------------------------------------------------------------------


def _secret_data(out: Path) -> dict[str, dict[str, Path]]:
    """Each Secret the ExternalSecrets make, key -> the generated file it holds."""
    made: dict[str, dict[str, Path]] = {}
    for doc in PRODUCTION:
        if doc["kind"] == "ExternalSecret":
            data = {item["secretKey"]: item["remoteRef"]["key"] for item in doc["spec"]["data"]}
            if all(key in STORE_FILES for key in data.values()):
                made[doc["spec"]["target"]["name"]] = {k: out / STORE_FILES[v] for k, v in data.items()}
    return made


def _projected(volume: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(Secret or ConfigMap name, key, path) of each file a projected volume holds."""
    files = []
    for source in volume["projected"]["sources"]:
        kind = "secret" if "secret" in source else "configMap"
        for item in source[kind].get("items") or [{"key": "nats.conf", "path": "nats.conf"}]:
            files.append((source[kind]["name"], item["key"], item["path"]))
    return files


def test_k8s_nats_config_resolver_and_tls_blocks_parse(generated: Path, tmp_path: Path) -> None:
    conf = by_kind("ConfigMap")["nats-config"]["data"]["nats.conf"]
    _refuses_anonymous_clients(conf)
    lines = _conf_lines(conf)
    assert lines.count("verify: true") == 1, "routes verify each other's certificate"
    pod = by_kind("StatefulSet")["nats"]["spec"]["template"]["spec"]
    nats = next(c for c in pod["containers"] if c["name"] == "nats")
    mount = next(m["mountPath"] for m in nats["volumeMounts"] if m["name"] == "config")
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert volume["projected"]["defaultMode"] == 0o440 and pod["securityContext"]["fsGroup"] == 1000
    secrets = _secret_data(generated)
    (tmp_path / "nats.conf").write_text(conf)
    for name, key, path in _projected(volume):
        source = tmp_path / "nats.conf" if name == "nats-config" else secrets[name][key]
        place(tmp_path, f"{mount}/{path}", source)
    _nats_check(tmp_path, tmp_path / mount.lstrip("/") / "nats.conf", {"POD_NAME": "nats-0"})
    server_auth = (generated / "server-auth.conf").read_text()
    assert "type: full" in server_auth and 'dir: "/data/jwt"' in server_auth, "the resolver on the volume"


def _certificate_names(url: str) -> None:
    """Every server of ``url`` is reached over TLS at a name the default certificate holds."""
    servers = nats_servers(url)
    assert servers and all(server.startswith("tls://") for server in servers), url
    for server in servers:
        host = server.removeprefix("tls://").rsplit(":", 1)[0]
        assert any(
            re.fullmatch(name.replace(".", r"\.").replace("*", "[^.]+"), host) for name in DEFAULT_HOSTS
        ), host


def test_k8s_clients_reach_every_node_over_tls_with_a_certificate_for_its_name() -> None:
    _certificate_names(by_kind("ConfigMap")["apex-config"]["data"]["APEX_NATS_URL"])


@pytest.mark.parametrize("service", START_ORDER)
def test_each_k8s_service_mounts_its_own_creds_and_the_ca_readable_by_its_uid(service: str) -> None:
    pod = by_kind("Deployment")[service]["spec"]["template"]["spec"]
    config = by_kind("ConfigMap")["apex-config"]["data"]
    container = next(c for c in pod["containers"] if c["name"] == service)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "nats")
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "nats")
    files = {f"{mount['mountPath']}/{path}": (name, key) for name, key, path in _projected(volume)}
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    issuer = {env[setting]: ("nats-issuer", key) for setting, key in ISSUER_FILES.items() if setting in env}
    assert files == {
        config["APEX_NATS_CREDS"]: (f"nats-creds-{service}", "nats.creds"),
        config["APEX_NATS_CA"]: ("nats-tls", "ca.crt"),
        **issuer,
    }, "its own user only, and the CA without the servers' key (auth: the issuer's files)"
    assert bool(issuer) == (service == "auth"), "auth alone holds the issuer and the system user"
    assert not set(ISSUER_FILES) & set(config), "not in the ConfigMap every service reads"
    assert volume["projected"]["defaultMode"] == 0o440
    security = pod["securityContext"]
    assert (security["runAsUser"], security["fsGroup"]) == (10001, 10001), "0440 to the group of uid 10001"


def test_k8s_auth_issues_service_accounts_with_the_files_it_mounts(generated: Path) -> None:
    pod = by_kind("Deployment")["auth"]["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "auth")
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "nats")
    volume = next(v for v in pod["volumes"] if v["name"] == "nats")
    paths = {f"{mount}/{path}": (name, key) for name, key, path in _projected(volume)}
    secrets = _secret_data(generated)
    for setting, file in ISSUER_FILES.items():
        name, key = paths[env[setting]]
        assert secrets[name][key] == generated / file, setting
        assert secrets[name][key].is_file()
    assert env["APEX_SERVICE_ACCOUNTS"] == "true"
    _certificate_names(env["APEX_NATS_PUBLIC_URL"])
    readers = [
        doc["metadata"]["name"]
        for doc in PRODUCTION
        if doc["kind"] in ("Deployment", "StatefulSet", "Job")
        and "nats-issuer" in str(doc["spec"]["template"]["spec"].get("volumes", []))
    ]
    assert readers == ["auth"], "no other pod mounts the issuer"


def test_every_secret_a_pod_or_keda_reads_is_made_from_the_store() -> None:
    made = {doc["spec"]["target"]["name"] for doc in PRODUCTION if doc["kind"] == "ExternalSecret"}
    needed = set()
    for doc in PRODUCTION:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            for volume in doc["spec"]["template"]["spec"].get("volumes", []):
                for source in volume.get("projected", {}).get("sources", []):
                    needed |= {source["secret"]["name"]} if "secret" in source else set()
        if doc["kind"] == "TriggerAuthentication":
            needed |= {ref["name"] for ref in doc["spec"]["secretTargetRef"]}
    assert {
        "nats-server-auth",
        "nats-tls",
        "nats-issuer",
        *(f"nats-creds-{s}" for s in START_ORDER),
    } <= needed
    assert needed <= made, f"read but never made from the store: {sorted(needed - made)}"
    assert set(STORE_FILES) == {
        item["remoteRef"]["key"]
        for doc in PRODUCTION
        if doc["kind"] == "ExternalSecret" and doc["metadata"]["name"].startswith("nats-")
        for item in doc["spec"]["data"]
    }


def test_keda_reads_the_consumers_under_the_apex_account(generated: Path) -> None:
    for service in ("orchestrator", "agents", "tools"):
        (trigger,) = by_kind("ScaledObject")[service]["spec"]["triggers"]
        assert "account" not in trigger["metadata"], "the account's key differs per installation"
        assert trigger["authenticationRef"] == {"name": "nats-jetstream"}
    (ref,) = by_kind("TriggerAuthentication")["nats-jetstream"]["spec"]["secretTargetRef"]
    assert (ref["parameter"], ref["name"]) == ("account", "nats-server-auth")
    account = _secret_data(generated)["nats-server-auth"][ref["key"]].read_text()
    assert re.fullmatch(r"A[A-Z2-7]{55}", account), "the account's public key, nothing around it"


def test_the_docs_map_every_store_key_to_its_file() -> None:
    docs = (REPO / "docs" / "deploy.md").read_text()
    users = {f"apex/nats-creds-{service}" for service in START_ORDER}
    rows = {key: file for key, file in STORE_FILES.items() if key not in users}
    rows["apex/nats-creds-<service>"] = "<service>.creds"  # one row for every service's user
    for key, file in rows.items():
        assert f"`{key}`" in docs and f"`{file}`" in docs, key
    assert all(f"`{service}`" in docs for service in START_ORDER)


# --- nothing secret in the repository ---------------------------------------------------

_SECRET = re.compile(
    r"\bS[OAU][A-Z2-7]{56}\b"  # an nkey seed
    r"|eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ\.[A-Za-z0-9_-]{20,}"  # a NATS JWT
    r"|-----BEGIN (?:EC |RSA |ENCRYPTED )?PRIVATE KEY-----\s*[A-Za-z0-9+/]"
)


def test_no_credentials_seeds_or_keys_are_committed() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    assert not [f for f in files if f.endswith((".creds", ".key", "keys.json"))]
    found = []
    for name in files:
        path = REPO / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += [f"{name}: {m.group()[:12]}…" for m in _SECRET.finditer(text)]
    assert not found, found
    ignored = (REPO / ".gitignore").read_text().split()
    assert "nats-auth/" in ignored and "*.creds" in ignored


def test_the_k8s_tree_holds_no_secret_value() -> None:
    for _name, doc in of_kind("ConfigMap").items():
        assert not _SECRET.search(str(doc.get("data", {})))
    assert not [d for d in rendered() if d["kind"] == "Secret"]
