"""Single-use WebSocket tickets (``POST /api/v1/ws-ticket`` then ``/ws?ticket=``) for
load balancers that strip headers: valid for 30 seconds, redeemable once, on any gateway."""

from __future__ import annotations

import re
import secrets
import time

from apex_contracts import AuthFailed, ErrorCode
from apex_contracts.envelope import Model
from apex_contracts.streams import KV_WS_TICKETS
from apex_gateway.tokens import Principal
from apex_runtime import Bus, WrongRevision

TICKET_TTL_S = 30
TICKET_SHAPE = re.compile(r"[A-Za-z0-9_\-]{1,100}")


class Ticket(Model):
    user_id: str
    tenant_id: str
    session_id: str
    roles: list[str]
    expires_at: float
    token_expires_at: int


class TicketBook:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def issue(self, who: Principal) -> tuple[str, int]:
        ticket = secrets.token_urlsafe(32)
        record = Ticket(
            user_id=who.user_id,
            tenant_id=who.tenant_id,
            session_id=who.session_id,
            roles=list(who.roles),
            expires_at=time.time() + TICKET_TTL_S,
            token_expires_at=who.expires_at,
        )
        kv = await self.bus.bucket(KV_WS_TICKETS)
        await kv.create(ticket, record.model_dump_json().encode())
        return ticket, TICKET_TTL_S

    async def redeem(self, ticket: str) -> Principal:
        """The principal the ticket was issued to; the ticket is gone afterwards."""
        kv = await self.bus.bucket(KV_WS_TICKETS)
        refused = AuthFailed("The ticket is unknown, used or expired.", code=ErrorCode.TOKEN_INVALID)
        # ASCII only: str.isalnum() also takes "éééé", which is no key a bucket accepts
        if not TICKET_SHAPE.fullmatch(ticket):
            raise refused
        entry = await kv.get(ticket)
        if entry is None:
            raise refused
        try:
            await kv.delete(ticket, last=entry.revision)
        except WrongRevision as exc:  # redeemed by another socket first
            raise refused from exc
        record = Ticket.model_validate_json(entry.value or b"{}")
        if record.expires_at < time.time():
            raise refused
        return Principal(
            user_id=record.user_id,
            tenant_id=record.tenant_id,
            session_id=record.session_id,
            roles=tuple(record.roles),
            expires_at=record.token_expires_at,
        )
