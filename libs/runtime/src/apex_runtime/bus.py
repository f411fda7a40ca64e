"""``NatsBus``: the bus port (apex_runtime.port) over nats-py. One NATS connection per
process, shared with the FastStream broker; JetStream publishing with dedupe ids, range
reads by batched direct gets, ordered consumers, core broadcasts and KV buckets."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import stamina
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from prometheus_client import Counter

from apex_contracts import Envelope, ErrorCode, Unavailable, subjects, validate_id
from apex_contracts.streams import APEX_EVT, STREAMS, ConsumerSpec
from apex_runtime import tracing
from apex_runtime.directget import DirectGet
from apex_runtime.natsclient import mend_client
from apex_runtime.natskv import NatsKvBucket
from apex_runtime.natspull import NatsPullConsumer
from apex_runtime.port import (
    Bus,
    ConsumerState,
    KvBucket,
    Notice,
    NoticeHandler,
    PullConsumer,
    Stored,
    StoredHandler,
    StreamState,
    Subscription,
    stream_holding,
)
from apex_runtime.topology import TRANSIENT_NATS_ERRORS, JetStreamTopology

log = logging.getLogger(__name__)
T = TypeVar("T")

# An idle ordered consumer hears from the server this often; two missed beats and the
# client recreates it where it left off (the node that held it died).
FOLLOW_HEARTBEAT_S = 2.0
# JetStream's "sequence not found" (a message deleted or purged already)
_NO_SUCH_SEQ = 10043

# What operators (and the lame duck test) watch while NATS nodes come and go: a retried
# attempt is invisible to the sender; a failed publish reached it as publish_failed.
PUBLISHES = Counter(
    "apex_bus_publishes_total",
    "durable publishes (Bus.publish) by outcome: stored, or failed after every retry (publish_failed)",
    ["outcome"],
)
PUBLISH_RETRIES = Counter(
    "apex_bus_publish_retries_total",
    "publish attempts that met a transient NATS error (a node leaving, a leader election) and were tried again",
)
for _outcome in ("stored", "failed"):  # both series exist from the start: an alert sees 0, not nothing
    PUBLISHES.labels(_outcome)


class _NatsSubscription(Subscription):
    def __init__(self, sub: Any, nc: NATS, js: JetStreamContext | None = None) -> None:
        self._sub = sub
        self._nc = nc
        self._js = js  # a follow's: its ordered consumer is deleted at stop
        self._stopped = False

    async def stop(self) -> None:
        if self._stopped or self._nc.is_closed:
            return
        self._stopped = True
        try:
            await self._sub.unsubscribe()
            if self._js is not None:
                await self._delete_consumer(self._js)
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            log.debug("unsubscribe failed: %r", exc)

    async def _delete_consumer(self, js: JetStreamContext) -> None:
        """Deletes the ordered consumer now, not seconds later: a stream caps its consumers."""
        stream, consumer = getattr(self._sub, "_stream", None), getattr(self._sub, "_consumer", None)
        if stream and consumer:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_consumer(stream, consumer)


class NatsBus(JetStreamTopology, Bus):
    """The bus port over nats-py. Its nats-py objects (``_nc``, ``_js``) are private:
    nothing outside apex_runtime reaches them."""

    def __init__(
        self,
        nc: NATS,
        *,
        replicas: int = 1,
        publish_retry_s: float = 15.0,
        stream_max_bytes: Mapping[str, int] | None = None,
    ) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self.replicas = replicas
        self.publish_retry_s = publish_retry_s
        # per stream, the operator's size cap (APEX_NATS_STREAM_MAX_BYTES); absent: the spec's
        self.stream_max_bytes = dict(stream_max_bytes or {})
        self._direct = DirectGet(nc, retry_s=lambda: self.publish_retry_s)
        # a bucket's handle holds only names: looked up once (each lookup is a stream
        # info request), not on every call
        self._buckets: dict[str, KvBucket] = {}

    @classmethod
    async def connect(
        cls,
        url: str,
        name: str,
        *,
        replicas: int = 1,
        stream_max_bytes: Mapping[str, int] | None = None,
        **options: Any,
    ) -> NatsBus:
        nc = await connect_nats(url, name, **options)
        return cls(nc, replicas=replicas, stream_max_bytes=stream_max_bytes)

    # For real-stack tests that inspect the server itself (a stream's replicas, a
    # consumer's redeliveries, a permission refusal); no service or library uses them.
    @property
    def nc(self) -> NATS:
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        return self._js

    @property
    def connected(self) -> bool:
        return self._nc.is_connected

    async def close(self) -> None:
        if not self._nc.is_closed:
            await self._nc.drain()

    async def bucket(self, name: str) -> KvBucket:
        if (known := self._buckets.get(name)) is not None:
            return known
        kv = await self.jetstream_api(lambda: self._js.key_value(name), f"bucket {name}")
        return self._buckets.setdefault(name, NatsKvBucket(kv, self._js, name))

    async def stream_epoch(self, stream: str = APEX_EVT.name) -> str:
        info = await self.jetstream_api(lambda: self._js.stream_info(stream), f"the state of {stream}")
        return f"{stream}@{int(info.created.timestamp() * 1000) if info.created else 0}"

    # --- publishing ----------------------------------------------------------------

    async def publish(self, message: Envelope, subject: str) -> int:
        """Also: the current span's ``traceparent`` travels in the headers, so the
        consumer's spans join the sender's trace."""
        headers = {"Nats-Msg-Id": message.id}
        tracing.inject(headers)
        return await self._store(subject, message.wire(), headers, message.type)

    async def publish_raw(self, subject: str, data: bytes, headers: Mapping[str, str] | None = None) -> int:
        return await self._store(subject, data, dict(headers or {}), subject)

    def _retrying(self) -> AsyncIterator[stamina.Attempt]:
        """Attempts of a bus call after its first failed, again on transient NATS errors
        for ``publish_retry_s``."""
        return stamina.retry_context(
            on=TRANSIENT_NATS_ERRORS,
            attempts=None,
            timeout=self.publish_retry_s,
            wait_initial=0.05,
            wait_max=1.0,
            wait_jitter=0.05,
        )

    async def _store(self, subject: str, data: bytes, headers: dict[str, str], what: str) -> int:
        # Tried again for ``publish_retry_s``: a cluster that lost a stream leader answers
        # "no responders" until it has elected another (a few seconds). The dedupe id
        # makes a retry of a publish that did land store nothing.
        try:
            try:  # the first attempt without the retry machinery (tens of µs per call)
                ack = await self._js.publish(subject, data, headers=headers or None, timeout=3.0)
            except TRANSIENT_NATS_ERRORS:
                async for attempt in self._retrying():
                    PUBLISH_RETRIES.inc()
                    with attempt:
                        ack = await self._js.publish(subject, data, headers=headers or None, timeout=3.0)
        except TRANSIENT_NATS_ERRORS as exc:
            PUBLISHES.labels("failed").inc()
            log.warning("publish_failed: %s not stored within %.1f s: %r", what, self.publish_retry_s, exc)
            raise Unavailable(f"Could not record {what}: {exc!r}", code=ErrorCode.PUBLISH_FAILED) from exc
        PUBLISHES.labels("stored").inc()
        return int(ack.seq)

    # --- reading the log -----------------------------------------------------------

    def read_range(
        self,
        subject: str,
        *,
        after_seq: int = 0,
        batch: int = 1000,
        stream: str = APEX_EVT.name,
        through_seq: int = 0,
        upto_seq: int = 0,
    ) -> AsyncIterator[Stored]:
        return self._direct.read(
            stream, subject, after_seq=after_seq, batch=batch, through_seq=through_seq, upto_seq=upto_seq
        )

    async def follow(
        self, subject: str, handler: StoredHandler, *, after_seq: int | None = None
    ) -> Subscription:
        if after_seq is None:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        elif after_seq == 0:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        else:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after_seq + 1
            )

        async def deliver(msg: Msg) -> None:
            meta = msg.metadata
            await handler(Stored(meta.sequence.stream, msg.subject, msg.data, meta.num_pending))

        try:
            sub = await self._js.subscribe(
                subject,
                stream=stream_holding(STREAMS, subject),  # named: no stream lookup request
                ordered_consumer=True,
                cb=deliver,
                idle_heartbeat=FOLLOW_HEARTBEAT_S,
                config=config,
            )
        except nats.js.errors.APIError as exc:  # refused: e.g. the stream's consumer cap
            raise Unavailable(
                f"Cannot follow {subject}: {exc.description or exc!r}", code=ErrorCode.BUS_UNAVAILABLE
            ) from exc
        return _NatsSubscription(sub, self._nc, self._js)

    async def pull(self, spec: ConsumerSpec) -> PullConsumer:
        return await NatsPullConsumer.bind(self._js, spec)

    async def last_seq(self, subject: str, stream: str = APEX_EVT.name, *, leader: bool = False) -> int:
        async def ask() -> int:
            try:
                msg = await self._js.get_last_msg(stream, subject, direct=not leader)
            except nats.js.errors.NotFoundError:
                return 0
            return int(msg.seq or 0)

        return await self.jetstream_api(ask, f"the last message of {stream}")

    async def owner_of_thread(self, thread_id: str) -> tuple[str, str] | None:
        subject = f"{subjects.EVT_PREFIX}.*.*.{validate_id(thread_id, 'thr')}"
        try:
            found = await self._direct.first(APEX_EVT.name, {"seq": 1, "next_by_subj": subject})
        except Unavailable as exc:  # a probe's audit record goes without its owner
            log.warning("owner of %s not found: %r", thread_id, exc)
            return None
        if found is None:
            return None
        tenant, user, _thread = subjects.parse_thread_subject(found.subject)
        return tenant, user

    async def first_seq(self, stream: str = APEX_EVT.name) -> int:
        info = await self.jetstream_api(lambda: self._js.stream_info(stream), f"the state of {stream}")
        return int(info.state.first_seq)

    async def head_seq(self, stream: str = APEX_EVT.name) -> int:
        info = await self.jetstream_api(lambda: self._js.stream_info(stream), f"the state of {stream}")
        return int(info.state.last_seq)

    async def seq_before(self, moment: datetime, subject: str, stream: str = APEX_EVT.name) -> int:
        request = {"start_time": moment.isoformat().replace("+00:00", "Z"), "next_by_subj": subject}
        found = await self._direct.first(stream, request)
        if found is None:  # nothing stored since then: the end
            return await self.head_seq(stream)
        return found.seq - 1

    async def consumer_state(self, stream: str, durable: str) -> ConsumerState | None:
        try:
            info = await self._js.consumer_info(stream, durable, timeout=2.0)
        except nats.js.errors.NotFoundError:
            return None
        return ConsumerState(
            pending=int(info.num_pending or 0),
            ack_pending=int(info.num_ack_pending or 0),
            redelivered=int(info.num_redelivered or 0),
            acked_through=int(info.ack_floor.stream_seq if info.ack_floor else 0),
            delivered_through=int(info.delivered.stream_seq if info.delivered else 0),
            waiting=int(info.num_waiting or 0),
        )

    async def stream_state(self, stream: str) -> StreamState:
        info = await self._js.stream_info(stream)
        cluster = info.cluster
        return StreamState(
            name=stream,
            messages=int(info.state.messages),
            bytes=int(info.state.bytes),
            first_seq=int(info.state.first_seq),
            last_seq=int(info.state.last_seq),
            consumers=int(info.state.consumer_count),
            replicas=int(info.config.num_replicas or 1),
            leader=cluster.leader if cluster else None,
            current_replicas=sum(1 for r in (cluster.replicas or []) if r.current) + 1 if cluster else 1,
        )

    async def purge(self, stream: str, subject: str, *, keep_after: int = 0) -> None:
        await self.jetstream_api(
            lambda: self._js.purge_stream(
                stream, subject=subject, seq=keep_after + 1 if keep_after else None
            ),
            f"a purge of {stream}",
        )

    async def delete_message(self, stream: str, seq: int) -> bool:
        try:
            return bool(await self._js.delete_msg(stream, seq))
        except nats.js.errors.NotFoundError:
            return False
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != _NO_SUCH_SEQ:
                raise
            return False

    async def jetstream_api(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """A JetStream API request, asked again while the cluster has no leader to answer
        it (an election after a node loss: a few seconds), for up to ``publish_retry_s``;
        then Unavailable(bus_unavailable), which clients may retry."""
        try:
            try:
                return await call()
            except TRANSIENT_NATS_ERRORS:
                async for attempt in self._retrying():
                    with attempt:
                        result = await call()
        except TRANSIENT_NATS_ERRORS as exc:
            raise Unavailable(
                f"JetStream did not answer for {what}: {exc!r}", code=ErrorCode.BUS_UNAVAILABLE
            ) from exc
        return result

    # --- core subjects -------------------------------------------------------------

    async def broadcast(self, subject: str, data: bytes, *, reply: str = "") -> None:
        await self._nc.publish(subject, data, reply=reply)
        await self._nc.flush(timeout=2)

    async def listen(self, subject: str, handler: NoticeHandler, *, queue: str = "") -> Subscription:
        async def on_message(msg: Msg) -> None:
            await handler(Notice(msg.subject, msg.data, msg.reply or "", dict(msg.headers or {})))

        return _NatsSubscription(await self._nc.subscribe(subject, queue=queue, cb=on_message), self._nc)

    def new_inbox(self) -> str:
        return self._nc.new_inbox()

    async def request(self, subject: str, data: bytes, *, timeout: float = 5.0) -> bytes:
        try:
            msg = await self._nc.request(subject, data, timeout=timeout)
        except nats.errors.NoRespondersError as exc:
            raise Unavailable(f"nobody serves {subject}", code=ErrorCode.SERVICE_UNAVAILABLE) from exc
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise Unavailable(f"{subject} did not answer in time") from exc
        return bytes(msg.data)


def nats_servers(url: str) -> list[str]:
    """``APEX_NATS_URL`` as the client's server list: one URL, or every node of a cluster
    separated by commas, so a client whose node goes away reconnects to another."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ValueError("APEX_NATS_URL names no server")
    return servers


async def connect_nats(url: str, name: str, **options: Any) -> NATS:
    """Connects (to any of the servers ``url`` names) with unlimited reconnects; fails
    fast (and says where) when none is there at start-up."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats: %s", exc)

    mend_client()
    nc = NATS()
    try:
        await nc.connect(
            nats_servers(url),
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]  # annotated int; nats-py sleeps for it
            connect_timeout=3,
            error_cb=on_error,
            **options,
        )
    except (OSError, nats.errors.NoServersError, nats.errors.TimeoutError) as exc:
        raise Unavailable(f"Cannot reach NATS at {url}: {exc}", code=ErrorCode.BUS_UNAVAILABLE) from exc
    return nc
