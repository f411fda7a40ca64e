"""One thread streamed to one connection: replay from ``after_seq`` then live, through a
JetStream ordered consumer, so the seam between replay and live has no gap and no
duplicate (the consumer delivers every stored message once, in stream order)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from apex_contracts import ErrorCode
from apex_contracts.frames import ErrorFrame, ThreadSubscribed

if TYPE_CHECKING:
    from apex_gateway.ws.connection import Connection

log = logging.getLogger(__name__)


class ThreadSubscription:
    def __init__(self, conn: Connection, thread_id: str, subject: str, after_seq: int) -> None:
        self.conn = conn
        self.thread_id = thread_id
        self.subject = subject
        self.after_seq = after_seq
        self.last_sent = after_seq
        self._sub: Any = None

    async def start(self, ref: str | None = None) -> None:
        bus = self.conn.services.bus
        head = await bus.last_seq(self.subject)
        self.conn.send(ThreadSubscribed(
            ref=ref, thread_id=self.thread_id, from_seq=self.after_seq, head_seq=head
        ))
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if self.after_seq else DeliverPolicy.ALL,
            opt_start_seq=self.after_seq + 1 if self.after_seq else None,
        )
        self._sub = await bus.js.subscribe(
            self.subject, ordered_consumer=True, config=config, cb=self._deliver,
            idle_heartbeat=5.0,
        )

    async def _deliver(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        if seq <= self.last_sent:
            return
        if not self.conn.send_event(self.thread_id, seq, msg.data):
            await self.stop()
            self.conn.send(ErrorFrame(
                code=ErrorCode.RESYNC_REQUIRED, message="You fell behind; resubscribe from last_seq.",
                retryable=True, thread_id=self.thread_id, last_seq=self.last_sent,
            ))
            self.conn.subscriptions.pop(self.thread_id, None)
            return
        self.last_sent = seq

    async def stop(self) -> None:
        if self._sub is None:
            return
        sub, self._sub = self._sub, None
        try:
            await sub.unsubscribe()
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            log.debug("unsubscribe of %s failed: %r", self.subject, exc)
