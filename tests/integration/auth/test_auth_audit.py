"""Audit facts travel from the outbox, written with the action, to the APEX_AUDIT
stream; a NATS outage delays them and loses none."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from prometheus_client import REGISTRY
from sqlalchemy import func, select

from apex_auth.tables import audit_outbox
from apex_cli.embedded import EmbeddedServer
from apex_contracts.audit import AuditEntry, audit_subject
from apex_contracts.streams import APEX_AUDIT
from tests.integration.auth.auth_support import Auth, bearer, unique_email


async def published(auth: Auth, tenant_id: str, *, at_least: set[str], timeout: float) -> list[AuditEntry]:
    """The tenant's entries on the stream, once they include every action of ``at_least``."""
    async with asyncio.timeout(timeout):
        while True:
            entries = [
                AuditEntry.model_validate_json(data)
                async for _, data in auth.service.bus.read_subject(
                    audit_subject(tenant_id), stream=APEX_AUDIT.name
                )
            ]
            if at_least <= {e.action for e in entries}:
                return entries
            await asyncio.sleep(0.1)


async def unsent(auth: Auth) -> int:
    async with auth.service.db.engine.connect() as conn:
        return int(
            await conn.scalar(
                select(func.count())
                .select_from(audit_outbox)
                .where(audit_outbox.c.sent_at.is_(None), audit_outbox.c.tenant_id.is_not(None))
            )
            or 0
        )


def unknown_account_failures() -> float:
    return REGISTRY.get_sample_value("apex_auth_logins_total", {"outcome": "unknown_account"}) or 0.0


async def test_security_facts_reach_the_audit_stream_once_each(auth: Auth) -> None:
    admin = await auth.register()
    assert (await auth.login(admin["email"], "wrong password!")).status_code == 401
    before = unknown_account_failures()
    assert (await auth.login(unique_email(), "wrong password!")).status_code == 401
    session = (await auth.login(admin["email"])).json()
    refreshed = (
        await auth.http.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})
    ).json()
    await auth.http.post(
        "/auth/invites", json={"email": unique_email()}, headers=bearer(admin["access_token"])
    )
    await auth.http.post("/auth/logout", headers=bearer(refreshed["access_token"]))
    await auth.service.keys.rotate()

    expected = {
        "auth.register",
        "auth.login_failed",
        "auth.login",
        "auth.refresh",
        "auth.invite_created",
        "auth.logout",
        "auth.session_revoked",
    }
    entries = await published(auth, admin["tenant_id"], at_least=expected, timeout=10)
    assert len({e.id for e in entries}) == len(entries)
    assert {e.tenant_id for e in entries} == {admin["tenant_id"]}
    assert {e.service for e in entries} == {"auth"}
    failed = next(e for e in entries if e.action == "auth.login_failed")
    assert failed.actor_user_id == admin["user_id"] and failed.source_ip == "203.0.113.7"
    assert unknown_account_failures() == before + 1
    assert await unsent(auth) == 0

    async with auth.service.db.engine.connect() as conn:
        rotated = (
            await conn.execute(
                select(audit_outbox).where(audit_outbox.c.entry["action"].astext == "auth.key_rotated")
            )
        ).one()
    assert rotated.tenant_id is None and rotated.sent_at is None


async def test_audit_entries_wait_out_a_nats_outage(
    auth_factory: Callable[..., AbstractAsyncContextManager[Auth]],
    server_factory: Callable[[str], EmbeddedServer],
) -> None:
    private_nats = server_factory("nats")
    async with auth_factory(nats_url=private_nats.url) as auth:
        await asyncio.to_thread(private_nats.stop)
        user = await auth.register()
        assert (await auth.login(user["email"])).status_code == 200
        await asyncio.sleep(0.5)
        assert await unsent(auth) >= 2
        await asyncio.to_thread(private_nats.start)
        await published(auth, user["tenant_id"], at_least={"auth.register", "auth.login"}, timeout=20)
        async with asyncio.timeout(5):
            while True:
                if await unsent(auth) == 0:
                    break
                await asyncio.sleep(0.1)
