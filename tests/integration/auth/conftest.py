"""The auth service against real Postgres, Redis and NATS, driven over HTTP.

Each test gets a fresh database and a flushed Redis (from tests/conftest.py); its
tenants, users and sessions are new ids, so its audit subjects are its own too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from apex_auth import AuthService, AuthSettings, build_app, open_service, run_background
from apex_cli.embedded import EmbeddedServer

CLIENT_IP = "203.0.113.7"
PASSWORD = "correct horse battery"

# Cheap Argon2 so the suite stays fast; tests about timing choose their own.
FAST_ARGON2 = {"auth_argon2_time_cost": 1, "auth_argon2_memory_kib": 8192,
               "auth_argon2_parallelism": 1}


@dataclass
class Auth:
    service: AuthService
    http: httpx.AsyncClient

    async def register(self, email: str | None = None, **body: Any) -> dict[str, Any]:
        payload = {"email": email or unique_email(), "password": PASSWORD, **body}
        if "invite" not in payload:
            payload.setdefault("tenant", "Acme")
        response = await self.http.post("/auth/register", json=payload)
        assert response.status_code == 201, response.text
        return {**response.json(), "email": payload["email"], "password": payload["password"]}

    async def login(self, email: str, password: str = PASSWORD, **kw: Any) -> httpx.Response:
        return await self.http.post("/auth/login", json={"email": email, "password": password}, **kw)

    async def get(self, path: str, token: str) -> httpx.Response:
        return await self.http.get(path, headers=bearer(token))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unique_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


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
