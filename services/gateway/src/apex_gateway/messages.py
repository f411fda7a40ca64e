"""Turning a user's message into a run, exactly once per ``client_msg_id``.

Ids are derived from (tenant, user, client_msg_id), so a retry after any crash publishes
the same facts, which the stream deduplicates; the idempotency record in the KV bucket
makes the same answer hold beyond the stream's duplicate window."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from apex_contracts import (
    MessageCreated,
    MessageCreatedData,
    NotFound,
    RunCancel,
    RunCancelData,
    RunQueued,
    RunQueuedData,
    RunStart,
    RunStartData,
    Scope,
    subjects,
)
from apex_contracts.dedupe_ids import (
    message_created_id,
    message_id_for,
    run_cancel_id,
    run_id_for,
    run_start_id,
    run_waiting_for_service_id,
    thread_id_for,
)
from apex_contracts.envelope import Model
from apex_contracts.queries import Q_EVENTS_ARCHIVE, EventsArchive, EventsPage
from apex_contracts.streams import KV_IDEMPOTENCY, KV_RUNS
from apex_gateway.probes import ProbeAudit
from apex_gateway.tokens import Principal
from apex_runtime import Bus, KvBucket


class RunRecord(Model):
    tenant_id: str
    user_id: str
    thread_id: str
    run_id: str
    message_id: str
    message_seq: int = 0
    started: bool = False


@dataclass(frozen=True)
class Accepted:
    thread_id: str
    run_id: str
    message_seq: int
    duplicate: bool


class MessageService:
    """``waiting()`` names the services a run needs that are down right now (none by
    default): the run is still accepted, its command waits in the work queue, and the
    thread shows ``run.queued`` with ``reason: waiting_for_service`` until they are back."""

    def __init__(
        self, bus: Bus, waiting: Callable[[], list[str]] | None = None, probes: ProbeAudit | None = None
    ) -> None:
        self.bus = bus
        self.waiting = waiting or (lambda: [])
        self.probes = probes or ProbeAudit(bus)

    async def send(
        self,
        who: Principal,
        client_msg_id: str,
        text: str,
        thread_id: str | None,
        *,
        via: str = "ws message.send",
    ) -> Accepted:
        idem = await self.bus.bucket(KV_IDEMPOTENCY)
        key = _idem_key(who, client_msg_id)
        entry = await idem.get(key)
        if entry is not None and entry.value:
            record = RunRecord.model_validate_json(entry.value)
            if record.started:
                return Accepted(record.thread_id, record.run_id, record.message_seq, duplicate=True)
        else:
            if thread_id is not None and not await self.thread_exists(who, thread_id):
                await self.probes.record(who, "thread", thread_id, via=via)
                raise NotFound("No such thread.")
            record = RunRecord(
                tenant_id=who.tenant_id,
                user_id=who.user_id,
                thread_id=thread_id or thread_id_for(who.tenant_id, who.user_id, client_msg_id),
                run_id=run_id_for(who.tenant_id, who.user_id, client_msg_id),
                message_id=message_id_for(who.tenant_id, who.user_id, client_msg_id),
            )
        return await self._start(idem, key, record, client_msg_id, text, first=entry is None)

    async def _start(
        self, idem: KvBucket, key: str, record: RunRecord, client_msg_id: str, text: str, first: bool
    ) -> Accepted:
        scope = Scope(
            tenant_id=record.tenant_id,
            user_id=record.user_id,
            thread_id=record.thread_id,
            run_id=record.run_id,
        )
        seq = await self.bus.publish_event(
            scope.make(
                MessageCreated,
                MessageCreatedData(
                    message_id=record.message_id,
                    content=text,
                    client_msg_id=client_msg_id,
                    title=_title(text),
                ),
                id=message_created_id(record.run_id),
            )
        )
        if down := self.waiting():
            await self.bus.publish_event(
                scope.make(
                    RunQueued,
                    RunQueuedData(reason="waiting_for_service", waiting_for=down),
                    id=run_waiting_for_service_id(record.run_id),
                )
            )
        await self.bus.publish(
            scope.make(
                RunStart,
                RunStartData(message_id=record.message_id, text=text, client_msg_id=client_msg_id),
                id=run_start_id(record.run_id),
            ),
            subjects.CMD_RUN_START,
        )
        started = record.model_copy(update={"started": True, "message_seq": seq})
        body = started.model_dump_json().encode()
        runs = await self.bus.bucket(KV_RUNS)
        # independent records (each write is idempotent): one round trip, not two
        await asyncio.gather(idem.put(key, body), runs.put(record.run_id, body))
        return Accepted(record.thread_id, record.run_id, seq, duplicate=not first)

    async def thread_exists(self, who: Principal, thread_id: str) -> bool:
        """True when the thread has events under this user: in the stream, or, beyond its
        retention, in the archive."""
        subject = subjects.thread_events(who.tenant_id, who.user_id, thread_id)
        if await self.bus.last_seq(subject) > 0:
            return True
        query = EventsArchive(tenant_id=who.tenant_id, user_id=who.user_id, thread_id=thread_id, limit=1)
        try:
            page = await self.bus.query(Q_EVENTS_ARCHIVE, query, EventsPage)
        except NotFound:
            return False
        return bool(page.events)

    async def cancel(
        self, who: Principal, run_id: str, cause: str = "user", *, via: str = "ws run.cancel"
    ) -> RunRecord:
        """Asks the orchestrator to cancel a run of this user; NotFound (audited) for
        anyone else's or none."""
        runs = await self.bus.bucket(KV_RUNS)
        entry = await runs.get(run_id)
        if entry is None:
            await self.probes.record(who, "run", run_id, via=via)
            raise NotFound("No such run.")
        record = RunRecord.model_validate_json(entry.value or b"{}")
        if record.tenant_id != who.tenant_id or record.user_id != who.user_id:
            await self.probes.record(who, "run", run_id, via=via, owner_tenant=record.tenant_id)
            raise NotFound("No such run.")
        scope = Scope(
            tenant_id=record.tenant_id,
            user_id=record.user_id,
            thread_id=record.thread_id,
            run_id=record.run_id,
        )
        await self.bus.publish(
            scope.make(
                RunCancel,
                RunCancelData(cause=cause, requested_by=who.user_id),
                id=run_cancel_id(run_id),
            ),
            subjects.CMD_RUN_CANCEL,
        )
        return record


def _idem_key(who: Principal, client_msg_id: str) -> str:
    digest = hashlib.sha256(client_msg_id.encode()).hexdigest()[:40]
    return f"{who.tenant_id}.{who.user_id}.{digest}"


def _title(text: str) -> str:
    words = text.strip().split()
    title = " ".join(words[:8])
    return title if len(words) <= 8 else title + "…"


async def runs_of(bus: Bus, who: Principal, thread_id: str | None = None) -> list[tuple[str, RunRecord]]:
    """The user's runs the gateway started (its idempotency records, kept 7 days): (record
    key, record), those of ``thread_id`` only when given."""
    idempotency = await bus.bucket(KV_IDEMPOTENCY)
    found = []
    for entry in await idempotency.entries(f"{who.tenant_id}.{who.user_id}.>"):
        record = RunRecord.model_validate_json(entry.value)
        if thread_id is None or record.thread_id == thread_id:
            found.append((entry.key, record))
    return found
