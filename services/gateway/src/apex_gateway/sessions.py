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
