"""Everything a request or a socket handler may use, built once by the composition root."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import nats.errors

from apex_contracts import ApexError, derive_id, utcnow
from apex_contracts.audit import AuditEntry, audit_subject
from apex_gateway.cursor_flusher import CursorFlusher
from apex_gateway.cursors import DeliveryCursors
from apex_gateway.drain import OpenStreams
from apex_gateway.limits import UserLimits
from apex_gateway.messages import MessageService
from apex_gateway.metrics import GatewayMetrics
from apex_gateway.presence import ServiceDirectory
from apex_gateway.sessions import ConnectionRegistry, SessionRevocations
from apex_gateway.settings import GatewaySettings
from apex_gateway.tickets import TicketBook
from apex_gateway.tokens import Principal, TokenVerifier
from apex_gateway.ws.feeds import ThreadFeeds
from apex_runtime import Bus, Health

log = logging.getLogger(__name__)


@dataclass
class GatewayServices:
    settings: GatewaySettings
    bus: Bus
    verifier: TokenVerifier
    revocations: SessionRevocations
    connections: ConnectionRegistry
    messages: MessageService
    cursors: DeliveryCursors
    directory: ServiceDirectory
    health: Health
    metrics: GatewayMetrics
    epoch: str
    tickets: TicketBook
    cursor_flusher: CursorFlusher
    feeds: ThreadFeeds
    limits: UserLimits
    streams: OpenStreams = field(default_factory=OpenStreams)

    async def audit_probe(self, who: Principal, kind: str, target: str) -> None:
        """Records that ``who`` asked for a ``kind`` it does not own. When the id exists
        under another user or tenant the entry says so (``access.cross_tenant``)."""
        owner = await self.bus.owner_of_thread(target) if kind == "thread" else None
        action = "access.cross_tenant" if owner is not None else "access.denied"
        entry = AuditEntry(
            id=derive_id("evt", who.session_id, kind, target, utcnow().isoformat()),
            tenant_id=who.tenant_id,
            action=action,
            outcome="denied",
            actor_user_id=who.user_id,
            session_id=who.session_id,
            service="gateway",
            target=f"{kind}:{target}",
            details={"owner_tenant_differs": bool(owner and owner[0] != who.tenant_id)},
        )
        try:
            await self.bus.js.publish(
                audit_subject(who.tenant_id),
                entry.model_dump_json().encode(),
                headers={"Nats-Msg-Id": entry.id},
            )
        except (nats.errors.Error, ApexError) as exc:
            log.error("audit entry %s not recorded: %r", entry.action, exc)
