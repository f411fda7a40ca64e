"""Helpers of the auth integration tests: the running service and its HTTP client."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from apex_auth import AuthService

CLIENT_IP = "203.0.113.7"
PASSWORD = "correct horse battery"

# Cheap Argon2 so the suite stays fast; tests about timing choose their own.
FAST_ARGON2 = {"auth_argon2_time_cost": 1, "auth_argon2_memory_kib": 8192, "auth_argon2_parallelism": 1}


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
