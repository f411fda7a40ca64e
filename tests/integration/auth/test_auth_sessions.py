"""Refresh rotation and reuse detection, logout, own sessions, password change; and that
every revocation reaches Redis and the NATS broadcast the gateways listen to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson

from apex_contracts.auth import ACCESS_TOKEN_MAX_TTL_S, SessionRevoked, revoked_session_key
from apex_contracts.subjects import CTL_SESSION_REVOKED
from tests.integration.auth.auth_support import PASSWORD, Auth, bearer, error_code


@asynccontextmanager
async def revocations(auth: Auth) -> AsyncIterator[asyncio.Queue[SessionRevoked]]:
    """Every SessionRevoked broadcast while the block runs, as a gateway would see it."""
    queue: asyncio.Queue[SessionRevoked] = asyncio.Queue()

    async def on_message(msg: object) -> None:
        queue.put_nowait(SessionRevoked.model_validate(orjson.loads(msg.data)))  # type: ignore[attr-defined]

    sub = await auth.service.bus.nc.subscribe(CTL_SESSION_REVOKED, cb=on_message)
    await auth.service.bus.nc.flush()
    try:
        yield queue
    finally:
        await sub.unsubscribe()


async def broadcast_for(queue: asyncio.Queue[SessionRevoked], session_id: str) -> SessionRevoked:
    async with asyncio.timeout(2):
        while True:
            notice = await queue.get()
            if notice.session_id == session_id:
                return notice


async def assert_revoked_everywhere(auth: Auth, session_id: str) -> None:
    ttl = await auth.service.redis.ttl(revoked_session_key(session_id))
    assert ttl >= ACCESS_TOKEN_MAX_TTL_S


async def session_of(auth: Auth, access_token: str) -> str:
    listed = (await auth.get("/auth/sessions", access_token)).json()["sessions"]
    return next(s["id"] for s in listed if s["current"])


async def test_refresh_rotates_and_a_reused_token_revokes_the_session(auth: Auth) -> None:
    user = await auth.register()
    sid = await session_of(auth, user["access_token"])

    rotated = await auth.http.post("/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != user["refresh_token"]
    assert (await auth.get("/auth/me", second["access_token"])).status_code == 200

    async with revocations(auth) as broadcasts:
        reused = await auth.http.post("/auth/refresh", json={"refresh_token": user["refresh_token"]})
        assert reused.status_code == 401 and error_code(reused) == "session_revoked"
        notice = await broadcast_for(broadcasts, sid)
    assert notice.reason == "refresh_reused" and notice.user_id == user["user_id"]
    assert notice.tenant_id == user["tenant_id"]
    await assert_revoked_everywhere(auth, sid)

    # Both holders of the family are out: the thief's and the victim's tokens alike.
    refused = await auth.get("/auth/me", second["access_token"])
    assert refused.status_code == 401 and error_code(refused) == "session_revoked"
    latest = await auth.http.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert latest.status_code == 401 and error_code(latest) == "session_revoked"


async def test_refresh_refuses_what_is_not_a_refresh_token(auth: Auth) -> None:
    user = await auth.register()
    for token in (user["access_token"], "apxr_made-up", "garbage"):
        response = await auth.http.post("/auth/refresh", json={"refresh_token": token})
        assert response.status_code == 401 and error_code(response) == "token_invalid"
    as_access = await auth.get("/auth/me", user["refresh_token"])
    assert as_access.status_code == 401 and error_code(as_access) == "token_invalid"


async def test_logout_revokes_the_session(auth: Auth) -> None:
    user = await auth.register()
    sid = await session_of(auth, user["access_token"])
    async with revocations(auth) as broadcasts:
        response = await auth.http.post("/auth/logout", headers=bearer(user["access_token"]))
        assert response.status_code == 204
        notice = await broadcast_for(broadcasts, sid)
    assert notice.reason == "logout"
    await assert_revoked_everywhere(auth, sid)
    after = await auth.get("/auth/me", user["access_token"])
    assert after.status_code == 401 and error_code(after) == "session_revoked"
    refresh = await auth.http.post("/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert refresh.status_code == 401


async def test_own_sessions_are_listed_and_revocable_and_others_are_not_found(auth: Auth) -> None:
    user = await auth.register()
    phone = (await auth.login(user["email"], headers={"user-agent": "phone/1.0"})).json()
    listed = (await auth.get("/auth/sessions", user["access_token"])).json()["sessions"]
    assert len(listed) == 2 and sum(s["current"] for s in listed) == 1
    phone_session = next(s for s in listed if s["user_agent"] == "phone/1.0")
    assert phone_session["ip"] == "203.0.113.7"

    async with revocations(auth) as broadcasts:
        deleted = await auth.http.delete(
            f"/auth/sessions/{phone_session['id']}", headers=bearer(user["access_token"])
        )
        assert deleted.status_code == 204
        await broadcast_for(broadcasts, phone_session["id"])
    assert (await auth.get("/auth/me", phone["access_token"])).status_code == 401
    remaining = (await auth.get("/auth/sessions", user["access_token"])).json()["sessions"]
    assert [s["current"] for s in remaining] == [True]

    stranger = await auth.register()
    for target in (phone_session["id"], await session_of(auth, stranger["access_token"]), "x"):
        probe = await auth.http.delete(f"/auth/sessions/{target}", headers=bearer(user["access_token"]))
        assert probe.status_code == 404 and error_code(probe) == "not_found"
    assert (await auth.get("/auth/me", stranger["access_token"])).status_code == 200


async def test_password_change_revokes_the_other_sessions(auth: Auth) -> None:
    user = await auth.register()
    other = (await auth.login(user["email"])).json()
    other_sid = await session_of(auth, other["access_token"])
    headers = bearer(user["access_token"])

    wrong = await auth.http.post(
        "/auth/password",
        headers=headers,
        json={"current_password": "not my password", "new_password": "a brand new password"},
    )
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_credentials"
    weak = await auth.http.post(
        "/auth/password", headers=headers, json={"current_password": PASSWORD, "new_password": "short"}
    )
    assert weak.status_code == 422

    async with revocations(auth) as broadcasts:
        changed = await auth.http.post(
            "/auth/password",
            headers=headers,
            json={"current_password": PASSWORD, "new_password": "a brand new password"},
        )
        assert changed.status_code == 204
        notice = await broadcast_for(broadcasts, other_sid)
    assert notice.reason == "password_changed"
    assert (await auth.get("/auth/me", other["access_token"])).status_code == 401
    assert (await auth.get("/auth/me", user["access_token"])).status_code == 200
    assert (await auth.login(user["email"])).status_code == 401
    assert (await auth.login(user["email"], "a brand new password")).status_code == 200
