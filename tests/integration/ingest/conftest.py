"""One platform slice per test module for the ingest tests: its own NATS (stream and
durable names are fixed), a migrated Postgres database, Redis, a database of the
session's embedded ClickHouse, persistence (the usage ledger and its read API) and the
ingest service in process, on free ports, with a JWKS of the test's own keys. The
ingest service's clock can be moved (connector windows are days)."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from apex_contracts import new_id
from apex_contracts.queries import Q_USAGE_SUMMARY, UsageSummary
from apex_ingest.bootstrap import IngestService
from apex_ingest.settings import IngestSettings
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.bootstrap import PersistenceService
from apex_persistence.settings import PersistenceSettings
from apex_runtime import Bus, serve_http
from tests.integration.ingest.tokens import TokenIssuer


class Clock:
    """The ingest service's wall clock, movable by the test."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Tenant:
    tenant_id: str
    user_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Slice:
    nats_url: str
    pg_dsn: str
    redis_url: str
    analytics: ChdbStore
    issuer: TokenIssuer
    jwks_url: str
    persistence: PersistenceService
    clock: Clock
    services: list[IngestService] = field(default_factory=list)

    @property
    def ingest(self) -> IngestService:
        return self.services[0]

    @property
    def bus(self) -> Bus:
        return self.persistence.host.bus

    def url(self, service: IngestService | None = None) -> str:
        return f"http://127.0.0.1:{(service or self.ingest).host.bound_port}"

    def tenant(self, *, roles: tuple[str, ...] = ("admin",)) -> Tenant:
        tenant_id, user_id = new_id("ten"), new_id("usr")
        return Tenant(tenant_id, user_id, self.issuer.token(tenant_id, user_id, roles=roles))

    def settings(self, **overrides: Any) -> IngestSettings:
        values: dict[str, Any] = {
            "env": "test",
            "nats_url": self.nats_url,
            "redis_url": self.redis_url,
            "auth_url": self.jwks_url,
            "ingest_port": 0,
            "instance_id": f"ingest-{uuid.uuid4().hex[:6]}",
            "log_format": "text",
            "connector_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "connector_allowed_hosts": ["127.0.0.1"],
            "connector_poll_s": 0.2,
            "connector_settle_s": 0,
            "connector_timeout_s": 5,
            **overrides,
        }
        return IngestSettings(**values)

    async def start_ingest(self, **overrides: Any) -> IngestService:
        service = IngestService(self.settings(**overrides), clock=self.clock)
        await service.start()
        self.services.append(service)
        return service

    async def summary(self, tenant: Tenant) -> dict[str, Any]:
        return await self.bus.query_raw(Q_USAGE_SUMMARY, UsageSummary(tenant_id=tenant.tenant_id))

    async def stored(self, tenant: Tenant, requests: int, timeout: float = 60.0) -> dict[str, Any]:
        """The tenant's usage summary once it counts ``requests`` calls (ingest is asynchronous)."""
        async with asyncio.timeout(timeout):
            while True:
                summary = await self.summary(tenant)
                if summary["requests"] >= requests:
                    return summary
                await asyncio.sleep(0.2)


async def _database(postgres_url: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = postgres_url.rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
async def ingest_chdb(infra_root: Path) -> AsyncIterator[ChdbStore]:
    # The process's one embedded engine: every suite in this session opens the same path.
    store = ChdbStore(infra_root / "chdb", "apex_unused")
    yield store
    await store.close()


@pytest.fixture(scope="module")
async def stack(
    server_factory: Callable[[str], Any], postgres: Any, redis_server: Any, ingest_chdb: ChdbStore
) -> AsyncIterator[Slice]:
    nats = server_factory("nats")
    analytics = ingest_chdb.sibling(f"t_{uuid.uuid4().hex[:12]}")
    pg_dsn = await _database(postgres.url)
    persistence = PersistenceService(
        PersistenceSettings(
            nats_url=nats.url,
            postgres_dsn=pg_dsn,
            redis_url=redis_server.url,
            persistence_port=0,
            instance_id="persistence-ingest-test",
            clickhouse_database=analytics.database,
            log_format="text",
        ),
        analytics=analytics,
    )
    await persistence.start()
    issuer = TokenIssuer()
    jwks_server, jwks_task = await serve_http(issuer.app(), "127.0.0.1", 0)
    jwks_port = jwks_server.servers[0].sockets[0].getsockname()[1]
    made = Slice(
        nats.url,
        pg_dsn,
        redis_server.url,
        analytics,
        issuer,
        f"http://127.0.0.1:{jwks_port}",
        persistence,
        Clock(),
    )
    await made.start_ingest()
    yield made
    for service in made.services:
        await service.stop()
    await persistence.stop()
    for listener in jwks_server.servers:
        listener.close()
    jwks_server.should_exit = True
    await jwks_task
    await analytics.command("DROP DATABASE IF EXISTS $db")


@pytest.fixture
async def http(stack: Slice) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url(), timeout=60) as client:
        yield client
