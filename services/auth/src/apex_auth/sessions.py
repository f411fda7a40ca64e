"""Sessions: opening one, refreshing it with rotation and reuse detection, signing out,
listing and revoking one's own, and authenticating a Bearer token against them.

A session is a family of refresh tokens: each refresh marks the presented token used
and issues the next generation. Presenting a used token again means two parties hold
the family, so the whole session is revoked (``refresh_reused``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from apex_auth import metrics
from apex_auth.audit import AuditRecord, record
from apex_auth.db import Database
from apex_auth.model import Client, Principal, SessionView
from apex_auth.revocation import Actor, Revocations
from apex_auth.tables import refresh_tokens, sessions, users
from apex_auth.tokens import REFRESH_PREFIX, AccessTokens, Subject, digest, new_secret
from apex_contracts import AuthFailed, ErrorCode, NotFound, new_id, utcnow, validate_id
from apex_contracts.audit import AuditAction
from apex_contracts.auth import TokenPair
from apex_contracts.errors import InvalidId

_USER_AGENT_CHARS = 256


@dataclass(frozen=True, slots=True)
class Opened:
    subject: Subject
    refresh_token: str


class Sessions:
    def __init__(
        self,
        db: Database,
        tokens: AccessTokens,
        revocations: Revocations,
        *,
        refresh_ttl_s: int,
    ) -> None:
        self._db = db
        self._tokens = tokens
        self._revocations = revocations
        self._refresh_ttl = timedelta(seconds=refresh_ttl_s)

    async def open(self, conn: AsyncConnection, user: Any, client: Client) -> Opened:
        """Starts a session for ``user`` (a row of ``auth.users``) in the caller's
        transaction, with its first refresh token."""
        now = utcnow()
        session_id = new_id("ses")
        await conn.execute(
            insert(sessions).values(
                id=session_id,
                tenant_id=user.tenant_id,
                user_id=user.id,
                created_at=now,
                last_seen_at=now,
                user_agent=(client.user_agent or "")[:_USER_AGENT_CHARS] or None,
                ip=client.ip,
            )
        )
        refresh = await self._add_refresh_token(conn, session_id, generation=1, now=now)
        return Opened(Subject(user.id, user.tenant_id, session_id, tuple(user.roles)), refresh)

    async def issue(self, opened: Opened) -> TokenPair:
        access = await self._tokens.mint(opened.subject)
        return TokenPair(
            access_token=access, refresh_token=opened.refresh_token, expires_in=self._tokens.ttl_s
        )

    async def refresh(self, token: str, client: Client) -> TokenPair:
        """Rotates ``token``; raises AuthFailed when it is unknown, expired, of a revoked
        session, or already used (and then revokes the session)."""
        if not token.startswith(REFRESH_PREFIX):
            metrics.REFRESHES.labels("invalid").inc()
            raise AuthFailed("The refresh token is not valid.")
        async with self._db.transaction() as conn:
            row = await self._locked_token(conn, digest(token))
            if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
                metrics.REFRESHES.labels("invalid").inc()
                raise _refused(row)
            if row.used_at is not None:
                notices = await self._revoke_reused(conn, row, client)
            else:
                notices = None
                opened = await self._rotate(conn, row, client)
        if notices is not None:
            await self._revocations.announce(notices)
            raise AuthFailed(
                "This refresh token was already used; the session is now signed out.",
                code=ErrorCode.SESSION_REVOKED,
            )
        metrics.REFRESHES.labels("success").inc()
        return await self.issue(opened)

    async def logout(self, principal: Principal, client: Client) -> None:
        async with self._db.transaction() as conn:
            notices = await self._revocations.revoke(
                conn, [principal.session_id], reason="logout", actor=_actor(principal, client)
            )
            await record(
                conn,
                AuditRecord(
                    action="auth.logout",
                    outcome="success",
                    tenant_id=principal.tenant_id,
                    actor_user_id=principal.user_id,
                    session_id=principal.session_id,
                    source_ip=client.ip,
                    target=principal.session_id,
                ),
            )
        await self._revocations.announce(notices)

    async def list_own(self, principal: Principal) -> list[SessionView]:
        """The caller's live sessions (not revoked, refresh token not expired), newest first."""
        latest = (
            select(func.max(refresh_tokens.c.expires_at))
            .where(refresh_tokens.c.session_id == sessions.c.id)
            .scalar_subquery()
        )
        query = (
            select(sessions)
            .where(
                sessions.c.tenant_id == principal.tenant_id,
                sessions.c.user_id == principal.user_id,
                sessions.c.revoked_at.is_(None),
                latest > utcnow(),
            )
            .order_by(sessions.c.created_at.desc())
        )
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            SessionView(
                row.id,
                row.created_at,
                row.last_seen_at,
                row.user_agent,
                row.ip,
                current=row.id == principal.session_id,
            )
            for row in rows
        ]

    async def revoke_own(self, principal: Principal, session_id: str, client: Client) -> None:
        """Revokes one of the caller's sessions. Anyone else's session, live or not, is
        answered ``not_found`` exactly like one that never existed, and the probe audited."""
        try:
            validate_id(session_id, "ses")
        except InvalidId as exc:
            raise NotFound("No such session.") from exc
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    select(sessions.c.tenant_id, sessions.c.user_id, sessions.c.revoked_at).where(
                        sessions.c.id == session_id
                    )
                )
            ).first()
            owned = row is not None and (row.tenant_id, row.user_id) == (
                principal.tenant_id,
                principal.user_id,
            )
            if row is not None and not owned:
                await _record_probe(conn, principal, client, session_id, row.tenant_id)
            notices = await self._revocations.revoke(
                conn,
                [session_id] if owned else [],
                reason="revoked_by_user",
                actor=_actor(principal, client),
            )
        if not notices:
            raise NotFound("No such session.")
        await self._revocations.announce(notices)

    async def authenticate(self, token: str) -> Principal:
        """The caller behind ``token``: a valid access token of a session that is live in
        Redis's revocation set and in Postgres. Raises AuthFailed otherwise."""
        claims = await self._tokens.verify(token)
        try:
            revoked = await self._revocations.is_revoked(claims.sid)
        except RedisError:
            revoked = False  # Postgres below is the authority; Redis is the fast path
        if not revoked:
            async with self._db.engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(sessions.c.revoked_at).where(
                            sessions.c.id == claims.sid,
                            sessions.c.user_id == claims.sub,
                            sessions.c.tenant_id == claims.tid,
                        )
                    )
                ).first()
            revoked = row is None or row.revoked_at is not None
        if revoked:
            metrics.TOKENS_REJECTED.labels(ErrorCode.SESSION_REVOKED.value).inc()
            raise AuthFailed(code=ErrorCode.SESSION_REVOKED)
        return Principal(claims.sub, claims.tid, claims.sid, tuple(claims.roles))

    async def _locked_token(self, conn: AsyncConnection, token_hash: bytes) -> Any:
        query = (
            select(
                refresh_tokens.c.token_hash,
                refresh_tokens.c.generation,
                refresh_tokens.c.expires_at,
                refresh_tokens.c.used_at,
                sessions.c.id.label("session_id"),
                sessions.c.revoked_at,
                users.c.id.label("user_id"),
                users.c.tenant_id,
                users.c.roles,
            )
            .join(sessions, sessions.c.id == refresh_tokens.c.session_id)
            .join(users, users.c.id == sessions.c.user_id)
            .where(refresh_tokens.c.token_hash == token_hash)
            .with_for_update(of=refresh_tokens)
        )
        return (await conn.execute(query)).first()

    async def _rotate(self, conn: AsyncConnection, row: Any, client: Client) -> Opened:
        now = utcnow()
        await conn.execute(
            update(refresh_tokens).where(refresh_tokens.c.token_hash == row.token_hash).values(used_at=now)
        )
        await conn.execute(update(sessions).where(sessions.c.id == row.session_id).values(last_seen_at=now))
        generation = row.generation + 1
        refresh = await self._add_refresh_token(conn, row.session_id, generation, now=now)
        await record(
            conn,
            AuditRecord(
                action="auth.refresh",
                outcome="success",
                tenant_id=row.tenant_id,
                actor_user_id=row.user_id,
                session_id=row.session_id,
                source_ip=client.ip,
                details={"generation": generation},
            ),
        )
        subject = Subject(row.user_id, row.tenant_id, row.session_id, tuple(row.roles))
        return Opened(subject, refresh)

    async def _revoke_reused(self, conn: AsyncConnection, row: Any, client: Client) -> list[Any]:
        metrics.REFRESHES.labels("reused").inc()
        await record(
            conn,
            AuditRecord(
                action="auth.refresh_reused",
                outcome="denied",
                tenant_id=row.tenant_id,
                actor_user_id=row.user_id,
                session_id=row.session_id,
                source_ip=client.ip,
                details={"generation": row.generation},
            ),
        )
        actor = Actor(user_id=None, session_id=row.session_id, source_ip=client.ip)
        return await self._revocations.revoke(conn, [row.session_id], reason="refresh_reused", actor=actor)

    async def _add_refresh_token(
        self, conn: AsyncConnection, session_id: str, generation: int, *, now: datetime
    ) -> str:
        token, token_hash = new_secret(REFRESH_PREFIX)
        await conn.execute(
            insert(refresh_tokens).values(
                token_hash=token_hash,
                session_id=session_id,
                generation=generation,
                created_at=now,
                expires_at=now + self._refresh_ttl,
            )
        )
        return token


def _refused(row: Any) -> AuthFailed:
    if row is not None and row.revoked_at is not None:
        return AuthFailed(code=ErrorCode.SESSION_REVOKED)
    if row is not None:
        return AuthFailed("The refresh token has expired; sign in again.")
    return AuthFailed("The refresh token is not valid.")


def _actor(principal: Principal, client: Client) -> Actor:
    return Actor(principal.user_id, principal.session_id, client.ip)


async def _record_probe(
    conn: AsyncConnection, principal: Principal, client: Client, target: str, owner_tenant: str
) -> None:
    action: AuditAction = "access.cross_tenant" if owner_tenant != principal.tenant_id else "access.denied"
    await record(
        conn,
        AuditRecord(
            action=action,
            outcome="denied",
            tenant_id=principal.tenant_id,
            actor_user_id=principal.user_id,
            session_id=principal.session_id,
            source_ip=client.ip,
            target=target,
            details={"resource": "session"},
        ),
    )
