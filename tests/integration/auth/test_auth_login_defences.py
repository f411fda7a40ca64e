"""What an attacker meets at login and at every Bearer endpoint: throttling, answers
that do not tell accounts apart, and a token attack catalogue."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apex_auth import build_app
from apex_contracts import new_id
from apex_contracts.auth import REQUIRED_CLAIMS
from tests.integration.auth.auth_support import PASSWORD, Auth, bearer, error_code, unique_email

AuthFactory = Callable[..., AbstractAsyncContextManager[Auth]]


async def test_login_is_throttled_per_account_whether_or_not_it_exists(
    auth_factory: AuthFactory,
) -> None:
    async with auth_factory(auth_login_account_limit=3, auth_login_address_limit=100) as auth:
        user = await auth.register()
        ghost = unique_email()
        for email in (user["email"], ghost):
            for _ in range(3):
                assert (await auth.login(email, "wrong password!")).status_code == 401
        throttled = await auth.login(user["email"])  # the right password does not help now
        unknown = await auth.login(ghost)
        for response in (throttled, unknown):
            assert response.status_code == 429
            error = response.json()["error"]
            assert error["code"] == "rate_limited" and error["retryable"] is True
            assert 0 < error["details"]["retry_after_ms"] <= 15 * 60 * 1000
            assert 1 <= int(response.headers["retry-after"]) <= 15 * 60
        assert throttled.json()["error"].keys() == unknown.json()["error"].keys()
        other = await auth.register()
        assert (await auth.login(other["email"])).status_code == 200


async def test_login_is_throttled_per_client_address(auth_factory: AuthFactory) -> None:
    async with auth_factory(auth_login_account_limit=100, auth_login_address_limit=4) as auth:
        user = await auth.register()
        for _ in range(4):
            assert (await auth.login(unique_email(), "wrong password!")).status_code == 401
        assert (await auth.login(user["email"])).status_code == 429
        async with elsewhere(auth) as other_address:
            response = await other_address.post(
                "/auth/login", json={"email": user["email"], "password": PASSWORD}
            )
            assert response.status_code == 200


def elsewhere(auth: Auth) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_app(auth.service), client=("198.51.100.9", 1))
    return httpx.AsyncClient(transport=transport, base_url="http://auth")


async def test_unknown_email_and_wrong_password_get_the_same_answer_in_the_same_time(
    auth_factory: AuthFactory,
) -> None:
    realistic = {
        "auth_argon2_time_cost": 2,
        "auth_argon2_memory_kib": 19 * 1024,
        "auth_login_account_limit": 100,
        "auth_login_address_limit": 100,
    }
    async with auth_factory(**realistic) as auth:
        user = await auth.register()
        wrong, ghost = [], []
        for _ in range(6):
            for email, timings in ((user["email"], wrong), (unique_email(), ghost)):
                started = time.perf_counter()
                response = await auth.login(email, "wrong password!")
                timings.append((time.perf_counter() - started, response))
        answers = {(r.status_code, r.content, _shape(r.headers)) for _, r in wrong + ghost}
        assert len(answers) == 1
        assert wrong[0][1].json()["error"]["code"] == "invalid_credentials"
        ratio = statistics.median(t for t, _ in ghost) / statistics.median(t for t, _ in wrong)
        assert 0.6 < ratio < 1.6, ratio


def _shape(headers: httpx.Headers) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in headers.items() if k not in {"date"}))


# --- the token catalogue --------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


@pytest.fixture
async def victim(auth: Auth) -> AsyncIterator[dict[str, Any]]:
    user = await auth.register()
    yield {**user, "claims": jwt.decode(user["access_token"], options={"verify_signature": False})}


async def catalogue(auth: Auth, victim: dict[str, Any]) -> dict[str, str]:
    key = await auth.service.keys.signing_key()
    claims = victim["claims"]
    now = int(time.time())

    def signed(changes: dict[str, Any], drop: str | None = None, **header: Any) -> str:
        body = {k: v for k, v in {**claims, **changes}.items() if k != drop}
        return jwt.encode(body, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, **header})

    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header, payload, signature = victim["access_token"].split(".")
    tampered = json.loads(base64.urlsafe_b64decode(payload + "=="))
    cases = {
        "garbage": "garbage",
        "alg none": hand_made({"alg": "none", "kid": key.kid}, claims, lambda _: b""),
        "HMAC with the public key": hand_made(
            {"alg": "HS256", "kid": key.kid, "typ": "JWT"},
            claims,
            lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
        ),
        "foreign key, same kid": jwt.encode(
            claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": key.kid}
        ),
        "unknown kid": signed({}, kid="not-a-key-of-ours"),
        "expired": signed({"iat": now - 1000, "nbf": now - 1000, "exp": now - 100}),
        "not yet valid": signed({"nbf": now + 600}),
        "wrong issuer": signed({"iss": "https://evil.example"}),
        "wrong audience": signed({"aud": "someone-else"}),
        "typ refresh": signed({"typ": "refresh"}),
        "lives too long": signed({"exp": now + 7200}),
        "refresh token as access token": victim["refresh_token"],
        "session that does not exist": signed({"sid": new_id("ses")}),
        "tenant swapped under a valid signature": signed({"tid": new_id("ten")}),
    }
    for claim in REQUIRED_CLAIMS:
        cases[f"missing {claim}"] = signed({}, drop=claim)
    for claim, value in (
        ("sub", new_id("usr")),
        ("tid", new_id("ten")),
        ("exp", now + 800),
        ("aud", "apex-admin"),
    ):
        forged = b64(json.dumps({**tampered, claim: value}).encode())
        cases[f"tampered {claim}"] = f"{header}.{forged}.{signature}"
    return cases


async def test_every_forged_or_misused_token_is_refused(auth: Auth, victim: dict[str, Any]) -> None:
    assert (await auth.http.get("/auth/me")).json()["error"]["code"] == "token_missing"
    for name, token in (await catalogue(auth, victim)).items():
        response = await auth.get("/auth/me", token)
        assert response.status_code == 401, name
        expected = {
            "expired": "token_expired",
            "session that does not exist": "session_revoked",
            "tenant swapped under a valid signature": "session_revoked",
        }
        assert error_code(response) == expected.get(name, "token_invalid"), name
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert (await auth.get("/auth/me", victim["access_token"])).status_code == 200
    await auth.http.post("/auth/logout", headers=bearer(victim["access_token"]))
    after_logout = await auth.get("/auth/me", victim["access_token"])
    assert error_code(after_logout) == "session_revoked"
