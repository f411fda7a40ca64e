"""The auth service against real Postgres, Redis and NATS, driven over HTTP.

Each test gets a fresh database and a flushed Redis (from tests/conftest.py); its
tenants, users and sessions are new ids, so its audit subjects are its own too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

from apex_auth import AuthSettings, build_app, open_service, run_background
from apex_cli.embedded import EmbeddedServer
from tests.integration.auth.auth_support import CLIENT_IP, FAST_ARGON2, Auth


@pytest.fixture
def auth_settings(pg_dsn: str, redis_url: str, nats: EmbeddedServer) -> Callable[..., AuthSettings]:
    def make(**overrides: Any) -> AuthSettings:
        values: dict[str, Any] = {
            "env": "test",
            "postgres_dsn": pg_dsn,
            "postgres_pool_size": 3,
            "redis_url": redis_url,
            "nats_url": nats.url,
            "auth_port": 0,
            "auth_audit_poll_s": 0.2,
            "instance_id": f"test-{uuid.uuid4().hex[:8]}",
            **FAST_ARGON2,
            **overrides,
        }
        return AuthSettings(**values)

    return make


@pytest.fixture
def auth_factory(
    auth_settings: Callable[..., AuthSettings],
) -> Callable[..., AbstractAsyncContextManager[Auth]]:
    """``async with auth_factory(**settings) as auth``: the service with its background
    tasks running, and an HTTP client on its app."""

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Auth]:
        async with open_service(auth_settings(**overrides)) as service:
            stop = asyncio.Event()
            tasks = await run_background(service, stop)
            transport = httpx.ASGITransport(app=build_app(service), client=(CLIENT_IP, 40000))
            try:
                async with httpx.AsyncClient(transport=transport, base_url="http://auth") as http:
                    yield Auth(service, http)
            finally:
                stop.set()
                await asyncio.gather(*tasks)

    return make


@pytest.fixture
async def auth(auth_factory: Callable[..., AbstractAsyncContextManager[Auth]]) -> AsyncIterator[Auth]:
    async with auth_factory() as running:
        yield running
