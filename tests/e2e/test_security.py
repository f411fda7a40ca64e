"""Attacks on the running platform: every forged, tampered, stale or misused token is
refused with 4401 on the WebSocket and 401 over HTTP; another tenant's (or user's)
thread, run and events are `not_found`, and each probe is audited."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import sys
import time
import uuid
from typing import Any

import asyncpg
import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.exceptions import ConnectionClosed

from apex_contracts import new_id
from tests.e2e.platform import Platform, User
from tests.e2e.wsclient import open_socket, recv, send, until_terminal


async def _signing_key(platform: Platform) -> tuple[str, Any]:
    conn = await asyncpg.connect(platform.recorded_env()["APEX_POSTGRES_DSN"])
    try:
        row = await conn.fetchrow(
            "SELECT kid, private_pem FROM auth.signing_keys WHERE activated_at IS NOT NULL "
            "AND retired_at IS NULL ORDER BY activated_at DESC LIMIT 1"
        )
    finally:
        await conn.close()
    return row["kid"], serialization.load_pem_private_key(row["private_pem"].encode(), password=None)


def _claims(user: User) -> dict[str, Any]:
    return jwt.decode(user.access_token, options={"verify_signature": False})


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def _tampered(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return ".".join([header, _b64({**claims, **changes}), signature])


def _hmac_token(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """The classic key-confusion forgery (PyJWT refuses to make it, so it is made by hand)."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_b64(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


async def attack_tokens(platform: Platform) -> dict[str, tuple[str | None, str]]:
    """name -> (token, the reason a refusal must give)."""
    victim, other = platform.register(), platform.register()
    kid, key = await _signing_key(platform)
    good = _claims(victim)
    now = int(time.time())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    foreign = Ed25519PrivateKey.generate()

    def signed(claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid, **header})

    missing = {k: v for k, v in good.items() if k != "sid"}
    logged_out = platform.register()
    httpx.post(
        f"{platform.auth}/auth/logout",
        headers={"Authorization": f"Bearer {logged_out.access_token}"},
        timeout=10,
    ).raise_for_status()
    return {
        "no token": (None, "token_missing"),
        "garbage": ("not-a-jwt", "token_invalid"),
        "alg none": (f"{_b64({'alg': 'none', 'kid': kid})}.{_b64(good)}.", "token_invalid"),
        "hmac with the public key": (_hmac_token(good, public_pem, kid), "token_invalid"),
        "foreign key, same kid": (
            jwt.encode(good, foreign, algorithm="EdDSA", headers={"kid": kid}),
            "token_invalid",
        ),
        "tampered sub": (_tampered(victim.access_token, sub=other.user_id), "token_invalid"),
        "tampered tid": (_tampered(victim.access_token, tid=other.tenant_id), "token_invalid"),
        "tampered exp": (_tampered(victim.access_token, exp=now + 86_400), "token_invalid"),
        "tampered aud": (_tampered(victim.access_token, aud="someone-else"), "token_invalid"),
        "expired": (
            signed({**good, "iat": now - 4000, "nbf": now - 4000, "exp": now - 3000}),
            "token_expired",
        ),
        "not yet valid": (
            signed({**good, "nbf": now + 3600, "iat": now, "exp": now + 4000}),
            "token_invalid",
        ),
        "wrong issuer": (signed({**good, "iss": "https://evil.example"}), "token_invalid"),
        "wrong audience": (signed({**good, "aud": "other-service"}), "token_invalid"),
        "missing claims": (signed(missing), "token_invalid"),
        "refresh typ": (signed({**good, "typ": "refresh"}), "token_invalid"),
        "refresh token as access": (victim.refresh_token, "token_invalid"),
        "logged-out session": (logged_out.access_token, "session_revoked"),
    }


async def test_every_token_attack_is_refused_over_websocket_and_http(platform: Platform) -> None:
    attacks = await attack_tokens(platform)
    results = {}
    for name, (token, _reason) in attacks.items():
        ws = await open_socket(platform.ws_url, token)
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd is not None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        http = httpx.get(f"{platform.gateway}/api/v1/threads", headers=headers, timeout=10)
        results[name] = (
            closed.value.rcvd.code,
            closed.value.rcvd.reason,
            http.status_code,
            http.json()["error"]["code"],
        )
    expected = {name: (4401, reason, 401, reason) for name, (_token, reason) in attacks.items()}
    assert results == expected


