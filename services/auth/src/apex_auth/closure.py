"""Closing an account (the auth part of erasing a user): every session revoked (its
sockets closed with 4401 ``session_revoked`` by every gateway), and every personal
record auth holds deleted: the user (email, password hash, roles), the sessions (their
addresses and user agents) and refresh tokens, the invites the user sent or accepted,
the user's facts still in the audit outbox, the login throttle counters of the email;
a tenant left without users keeps no name. Nothing of the user remains in ``auth``.

The revocations are mirrored to Redis inside the transaction (a token of the account is
refused even if the commit is the last thing that happens) and broadcast after it."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from sqlalchemy import delete, exists, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from apex_auth.db import Database
from apex_auth.model import Client, Principal
from apex_auth.revocation import Actor, Revocations
from apex_auth.serviceaccounts.store import forget_admin
from apex_auth.tables import invites, refresh_tokens, sessions, tenants, users
from apex_auth.throttle import Limit, Throttle, account_key
from apex_contracts import AuthFailed, ErrorCode

log = logging.getLogger(__name__)

# The user's facts not yet relayed (or relayed: the outbox is auth's own copy): by actor,
# by target, and by the email they name (an invite, a registration).
_OUTBOX_OF_USER = text("""
    DELETE FROM auth.audit_outbox
    WHERE entry->>'actor_user_id' = :user_id
       OR strpos(coalesce(entry->>'target', ''), :user_id) > 0
       OR strpos(entry::text, :email) > 0
""")


class AccountClosure:
    def __init__(
        self, db: Database, revocations: Revocations, throttle: Throttle, limits: dict[str, Limit]
    ) -> None:
        self._db = db
        self._revocations = revocations
        self._throttle = throttle
        self._limits = limits

    async def close(self, principal: Principal, client: Client) -> dict[str, int]:
        """Closes the caller's account; returns what went, by kind. AuthFailed when the
        account is already gone."""
        async with self._db.transaction() as conn:
            user = (
                await conn.execute(
                    select(users.c.id, users.c.tenant_id, users.c.email)
                    .where(users.c.id == principal.user_id, users.c.tenant_id == principal.tenant_id)
                    .with_for_update()
                )
            ).first()
            if user is None:
                raise AuthFailed(code=ErrorCode.SESSION_REVOKED)
            live = (
                await conn.execute(
                    select(sessions.c.id).where(
                        sessions.c.user_id == user.id, sessions.c.revoked_at.is_(None)
                    )
                )
            ).scalars()
            notices = await self._revocations.revoke(
                conn,
                list(live),
                reason="erased",
                actor=Actor(principal.user_id, principal.session_id, client.ip),
            )
            removed = await _delete_personal_records(conn, user.id, user.tenant_id, user.email)
        await self._revocations.announce(notices)
        await self._forget_throttles(user.email)
        log.info("account %s closed: %s", user.id, removed)
        return {"sessions_revoked": len(notices), **removed}

    async def _forget_throttles(self, email: str) -> None:
        limit = self._limits.get("login_account")
        if limit is None:
            return
        try:
            await self._throttle.reset(self._throttle.counter(limit, account_key(email)))
        except RedisError as exc:  # the counter expires with its window anyway
            log.warning("login throttle of a closed account not reset: %r", exc)


async def _delete_personal_records(
    conn: AsyncConnection, user_id: str, tenant_id: str, email: str
) -> dict[str, int]:
    own_sessions = select(sessions.c.id).where(sessions.c.user_id == user_id).scalar_subquery()
    tokens = await conn.execute(delete(refresh_tokens).where(refresh_tokens.c.session_id.in_(own_sessions)))
    gone_sessions = await conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
    gone_invites = await conn.execute(
        delete(invites).where(
            (invites.c.created_by == user_id)
            | (invites.c.accepted_by == user_id)
            | (invites.c.email == email)
        )
    )
    outbox = await conn.execute(_OUTBOX_OF_USER, {"user_id": user_id, "email": email})
    await conn.execute(delete(users).where(users.c.id == user_id))
    await forget_admin(conn, user_id)  # the tenant's service accounts stay, unattributed
    others = await conn.scalar(select(exists().where(users.c.tenant_id == tenant_id)))
    if not others:  # the name the user gave their organisation goes with its last member
        await conn.execute(
            update(tenants).where(tenants.c.id == tenant_id).values(name=func.concat("closed ", tenants.c.id))
        )
    return {
        "refresh_tokens": int(tokens.rowcount or 0),
        "sessions": int(gone_sessions.rowcount or 0),
        "invites": int(gone_invites.rowcount or 0),
        "audit_outbox": int(outbox.rowcount or 0),
    }
