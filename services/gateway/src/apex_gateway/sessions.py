"""Which sockets belong to which session, so a sign-out closes every socket of that
session on every gateway within a second (which sessions are revoked:
``apex_runtime.revocations``)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from apex_runtime.revocations import REDIS_ERRORS, SessionRevocations

if TYPE_CHECKING:
    from apex_gateway.ws.connection import Connection

__all__ = ["REDIS_ERRORS", "ConnectionRegistry", "SessionRevocations"]

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
                lambda chunk=chunk: self._redis.mget([revoked_session_key(sid) for sid in chunk]),
                (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError),
            )
            for sid, value in zip(chunk, values, strict=True):
                if value is not None:
                    self.remember(sid)
                    revoked.add(sid)
        return revoked


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
