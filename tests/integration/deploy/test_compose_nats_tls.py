"""docker compose's NATS, run as compose runs it (deploy/nats/nats.conf with the files
``apex nats-auth init --tls`` writes, at the paths compose mounts them; only the ports
and folders moved to a private temporary place): a service connects over TLS as its own
user, verifying the server with the CA; without the CA, without TLS or without
credentials it is refused; with the two files compose gives auth alone (``issuer.json``,
``system.creds``) a tenant's service account is issued, connects over TLS, and its
revocation pushed through the system account disconnects it."""

from __future__ import annotations

import asyncio
import gc
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from apex_cli.embedded import EmbeddedServer, free_ports, nats_binary, port_open
from apex_cli.natsauth import init_deployment
from apex_cli.natstls import DEFAULT_HOSTS
from apex_contracts import Unavailable, new_id
from apex_contracts.busapi import inbox_prefix
from apex_runtime import NatsBus, ServiceSettings
from apex_runtime.buspermissions import service_account_permissions
from apex_runtime.natsissuer import AccountIssuer, push_account
from tests.unit.deploy.manifests import compose, compose_nats

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def compose_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """(client port, the folder ``apex nats-auth init`` wrote)."""
    auth_dir = tmp_path_factory.mktemp("nats-auth")
    init_deployment(auth_dir, tls_hosts=DEFAULT_HOSTS)
    root = tmp_path_factory.mktemp("compose-nats")
    conf = compose_nats(auth_dir, root)
    port, monitor = free_ports(2)
    text = conf.read_text()
    text = re.sub(r"(?m)^listen: .*$", f"listen: 127.0.0.1:{port}", text)
    conf.write_text(re.sub(r"(?m)^http: .*$", f"http: 127.0.0.1:{monitor}", text))
    server = EmbeddedServer(
        name="nats",
        port=port,
        data_dir=root,
        url=f"tls://localhost:{port}",
        argv=[nats_binary(), "-c", str(conf)],
        ready=lambda _server: port_open(port) and port_open(monitor),
    ).start()
    yield port, auth_dir
    server.stop()


def _settings(port: int, **overrides: object) -> ServiceSettings:
    """A tools process as compose configures it (production, its creds and the CA)."""
    env = compose()["services"]["tools"]["environment"]
    assert env["APEX_NATS_URL"].endswith("tls://nats:4222}")
    return ServiceSettings(env="production", nats_url=f"tls://localhost:{port}", **overrides)  # type: ignore[arg-type]


async def test_a_service_connects_over_tls_as_its_own_user(compose_bus: tuple[int, Path]) -> None:
    port, auth_dir = compose_bus
    settings = _settings(port, nats_creds=auth_dir / "tools.creds", nats_ca=auth_dir / "tls" / "ca.crt")
    bus = await NatsBus.connect(settings.nats_url, "tools-test", **settings.nats_options())
    try:
        assert bus.connected and bus.nc.connected_url is not None
        assert bus.nc.connected_url.scheme == "tls"
        info = await bus.js.account_info()  # JetStream of the APEX account, through the resolver
        assert info.streams >= 0
    finally:
        await bus.close()


async def test_without_the_ca_the_server_is_not_trusted(compose_bus: tuple[int, Path]) -> None:
    port, auth_dir = compose_bus
    settings = _settings(port, nats_creds=auth_dir / "tools.creds")  # the system's roots
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    with pytest.raises((Unavailable, ssl.SSLCertVerificationError, nats.errors.Error)):
        nc = await nats.connect(
            settings.nats_url,
            allow_reconnect=False,
            connect_timeout=3,
            error_cb=on_error,
            **settings.nats_options(),
        )
        await nc.close()
    assert any(isinstance(e, ssl.SSLCertVerificationError) for e in errors), errors


async def test_a_plaintext_client_is_cut_off(compose_bus: tuple[int, Path]) -> None:
    """The server's INFO says TLS is required; a CONNECT in clear text (no credentials
    either) closes the connection without an answer."""
    port, _ = compose_bus
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert b'"tls_required":true' in await reader.readline()
        writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10.0)
    finally:
        writer.close()
        await writer.wait_closed()
    assert answer == b""


async def test_tls_without_credentials_is_refused(compose_bus: tuple[int, Path]) -> None:
    """The CA, the right host name, and no user: ``Authorization Violation``."""
    port, auth_dir = compose_bus
    context = ssl.create_default_context(cafile=str(auth_dir / "tls" / "ca.crt"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert b'"tls_required":true' in await reader.readline()
        await writer.start_tls(context, server_hostname="localhost")
        writer.write(b'CONNECT {"verbose":false,"pedantic":false,"tls_required":true}\r\nPING\r\n')
        await writer.drain()
        answer = (await asyncio.wait_for(reader.readline(), 5.0)).strip()
    finally:
        writer.close()
        await writer.wait_closed()
    assert answer == b"-ERR 'Authorization Violation'"


def _auth_files(auth_dir: Path) -> dict[str, Path]:
    """Auth's issuer settings as compose sets them, each mounted file found in the folder
    compose reads (``secrets:``): the file ``apex nats-auth init`` wrote."""
    auth = compose()["services"]["auth"]
    mounted = {s["target"]: compose()["secrets"][s["source"]]["file"] for s in auth["secrets"]}
    return {
        key: auth_dir / Path(mounted[auth["environment"][key]]).name
        for key in ("APEX_NATS_ISSUER_FILE", "APEX_NATS_SYSTEM_CREDS")
    }


# nats-py leaves the socket of a refused connect to the garbage collector
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_auth_issues_and_revokes_a_service_account_with_the_files_compose_gives_it(
    compose_bus: tuple[int, Path], tmp_path: Path
) -> None:
    port, auth_dir = compose_bus
    files = _auth_files(auth_dir)
    settings = _settings(port, nats_creds=auth_dir / "auth.creds", nats_ca=auth_dir / "tls" / "ca.crt")
    issuer = AccountIssuer.load(files["APEX_NATS_ISSUER_FILE"])
    tenant_id, user_id = new_id("ten"), new_id("usr")
    issued = issuer.issue("nightly export", service_account_permissions(tenant_id, user_id))
    creds = tmp_path / "service-account.creds"
    creds.write_text(issued.creds)
    disconnected = asyncio.Event()

    async def on_disconnect() -> None:
        disconnected.set()

    nc = await nats.connect(
        settings.nats_url,
        user_credentials=str(creds),
        tls=settings.nats_tls(),
        inbox_prefix=inbox_prefix(user_id).encode(),
        disconnected_cb=on_disconnect,
        allow_reconnect=False,
    )
    system = files["APEX_NATS_SYSTEM_CREDS"]
    try:
        assert nc.connected_url is not None and nc.connected_url.scheme == "tls"
        started = time.monotonic()
        revoked = {issued.public_key: int(time.time())}
        await push_account(settings.nats_url, system, issuer.account_jwt(revoked), tls=settings.nats_tls())
        await asyncio.wait_for(disconnected.wait(), 5)
        print(f"compose: revocation to disconnect: {(time.monotonic() - started) * 1000:.0f} ms")
        with pytest.raises(nats.errors.Error):  # and it cannot come back
            await nats.connect(
                settings.nats_url,
                user_credentials=str(creds),
                tls=settings.nats_tls(),
                allow_reconnect=False,
                connect_timeout=3,
            )
        gc.collect()  # the refused socket, collected under this test's filter
    finally:
        await nc.close()
        await push_account(settings.nats_url, system, issuer.account_jwt(), tls=settings.nats_tls())
