"""The embedded bus of ``apex up --nats-tls`` with ``APEX_NATS_CLUSTER=3``: three nodes in
operator mode whose routes are mutual TLS (each node verifies its peers' certificate
against the development CA) and whose clients speak TLS: a service's user, verifying the
server with the CA, gets a stream replicated on all three nodes (the routes work)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig
from nats.js.errors import ServiceUnavailableError

from apex_cli.natsauth import NatsAuth
from apex_cli.natscluster import NatsCluster, nats_cluster
from apex_cli.natstls import TlsFiles, ensure_dev_tls
from apex_runtime import ServiceSettings, nats_servers

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsCluster, NatsAuth, TlsFiles]]:
    root: Path = tmp_path_factory.mktemp("nats-tls-cluster")
    auth = NatsAuth.ensure(root / "nats-auth")
    tls = ensure_dev_tls(root / "nats-auth" / "tls", ("localhost", "127.0.0.1"))
    cluster = nats_cluster(root, 3, auth=auth, tls=tls).start()
    yield cluster, auth, tls
    cluster.stop()


async def test_routes_and_clients_are_tls_and_a_stream_spans_the_three_nodes(
    tls_cluster: tuple[NatsCluster, NatsAuth, TlsFiles],
) -> None:
    cluster, auth, tls = tls_cluster
    assert all(url.startswith("tls://") for url in nats_servers(cluster.url))
    for node in cluster.nodes:
        varz = cluster.monitor(node, "/varz")
        assert varz["tls_required"] is True, "clients"
        assert (varz["cluster"]["tls_required"], varz["cluster"]["tls_verify"]) == (True, True), "routes"
    settings = ServiceSettings(
        nats_url=cluster.url, nats_creds=auth.creds_path("persistence"), nats_ca=tls.ca
    )
    nc = await nats.connect(nats_servers(settings.nats_url), **settings.nats_options())
    try:
        js = nc.jetstream()
        name = "APEX_TLS_PROBE"
        admin = await nats.connect(
            nats_servers(cluster.url), user_credentials=str(auth.creds_path("admin")), tls=settings.nats_tls()
        )
        try:
            await _until_jetstream(
                lambda: admin.jetstream().add_stream(
                    StreamConfig(name=name, subjects=["probe.tls"], num_replicas=3)
                )
            )
            info = await admin.jetstream().stream_info(name)
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2
        finally:
            await admin.close()
        assert (await js.account_info()).streams >= 1
    finally:
        await nc.close()


async def _until_jetstream(call: Any, timeout_s: float = 60.0) -> Any:
    """``call()``, again while a node just started has not enabled the account's JetStream
    yet (503, on a loaded machine)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            return await call()
        except ServiceUnavailableError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
