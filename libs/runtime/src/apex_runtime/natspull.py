"""``Bus.pull`` over nats-py: a durable JetStream pull consumer behind the port's
``PullConsumer``."""

from __future__ import annotations

import logging

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from apex_contracts.streams import ConsumerSpec
from apex_runtime.port import PullConsumer, Pulled

log = logging.getLogger(__name__)


class NatsPullConsumer(PullConsumer):
    def __init__(self, sub: JetStreamContext.PullSubscription) -> None:
        self._sub = sub

    @classmethod
    async def bind(cls, js: JetStreamContext, spec: ConsumerSpec) -> NatsPullConsumer:
        config = ConsumerConfig(
            durable_name=spec.durable,
            filter_subject=spec.filter_subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait_s,
            max_deliver=spec.max_deliver,
            max_ack_pending=spec.max_ack_pending,
        )
        sub = await js.pull_subscribe(
            spec.filter_subject, durable=spec.durable, stream=spec.stream, config=config
        )
        return cls(sub)

    async def fetch(self, batch: int, *, timeout: float) -> list[Pulled]:
        try:
            messages = await self._sub.fetch(batch, timeout=timeout)
        except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either for "nothing came"
            return []
        return [Pulled(m.metadata.sequence.stream, m.subject, m.data, m.ack, m.nak) for m in messages]

    async def stop(self) -> None:
        try:
            await self._sub.unsubscribe()
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            log.debug("pull consumer unsubscribe failed: %r", exc)
