"""Real servers for the whole test session: NATS (JetStream), PostgreSQL and Valkey start
once, on free ports, in a temporary folder; each test gets its own namespace (a fresh
database, a flushed Redis database, its own tenant ids). A test that needs to kill or
pause a server starts its own with the ``*_factory`` fixtures; ``nats_cluster3`` is a
private three-node JetStream cluster.

In-process code runs with the ``asyncio.wait_for`` the services run with (3.12's
behaviour, ``apex_runtime.waitfor``).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from apex_cli.embedded import EmbeddedServer, nats_server, valkey_server
from apex_cli.embedded_postgres import postgres_server
from apex_cli.natscluster import NatsCluster, nats_cluster
from apex_runtime import waitfor


def pytest_configure(config: pytest.Config) -> None:
    waitfor.install()


@pytest.fixture(scope="session")
def infra_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="apex-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def server_factory(infra_root: Path) -> Iterator[Callable[[str], EmbeddedServer]]:
    """Starts a private server (``nats``, ``postgres``, ``redis``); stopped at session end."""
    started: list[EmbeddedServer] = []
    makers = {
        "nats": nats_server,
        "postgres": lambda d: postgres_server(d, durable=False),
        "redis": lambda d: valkey_server(d, durable=False),
    }

    def make(kind: str) -> EmbeddedServer:
        server = makers[kind](infra_root / f"{kind}-{uuid.uuid4().hex[:8]}").start()
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="session")
def nats_cluster_factory(infra_root: Path) -> Iterator[Callable[[], NatsCluster]]:
    """Starts a private three-node JetStream cluster on loopback (``NatsCluster``: ``url``
    lists every node for clients, ``node(name)`` kills, pauses or restarts one,
    ``stream_leader`` and ``stream_detail`` read the nodes' monitoring); every cluster it
    started is stopped at session end. Create streams with 3 replicas on it
    (``Bus(..., replicas=3)``)."""
    started: list[NatsCluster] = []

    def make() -> NatsCluster:
        cluster = nats_cluster(infra_root / f"cluster-{uuid.uuid4().hex[:8]}", 3).start()
        started.append(cluster)
        return cluster

    yield make
    for cluster in reversed(started):
        cluster.stop()


@pytest.fixture
def nats_cluster3(nats_cluster_factory: Callable[[], NatsCluster]) -> Iterator[NatsCluster]:
    """A fresh three-node cluster for this test (it may kill nodes), stopped afterwards."""
    cluster = nats_cluster_factory()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def nats(server_factory: Callable[[str], EmbeddedServer]) -> EmbeddedServer:
    return server_factory("nats")


@pytest.fixture(scope="session")
def postgres(server_factory: Callable[[str], EmbeddedServer]) -> EmbeddedServer:
    return server_factory("postgres")


@pytest.fixture(scope="session")
def redis_server(server_factory: Callable[[str], EmbeddedServer]) -> EmbeddedServer:
    return server_factory("redis")


@pytest.fixture
async def pg_dsn(postgres: EmbeddedServer) -> AsyncIterator[str]:
    """A fresh, empty database for this test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = postgres.url.rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield postgres.url.rsplit("/", 1)[0] + f"/{name}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def redis_url(redis_server: EmbeddedServer) -> AsyncIterator[str]:
    client = aioredis.from_url(redis_server.url)
    await client.flushdb()
    await client.aclose()
    yield redis_server.url
