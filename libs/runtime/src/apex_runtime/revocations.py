"""Which sessions are revoked: from the ``apex.ctl.session.revoked`` broadcast (kept in
memory for the longest token life) and from Redis (where auth records every revocation).
Shared by the services that verify access tokens (gateway, ingest)."""

from __future__ import annotations

import functools
import logging
import time

import redis.asyncio as aioredis
import redis.exceptions
from pydantic import ValidationError

from apex_contracts import subjects
from apex_contracts.auth import ACCESS_TOKEN_MAX_TTL_S, SessionRevoked, revoked_session_key
from apex_runtime.breaker import CircuitBreaker, CircuitOpen
from apex_runtime.port import Bus, Notice, Subscription

log = logging.getLogger(__name__)
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, CircuitOpen)


class SessionRevocations:
    """Revoked sessions from the broadcast (kept in memory for the longest token life) and
    from Redis. When Redis is unreachable the memory set still answers: the broadcast
    reached every process, and tokens live at most 15 minutes."""

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

    async def revoked_among(self, session_ids: list[str]) -> set[str]:
        """The sessions of ``session_ids`` that are revoked: those this gateway heard of,
        and those in Redis (one MGET per 1,000). Raises a Redis error when Redis cannot
        answer (the caller then knows only the broadcasts)."""
        now = time.monotonic()
        revoked = {sid for sid in session_ids if self._recent.get(sid, 0.0) > now}
        unknown = [sid for sid in session_ids if sid not in revoked]
        for start in range(0, len(unknown), 1000):
            chunk = unknown[start : start + 1000]
            values = await self._breaker.call(
                functools.partial(self._redis.mget, [revoked_session_key(sid) for sid in chunk]),
                (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError),
            )
            for sid, value in zip(chunk, values, strict=True):
                if value is not None:
                    self.remember(sid)
                    revoked.add(sid)
        return revoked

    async def listen(self, bus: Bus) -> Subscription:
        """Remembers every revocation broadcast from now on (returns the subscription)."""

        async def on_revoked(notice: Notice) -> None:
            try:
                revoked = SessionRevoked.model_validate_json(notice.data)
            except ValidationError:
                log.warning("ignoring a malformed revocation broadcast")
                return
            self.remember(revoked.session_id)

        return await bus.listen(subjects.CTL_SESSION_REVOKED, on_revoked)