async def test_key_rotation_keeps_old_and_new_tokens_valid(platform: Platform) -> None:
    before = platform.register()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "apex_auth",
        "rotate-keys",
        env=platform.recorded_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    assert proc.returncode == 0, output.decode()
    after = None
    for _ in range(50):  # the auth service picks the new key up from the database
        candidate = platform.register()
        if (
            jwt.get_unverified_header(candidate.access_token)["kid"]
            != jwt.get_unverified_header(before.access_token)["kid"]
        ):
            after = candidate
            break
        await asyncio.sleep(0.3)
    assert after is not None, "new tokens are signed with the new key"
    for user in (before, after):
        ws = await open_socket(platform.ws_url, user.access_token)
        assert (await recv(ws))["type"] == "session.ready"
        await ws.close()
        assert platform.api(user, "GET", "/api/v1/threads").status_code == 200


async def test_cross_tenant_probes_are_not_found_and_audited(platform: Platform) -> None:
    victim = platform.register()
    attacker = platform.register()
    ws = await open_socket(platform.ws_url, victim.access_token)
    await recv(ws)
    await send(
        ws, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": "cost overview please"}
    )
    accepted = await recv(ws)
    await until_terminal(ws, accepted["run_id"])
    await ws.close()
    thread_id, run_id = accepted["thread_id"], accepted["run_id"]
    unknown = new_id("thr")

    probes = {
        "GET thread": platform.api(attacker, "GET", f"/api/v1/threads/{thread_id}"),
        "GET events": platform.api(attacker, "GET", f"/api/v1/threads/{thread_id}/events"),
        "GET stream": platform.api(attacker, "GET", f"/api/v1/threads/{thread_id}/stream"),
        "POST message": platform.api(
            attacker,
            "POST",
            f"/api/v1/threads/{thread_id}/messages",
            json={"text": "hi"},
            headers={"Idempotency-Key": "probe-1"},
        ),
        "POST cancel": platform.api(attacker, "POST", f"/api/v1/runs/{run_id}/cancel"),
        "GET unknown thread": platform.api(attacker, "GET", f"/api/v1/threads/{unknown}"),
    }
    assert {name: (r.status_code, r.json()["error"]["code"]) for name, r in probes.items()} == {
        name: (404, "not_found") for name in probes
    }
    listed = platform.api(attacker, "GET", "/api/v1/threads").json()["threads"]
    assert thread_id not in [t["id"] for t in listed]
    socket = await open_socket(platform.ws_url, attacker.access_token)
    await recv(socket)
    for frame in (
        {"type": "thread.subscribe", "thread_id": thread_id, "after_seq": 0},
        {"type": "run.cancel", "run_id": run_id},
        {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": "hi", "thread_id": thread_id},
    ):
        await send(socket, frame)
        assert (await recv(socket))["code"] == "not_found", frame
    await socket.close()

    # Exactly one entry per probe, in the prober's tenant, naming the door it came through.
    thread, run = f"thread:{thread_id}", f"run:{run_id}"
    expected = sorted(
        [
            ("access.cross_tenant", thread, "GET /api/v1/threads/{thread_id}", True),
            ("access.cross_tenant", thread, "GET /api/v1/threads/{thread_id}/events", True),
            ("access.cross_tenant", thread, "GET /api/v1/threads/{thread_id}/stream", True),
            ("access.cross_tenant", thread, "POST /api/v1/threads/{thread_id}/messages", True),
            ("access.cross_tenant", run, "POST /api/v1/runs/{run_id}/cancel", True),
            ("access.denied", f"thread:{unknown}", "GET /api/v1/threads/{thread_id}", False),
            ("access.cross_tenant", thread, "ws thread.subscribe", True),
            ("access.cross_tenant", run, "ws run.cancel", True),
            ("access.cross_tenant", thread, "ws message.send", True),
        ]
    )
    entries: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        entries = _probes(platform, attacker)
        if len(entries) >= len(expected):
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)  # an extra entry would have arrived by now
    entries = _probes(platform, attacker)
    seen = sorted(
        (e["action"], e["target"], e["details"]["via"], e["details"]["owner_tenant_differs"]) for e in entries
    )
    assert seen == expected
    assert {(e["actor_user_id"], e["outcome"], e["service"]) for e in entries} == {
        (attacker.user_id, "denied", "gateway")
    }
    assert len({e["session_id"] for e in entries}) == 1 and entries[0]["session_id"]
    victim_view = platform.api(victim, "GET", "/api/v1/audit").json()["entries"]
    assert not any(e.get("actor_user_id") == attacker.user_id for e in victim_view), "audit is per tenant"


