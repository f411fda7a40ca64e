"""Session revocation, fail-closed.

Order matters: the session is marked revoked inside the caller's Postgres transaction,
then ``revoked_session_key(sid)`` is set in Redis *before* that transaction commits (a
Redis failure aborts the revocation and the caller answers 503; a commit failure after
the Redis write leaves the session refused by gateways, never accepted), and only after
the commit is ``SessionRevoked`` broadcast on core NATS so every gateway closes the
session's sockets. The broadcast is a prompt, not the record: a gateway that missed it
still finds the session in the Redis set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from apex_auth import metrics
from apex_auth.audit import NATS_ERRORS, AuditRecord, record
from apex_auth.tables import sessions
from apex_contracts import utcnow
from apex_contracts.auth import SessionRevoked, revoked_session_key
from apex_contracts.subjects import CTL_SESSION_REVOKED
from apex_runtime import Bus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asked for a revocation, for the audit trail."""

    user_id: str | None
    session_id: str | None
    source_ip: str | None


class Revocations:
    def __init__(self, redis: Redis, bus: Bus, *, ttl_s: int) -> None:
        self._redis = redis
        self._bus = bus
        self._ttl_s = ttl_s

    async def revoke(
        self, conn: AsyncConnection, session_ids: Sequence[str], *, reason: str, actor: Actor
    ) -> list[SessionRevoked]:
        """Revokes those of ``session_ids`` still live, in the caller's transaction, and
        mirrors them to Redis; returns the notices to ``announce`` after the commit."""
        if not session_ids:
            return []
        result = await conn.execute(
            update(sessions)
            .where(sessions.c.id.in_(session_ids), sessions.c.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoke_reason=reason)
            .returning(sessions.c.id, sessions.c.tenant_id, sessions.c.user_id)
        )
        notices = [
            SessionRevoked(session_id=row.id, tenant_id=row.tenant_id, user_id=row.user_id, reason=reason)
            for row in result
        ]
        for notice in notices:
            await record(
                conn,
                AuditRecord(
                    action="auth.session_revoked",
                    outcome="success",
                    tenant_id=notice.tenant_id,
                    actor_user_id=actor.user_id,
                    session_id=actor.session_id,
                    source_ip=actor.source_ip,
                    target=notice.session_id,
                    details={"reason": reason},
                ),
            )
        await self._mirror(notices)
        return notices

    async def announce(self, notices: Iterable[SessionRevoked]) -> None:
        """Broadcasts each notice on ``apex.ctl.session.revoked``; a failure is logged and
        counted, never raised (Redis already holds the revocation)."""
        for notice in notices:
            metrics.SESSIONS_REVOKED.labels(notice.reason).inc()
            try:
                await self._bus.broadcast(CTL_SESSION_REVOKED, notice.model_dump_json().encode())
            except NATS_ERRORS as exc:
                metrics.REVOCATION_BROADCAST_FAILURES.inc()
                log.warning("revocation of %s not broadcast: %r", notice.session_id, exc)

    async def is_revoked(self, session_id: str) -> bool:
        return bool(await self._redis.exists(revoked_session_key(session_id)))

    async def _mirror(self, notices: Sequence[SessionRevoked]) -> None:
        if not notices:
            return
        pipe = self._redis.pipeline(transaction=False)
        for notice in notices:
            pipe.set(revoked_session_key(notice.session_id), notice.reason, ex=self._ttl_s)
        await pipe.execute()
