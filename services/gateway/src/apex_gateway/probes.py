"""Probes of what is not yours, written to the prober's tenant audit log.

Whoever asks for a thread or a run that is not theirs gets ``not_found`` (the answer a
thing that does not exist gets), and the ask is recorded, once per ask, as
``access.cross_tenant`` when the id exists under another user or tenant, or
``access.denied`` when it exists nowhere; ``target`` is ``thread:<id>`` or ``run:<id>``,
``details.via`` names the door (``GET /api/v1/threads/{thread_id}``, ``ws run.cancel``)."""

from __future__ import annotations

import logging

from apex_contracts import ApexError, derive_id, utcnow
from apex_contracts.audit import AuditEntry, audit_subject
from apex_gateway.tokens import Principal
from apex_runtime import Bus

log = logging.getLogger(__name__)


class ProbeAudit:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def record(
        self, who: Principal, kind: str, target: str, *, via: str, owner_tenant: str | None = None
    ) -> None:
        """Records that ``who`` asked for ``kind`` ``target`` through ``via``. A thread's
        owner is looked up in the log; a run's is given (``owner_tenant``, None when the
        run does not exist)."""
        if kind == "thread":
            owner = await self._bus.owner_of_thread(target)
            owner_tenant = owner[0] if owner is not None else None
        action = "access.cross_tenant" if owner_tenant is not None else "access.denied"
        entry = AuditEntry(
            id=derive_id("evt", who.session_id, kind, target, via, utcnow().isoformat()),
            tenant_id=who.tenant_id,
            action=action,
            outcome="denied",
            actor_user_id=who.user_id,
            session_id=who.session_id,
            service="gateway",
            target=f"{kind}:{target}",
            details={"owner_tenant_differs": owner_tenant not in (None, who.tenant_id), "via": via},
        )
        try:
            await self._bus.publish_raw(
                audit_subject(who.tenant_id),
                entry.model_dump_json().encode(),
                headers={"Nats-Msg-Id": entry.id},
            )
        except ApexError as exc:  # publish_raw's failure is Unavailable(publish_failed)
            log.error("audit entry %s not recorded: %r", entry.action, exc)