def _probes(platform: Platform, who: User) -> list[dict[str, Any]]:
    return [
        e
        for action in ("access.cross_tenant", "access.denied")
        for e in platform.api(who, "GET", f"/api/v1/audit?action={action}").json()["entries"]
    ]


async def test_the_audit_log_is_for_admins_of_the_tenant_only(platform: Platform) -> None:
    admin = platform.register()
    actions: set[str] = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not {"auth.register", "auth.login"} <= actions:
        response = platform.api(admin, "GET", "/api/v1/audit")
        assert response.status_code == 200
        actions = {e["action"] for e in response.json()["entries"]}
        await asyncio.sleep(0.3)
    assert {"auth.register", "auth.login"} <= actions
    member_email = f"m-{uuid.uuid4().hex[:6]}@example.com"
    invite = httpx.post(
        f"{platform.auth}/auth/invites",
        json={"email": member_email, "role": "member"},
        headers={"Authorization": f"Bearer {admin.access_token}"},
        timeout=10,
    )
    assert invite.status_code in (200, 201), invite.text
    joined = httpx.post(
        f"{platform.auth}/auth/register",
        timeout=10,
        json={
            "email": member_email,
            "password": "correct horse battery staple",
            "invite": invite.json()["invite_token"],
        },
    )
    assert joined.status_code in (200, 201), joined.text
    member_token = joined.json()["access_token"]
    refused = httpx.get(
        f"{platform.gateway}/api/v1/audit", headers={"Authorization": f"Bearer {member_token}"}
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")


async def test_an_external_oidc_issuer_is_trusted_beside_the_built_in_one(platform: Platform) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from apex_cli.embedded import free_ports
    from apex_runtime import serve_http

    company_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = orjson.loads(jwt.algorithms.RSAAlgorithm.to_jwk(company_key.public_key()))
    jwks_app = Starlette(
        routes=[Route("/jwks", lambda _: JSONResponse({"keys": [{**jwk, "kid": "c1", "alg": "RS256"}]}))]
    )
    jwks_port, gateway_port = free_ports(2)
    server, task = await serve_http(jwks_app, "127.0.0.1", jwks_port)
    gateway = platform.spawn_service(
        "gateway",
        APEX_GATEWAY_PORT=str(gateway_port),
        APEX_OIDC_ISSUER="https://login.acme.example",
        APEX_OIDC_AUDIENCE="apex-at-acme",
        APEX_OIDC_JWKS_URL=f"http://127.0.0.1:{jwks_port}/jwks",
        APEX_OIDC_TENANT_CLAIM="org",
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{gateway_port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
        now = int(time.time())
        claims = {
            "iss": "https://login.acme.example",
            "aud": "apex-at-acme",
            "sub": "alice",
            "org": "acme",
            "iat": now,
            "exp": now + 300,
        }
        url = f"ws://127.0.0.1:{gateway_port}/ws"
        ws = await open_socket(url, jwt.encode(claims, company_key, algorithm="RS256", headers={"kid": "c1"}))
        ready = await recv(ws)
        assert ready["type"] == "session.ready"
        assert ready["tenant_id"].startswith("ten_") and ready["user_id"].startswith("usr_")
        await ws.close()
        for bad in ({**claims, "aud": "other"}, {k: v for k, v in claims.items() if k != "org"}):
            ws = await open_socket(
                url, jwt.encode(bad, company_key, algorithm="RS256", headers={"kid": "c1"})
            )
            with pytest.raises(ConnectionClosed) as closed:
                await recv(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        builtin = platform.register()
        ws = await open_socket(url, builtin.access_token)
        assert (await recv(ws))["user_id"] == builtin.user_id, "the built-in issuer still works"
        await ws.close()
    finally:
        gateway.terminate()
        gateway.wait(30)
        server.should_exit = True
        await task
