"""Which sessions are revoked, and which sockets belong to which session, so a sign-out
closes every socket of that session on every gateway within a second."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
import redis.exceptions

from apex_contracts.auth import ACCESS_TOKEN_MAX_TTL_S, revoked_session_key
from apex_runtime import CircuitBreaker, CircuitOpen

if TYPE_CHECKING:
    from apex_gateway.ws.connection import Connection

log = logging.getLogger(__name__)
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, CircuitOpen)


class SessionRevocations:
    """Revoked sessions from the broadcast (kept in memory for the longest token life) and
    from Redis. When Redis is unreachable the memory set still answers: the broadcast
    reached every gateway, and tokens live at most 15 minutes."""

    def __init__(self, redis: aioredis.Redis, breaker: CircuitBreaker) -> None:
        self._redis = redis
        self._breaker = breaker
        self._recent: dict[str, float] = {}

    def remember(self, session_id: str) -> None:
        now = time.monotonic()
        self._recent[session_id] = now + ACCESS_TOKEN_MAX_TTL_S
        if len(self._recent) > 100_000:
            self._recent = {k: v for k, v in self._recent.items() if v > now}

    async def is_revoked(self, session_id: str) -> bool:
        expiry = self._recent.get(session_id)
        if expiry is not None and expiry > time.monotonic():
            return True
        try:
            return bool(
                await self._breaker.call(
                    lambda: self._redis.exists(revoked_session_key(session_id)),
                    (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError),
                )
            )
        except REDIS_ERRORS as exc:
            log.warning("revocation check without Redis (%r); relying on broadcasts", exc)
            return False


class ConnectionRegistry:
    """Live sockets of this gateway by session and by user."""

    def __init__(self) -> None:
        self._by_session: dict[str, set[Connection]] = defaultdict(set)
        self._by_user: dict[str, set[Connection]] = defaultdict(set)

    def add(self, conn: Connection) -> None:
        self._by_session[conn.principal.session_id].add(conn)
        self._by_user[conn.principal.user_id].add(conn)

    def remove(self, conn: Connection) -> None:
        for index, key in (
            (self._by_session, conn.principal.session_id),
            (self._by_user, conn.principal.user_id),
        ):
            index[key].discard(conn)
            if not index[key]:
                del index[key]

    def of_session(self, session_id: str) -> list[Connection]:
        return list(self._by_session.get(session_id, ()))

    def count_for_user(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))

    def all(self) -> list[Connection]:
        return [c for conns in self._by_session.values() for c in conns]

    def __len__(self) -> int:
        return sum(len(c) for c in self._by_session.values())
