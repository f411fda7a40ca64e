"""The JetStream topology every service ensures at start: the streams (``apex_contracts
.streams``) and key-value buckets, with the deployment's replicas and size caps, and
the capacities of durable consumers. ``Bus`` has these methods (it is a
``JetStreamTopology``); they need its ``js``, ``replicas`` and ``stream_max_bytes``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import nats.errors
import nats.js.errors
import stamina
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig

from apex_contracts.pricing import KV_PRICE_OVERRIDES
from apex_contracts.streams import (
    KV_CONNECTORS,
    KV_IDEMPOTENCY,
    KV_LEASES,
    KV_RUNS,
    KV_TOOL_LEDGER,
    KV_USER_RUNS,
    KV_VERSIONS,
    KV_WS_TICKETS,
    STREAMS,
    ConsumerSpec,
    StreamSpec,
)

log = logging.getLogger(__name__)

# Errors after which a request (a publish, an API call) may succeed if tried again: a
# connection moving to another server, a cluster electing a leader.
TRANSIENT_NATS_ERRORS: tuple[type[Exception], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    asyncio.TimeoutError,
)
# What setting up the topology retries: a transient error, or a refusal such as "no suitable
# peers" (ensure_topology re-raises the other refusals). One name, because mypy cannot type
# an unpacking inside ``except (...)``.
_TOPOLOGY_RETRIED: tuple[type[BaseException], ...] = (*TRANSIENT_NATS_ERRORS, nats.js.errors.BadRequestError)

# JetStream's "no suitable peers for placement": a cluster whose peers are not all known yet.
_NO_PEERS = 10005

# bucket: (ttl in seconds, 0 = none; values kept per key)
KV_BUCKETS: dict[str, tuple[float, int]] = {
    KV_IDEMPOTENCY: (7 * 86_400.0, 1),
    KV_RUNS: (30 * 86_400.0, 1),
    KV_TOOL_LEDGER: (30 * 86_400.0, 1),
    KV_WS_TICKETS: (60.0, 1),
    KV_USER_RUNS: (7 * 86_400.0, 1),
    KV_PRICE_OVERRIDES: (0.0, 5),  # a tenant's last few price lists, kept for good
    KV_LEASES: (86_400.0, 1),  # a lease outlives its holder by its own expiry, not the bucket's
    KV_CONNECTORS: (0.0, 1),
    KV_VERSIONS: (0.0, 1),
}


def _not_ready_yet(exc: Exception) -> bool:
    """A cluster electing its leaders: "unavailable", or "no suitable peers"."""
    if isinstance(exc, nats.js.errors.BadRequestError):
        return exc.err_code == _NO_PEERS
    if isinstance(exc, TRANSIENT_NATS_ERRORS):
        log.info("JetStream not ready for the topology yet (%r); retrying", exc)
        return True
    return False


class JetStreamTopology:
    """Streams, buckets and consumer capacities (a mixin of ``Bus``)."""

    _js: JetStreamContext
    replicas: int
    stream_max_bytes: Mapping[str, int]

    async def ensure_topology(self, *, wait_s: float = 60.0) -> None:
        """Creates (or updates) every stream and bucket, with ``replicas`` copies each; safe
        to run from any replica. A cluster that is electing its leaders (just formed, or
        just lost a node) answers "unavailable" or "no suitable peers" for a few seconds:
        that is retried for up to ``wait_s``."""
        async for attempt in stamina.retry_context(
            on=_not_ready_yet, attempts=None, timeout=wait_s, wait_initial=0.5, wait_max=0.5, wait_jitter=0.0
        ):
            with attempt:
                await self._ensure_all()

    async def _ensure_all(self) -> None:
        for spec in STREAMS:
            await self._ensure_stream(spec)
        for bucket, (ttl, history) in KV_BUCKETS.items():
            await self._js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    history=history,
                    ttl=ttl or None,
                    storage=StorageType.FILE,
                    replicas=self.replicas,
                )
            )

    def stream_config(self, spec: StreamSpec) -> StreamConfig:
        """The stream as this deployment runs it. A size cap on the work queue refuses
        new commands when full (``publish_failed`` to the sender, retryable) rather than
        dropping accepted ones; the log streams drop their oldest messages (Postgres keeps
        the archive of events)."""
        max_bytes = self.stream_max_bytes.get(spec.name, spec.max_bytes)
        work_queue = spec.retention == "workqueue"
        return StreamConfig(
            name=spec.name,
            subjects=list(spec.subjects),
            retention=RetentionPolicy.WORK_QUEUE if work_queue else RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=spec.max_age_s or None,
            max_bytes=max_bytes,
            discard=DiscardPolicy.NEW if work_queue and max_bytes > 0 else DiscardPolicy.OLD,
            duplicate_window=spec.duplicate_window_s,
            allow_direct=spec.allow_direct,
            num_replicas=self.replicas,
            max_consumers=spec.max_consumers or None,
        )

    async def _ensure_stream(self, spec: StreamSpec) -> None:
        config = self.stream_config(spec)
        try:
            await self._js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != 10058:  # stream name already in use with a different config
                raise
            await self._js.update_stream(config)

    async def ensure_consumer(self, spec: ConsumerSpec) -> None:
        """Brings an existing durable consumer's ``max_ack_pending`` to ``spec``'s (a
        consumer is otherwise created once and never updated by its subscribers, so a
        changed capacity would not reach it). A missing consumer is left to the
        subscriber that creates it from ``spec``."""
        try:
            info = await self._js.consumer_info(spec.stream, spec.durable)
        except nats.js.errors.NotFoundError:
            return
        if info.config.max_ack_pending == spec.max_ack_pending:
            return
        await self._js.add_consumer(
            spec.stream, config=info.config.evolve(max_ack_pending=spec.max_ack_pending)
        )
        log.info(
            "consumer %s: max_ack_pending %s -> %d",
            spec.durable,
            info.config.max_ack_pending,
            spec.max_ack_pending,
        )
