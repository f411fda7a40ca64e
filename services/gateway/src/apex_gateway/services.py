"""Everything a request or a socket handler may use, built once by the composition root.

Routes and frame handlers call domain services (threads, history, reads, prices,
erasure, messages), never the bus: the bus is the composition root's, handed to those
services when they are built. A thread subscription sees none of this, only its ports
(``subscriptions``: the thread log, the live feeds, the figures)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from apex_gateway.accounts import AuthAccounts
from apex_gateway.cursor_flusher import CursorFlusher
from apex_gateway.cursors import DeliveryCursors
from apex_gateway.drain import OpenStreams
from apex_gateway.erasure import UserErasure
from apex_gateway.history import ThreadLog
from apex_gateway.limits import UserLimits
from apex_gateway.messages import MessageService
from apex_gateway.metrics import GatewayMetrics
from apex_gateway.presence import ServiceDirectory
from apex_gateway.prices import TenantPriceStore
from apex_gateway.reads import ReadSide
from apex_gateway.sessions import ConnectionRegistry, SessionRevocations
from apex_gateway.settings import GatewaySettings
from apex_gateway.thread_service import ThreadService
from apex_gateway.tickets import TicketBook
from apex_gateway.tokens import Principal, TokenVerifier
from apex_gateway.ws.feeds import ThreadFeeds
from apex_gateway.ws.subscription import SubscriptionPorts
from apex_runtime import Health

log = logging.getLogger(__name__)


@dataclass
class GatewayServices:
    settings: GatewaySettings
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
    accounts: AuthAccounts
    history: ThreadLog
    threads: ThreadService
    reads: ReadSide
    prices: TenantPriceStore
    erasure: UserErasure
    subscriptions: SubscriptionPorts
    streams: OpenStreams = field(default_factory=OpenStreams)

    async def audit_probe(self, who: Principal, kind: str, target: str, *, via: str) -> None:
        """Records that ``who`` asked for a ``kind`` it does not own (``probes.py``)."""
        await self.messages.probes.record(who, kind, target, via=via)
