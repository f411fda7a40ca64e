"""Closing an account (``DELETE /auth/me``, the auth part of erasing a user): every
session revoked in Postgres, Redis and the broadcast; nothing personal of the user left
in any table of the ``auth`` schema; the email free to register again."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from apex_contracts.auth import revoked_session_key
from tests.integration.auth.auth_support import Auth, bearer, error_code
from tests.integration.auth.test_auth_sessions import revocations


async def test_closing_an_account_leaves_nothing_of_the_user(auth: Auth) -> None:
    user = await auth.register(tenant="Acme Closing")
    second = (await auth.login(user["email"])).json()
    invited = await auth.http.post(
        "/auth/invites",
        json={"email": "colleague-closing@example.com", "role": "member"},
        headers=bearer(user["access_token"]),
    )
    assert invited.status_code == 201, invited.text
    me = (await auth.get("/auth/me", user["access_token"])).json()
    listed = (await auth.get("/auth/sessions", user["access_token"])).json()["sessions"]
    sessions = {s["id"] for s in listed}
    assert len(sessions) == 2

    async with revocations(auth) as heard:
        closed = await auth.http.delete("/auth/me", headers=bearer(user["access_token"]))
        assert closed.status_code == 204, closed.text
        notices = []
        async with asyncio.timeout(5):
            while {n.session_id for n in notices} != sessions:
                notices.append(await heard.get())
        assert {n.reason for n in notices} == {"erased"}
    for session_id in sessions:
        assert await auth.service.redis.exists(revoked_session_key(session_id))

    for token in (user["access_token"], second["access_token"]):
        answer = await auth.get("/auth/me", token)
        assert answer.status_code == 401 and error_code(answer) == "session_revoked"
    assert (await auth.http.delete("/auth/me", headers=bearer(user["access_token"]))).status_code == 401
    assert (await auth.login(user["email"])).status_code == 401

    async with auth.service.db.engine.connect() as conn:
        tables = (
            await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'auth'"))
        ).scalars()
        for table in tables:
            rows = (await conn.execute(text(f"SELECT x::text FROM auth.{table} x"))).scalars().all()
            for needle in (me["user_id"], user["email"], "Acme Closing", "colleague-closing@example.com"):
                assert not [r for r in rows if needle in r], f"{needle} left in auth.{table}"

    again = await auth.register(email=user["email"], tenant="Acme Again")
    assert again["user_id"] != me["user_id"]
