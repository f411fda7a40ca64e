"""A user's threads as the HTTP API reads and changes them: the read side through
persistence (``apex.q.threads.*``), renames and deletions as events on the thread."""

from __future__ import annotations

from apex_contracts import Scope, ThreadDeleted, ThreadDeletedData, ThreadRenamed, ThreadRenamedData, new_id
from apex_contracts.dedupe_ids import thread_erased_id, thread_hidden_id, thread_renamed_id
from apex_contracts.queries import (
    Q_THREADS_GET,
    Q_THREADS_LIST,
    ThreadDetail,
    ThreadGet,
    ThreadsList,
    ThreadsPage,
)
from apex_gateway.messages import runs_of
from apex_gateway.tokens import Principal
from apex_runtime import Bus


class ThreadService:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def list(self, who: Principal, limit: int, cursor: str | None, search: str | None) -> ThreadsPage:
        query = ThreadsList(
            tenant_id=who.tenant_id, user_id=who.user_id, limit=limit, cursor=cursor, search=search
        )
        return await self._bus.query(Q_THREADS_LIST, query, ThreadsPage)

    async def get(self, who: Principal, thread_id: str) -> ThreadDetail:
        query = ThreadGet(tenant_id=who.tenant_id, user_id=who.user_id, thread_id=thread_id)
        return await self._bus.query(Q_THREADS_GET, query, ThreadDetail)

    async def rename(self, who: Principal, thread_id: str, title: str) -> None:
        """Appends ``thread.renamed`` (the caller checked the thread is theirs)."""
        scope = Scope(tenant_id=who.tenant_id, user_id=who.user_id, thread_id=thread_id)
        await self._bus.publish_event(
            scope.make(
                ThreadRenamed, ThreadRenamedData(title=title), id=thread_renamed_id(thread_id, new_id("evt"))
            )
        )

    async def delete(self, who: Principal, thread_id: str, subject: str, *, erase: bool) -> None:
        """Appends the ``thread.deleted`` tombstone (the caller checked the thread is theirs)."""
        scope = Scope(tenant_id=who.tenant_id, user_id=who.user_id, thread_id=thread_id)
        if erase:
            # The erasure covers the thread up to its tombstone and the later facts of its
            # runs (any still going); erased again later, it reaches the thread's new head.
            head = await self._bus.last_seq(subject, leader=True)
            runs = sorted({record.run_id for _key, record in await runs_of(self._bus, who, thread_id)})
            data, event_id = (
                ThreadDeletedData(erase=True, requested_by=who.user_id, runs=runs),
                thread_erased_id(thread_id, head),
            )
        else:
            data, event_id = (
                ThreadDeletedData(erase=False, requested_by=who.user_id),
                thread_hidden_id(thread_id),
            )
        await self._bus.publish_event(scope.make(ThreadDeleted, data, id=event_id))
