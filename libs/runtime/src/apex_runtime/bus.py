"""The bus as every service uses it: one NATS connection, JetStream topology, durable
publishing with retries, reading a thread's log, and waiting for a fact to appear.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from apex_contracts import Envelope, ErrorCode, ErrorInfo, ThreadEvent, Unavailable, subjects, validate_id
from apex_contracts.errors import ApexError
from apex_contracts.queries import QueryReply
from apex_contracts.streams import (
    APEX_EVT,
)
from apex_runtime import tracing
from apex_runtime.topology import TRANSIENT_NATS_ERRORS, JetStreamTopology
from apex_runtime.watch import SubjectWatch

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)
T = TypeVar("T")

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

# How long a read waits for a lagging replica to catch up with what the leader holds.
_CATCH_UP_S = 15.0


class _NoAnswer(Exception):
    """A direct get nobody answered (503: no replica responds right now)."""


class Bus(JetStreamTopology):
    """One NATS connection per process and the JetStream operations Apex needs."""

    def __init__(
        self,
        nc: NATS,
        *,
        replicas: int = 1,
        publish_attempts: int = 6,
        publish_retry_s: float = 15.0,
        stream_max_bytes: Mapping[str, int] | None = None,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.replicas = replicas
        self.publish_attempts = publish_attempts
        self.publish_retry_s = publish_retry_s
        # per stream, the operator's size cap (APEX_NATS_STREAM_MAX_BYTES); absent: the spec's
        self.stream_max_bytes = dict(stream_max_bytes or {})

    @classmethod
    async def connect(
        cls,
        url: str,
        name: str,
        *,
        replicas: int = 1,
        stream_max_bytes: Mapping[str, int] | None = None,
        **options: Any,
    ) -> Bus:
        nc = await connect_nats(url, name, **options)
        return cls(nc, replicas=replicas, stream_max_bytes=stream_max_bytes)

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.drain()

    async def kv(self, bucket: str) -> Any:
        return await self.js.key_value(bucket)

    async def stream_epoch(self, stream: str = APEX_EVT.name) -> str:
        """Identifies this incarnation of the stream: seqs from another epoch are not
        comparable (the stream was deleted and recreated)."""
        info = await self.js.stream_info(stream)
        return f"{stream}@{int(info.created.timestamp() * 1000) if info.created else 0}"

    # --- publishing ----------------------------------------------------------------

    async def publish(self, message: Envelope, subject: str) -> int:
        """Stores ``message`` durably and returns its stream sequence. Retries transient
        failures; the message id is the Nats-Msg-Id, so a retry never stores it twice
        (within the duplicate window). The current span's ``traceparent`` travels in the
        headers, so the consumer's spans join the sender's trace. Raises
        Unavailable(publish_failed)."""
        payload = message.wire()
        headers = {"Nats-Msg-Id": message.id}
        tracing.inject(headers)
        loop = asyncio.get_running_loop()
        # At least ``publish_attempts`` tries, and for ``publish_retry_s`` at least: a
        # cluster that lost a stream leader answers "no responders" until it has elected
        # another (a few seconds).
        give_up = loop.time() + self.publish_retry_s
        delay = 0.05
        last: BaseException | None = None
        attempts = 0
        while attempts < self.publish_attempts or loop.time() < give_up:
            attempts += 1
            try:
                ack = await self.js.publish(subject, payload, headers=headers, timeout=3.0)
            except TRANSIENT_NATS_ERRORS as exc:
                last = exc
                PUBLISH_RETRIES.inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            PUBLISHES.labels("stored").inc()
            return int(ack.seq)
        PUBLISHES.labels("failed").inc()
        log.warning("publish_failed: %s not stored after %d attempts: %r", message.type, attempts, last)
        raise Unavailable(
            f"Could not record {message.type} after {attempts} attempts: {last!r}",
            code=ErrorCode.PUBLISH_FAILED,
        )

    async def publish_event(self, event: ThreadEvent) -> int:
        subject = subjects.thread_events(event.tenant_id, event.user_id, event.thread_id)
        return await self.publish(event, subject)

    # --- reading a thread's log ----------------------------------------------------

    async def read_subject(
        self,
        subject: str,
        *,
        after_seq: int = 0,
        batch: int = 1000,
        stream: str = APEX_EVT.name,
        through_seq: int = 0,
    ) -> AsyncIterator[tuple[int, bytes]]:
        """Yields (seq, payload) of every stored message on ``subject`` with seq > after_seq,
        in order, using batched direct gets (no consumer is created).

        In a cluster any replica may answer a direct get, and a follower can be behind the
        leader (milliseconds; seconds while a lost leader is replaced). ``through_seq`` (a
        seq the leader is known to hold on ``subject``, see ``last_seq(leader=True)``) makes
        the read go on until it has reached it, asking again while the answering replica
        catches up, for up to ``_CATCH_UP_S``; then it raises Unavailable rather than end
        short of it."""
        start = after_seq + 1
        last = after_seq
        loop = asyncio.get_running_loop()
        give_up = loop.time() + _CATCH_UP_S
        while True:
            chunk = await self._direct_batch(stream, subject, start, batch)
            for seq, data in chunk:
                last = seq
                yield seq, data
            if len(chunk) == batch:
                start = chunk[-1][0] + 1
                continue
            if last >= through_seq:
                return
            if loop.time() > give_up:
                raise Unavailable(
                    f"{stream} replicas did not reach seq {through_seq} of {subject} in {_CATCH_UP_S:.0f} s",
                    code=ErrorCode.BUS_UNAVAILABLE,
                )
            start = last + 1
            await asyncio.sleep(0.05)

    async def _direct_batch(
        self, stream: str, subject: str, start: int, batch: int
    ) -> list[tuple[int, bytes]]:
        """One batch of direct gets. A request that went to a node that just died (the
        cluster still routed to it) gets no answer: it is asked again, for up to
        ``publish_retry_s``, then Unavailable(bus_unavailable)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.publish_retry_s
        while True:
            try:
                return await self._direct_batch_once(stream, subject, start, batch)
            except (nats.errors.TimeoutError, _NoAnswer) as exc:
                if loop.time() > give_up:
                    raise Unavailable(
                        f"direct get on {stream} was not answered: {exc!r}", code=ErrorCode.BUS_UNAVAILABLE
                    ) from exc
            await asyncio.sleep(0.1)

    async def _direct_batch_once(
        self, stream: str, subject: str, start: int, batch: int
    ) -> list[tuple[int, bytes]]:
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, max_msgs=batch + 1)
        try:
            request = {"seq": start, "next_by_subj": subject, "batch": batch}
            await self.nc.publish(f"$JS.API.DIRECT.GET.{stream}", orjson.dumps(request), reply=inbox)
            out: list[tuple[int, bytes]] = []
            while True:
                msg = await sub.next_msg(timeout=3.0)
                headers = msg.headers or {}
                status = headers.get("Status")
                if status is not None:
                    if status in ("204", "404"):
                        return out
                    if status == "503":  # no responders (yet)
                        raise _NoAnswer(status)
                    raise Unavailable(
                        f"direct get on {stream} failed with status {status}",
                        code=ErrorCode.BUS_UNAVAILABLE,
                    )
                out.append((int(headers["Nats-Sequence"]), msg.data))
        finally:
            await sub.unsubscribe()

    async def last_seq(self, subject: str, stream: str = APEX_EVT.name, *, leader: bool = False) -> int:
        """Sequence of the newest message on ``subject``; 0 when there is none. A direct get
        (any replica answers: may lag the leader by a moment in a cluster), or with
        ``leader`` the stream leader's answer (what every acknowledged publish is in)."""

        async def ask() -> int:
            try:
                msg = await self.js.get_last_msg(stream, subject, direct=not leader)
            except nats.js.errors.NotFoundError:
                return 0
            return int(msg.seq or 0)

        return await self.jetstream_api(ask, f"the last message of {stream}")

    async def owner_of_thread(self, thread_id: str) -> tuple[str, str] | None:
        """(tenant, user) whose subject holds ``thread_id``, or None when it has no events.
        For auditing probes only: never used to grant access."""
        subject = f"{subjects.EVT_PREFIX}.*.*.{validate_id(thread_id, 'thr')}"
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, max_msgs=2)
        try:
            request = {"seq": 1, "next_by_subj": subject, "batch": 1}
            await self.nc.publish(f"$JS.API.DIRECT.GET.{APEX_EVT.name}", orjson.dumps(request), reply=inbox)
            msg = await sub.next_msg(timeout=5.0)
        except nats.errors.TimeoutError:
            return None
        finally:
            await sub.unsubscribe()
        headers = msg.headers or {}
        if headers.get("Status") is not None or "Nats-Subject" not in headers:
            return None
        tenant, user, _thread = subjects.parse_thread_subject(headers["Nats-Subject"])
        return tenant, user

    async def first_seq(self, stream: str = APEX_EVT.name) -> int:
        info = await self.jetstream_api(lambda: self.js.stream_info(stream), f"the state of {stream}")
        return int(info.state.first_seq)

    async def jetstream_api(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """A JetStream API request, asked again while the cluster has no leader to answer
        it (an election after a node loss: a few seconds), for up to ``publish_retry_s``;
        then Unavailable(bus_unavailable), which clients may retry."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.publish_retry_s
        delay = 0.05
        while True:
            try:
                return await call()
            except TRANSIENT_NATS_ERRORS as exc:
                if loop.time() + delay > give_up:
                    raise Unavailable(
                        f"JetStream did not answer for {what}: {exc!r}", code=ErrorCode.BUS_UNAVAILABLE
                    ) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    # --- request / reply -----------------------------------------------------------

    async def query(self, name: str, request: BaseModel, reply_type: type[R], *, timeout: float = 5.0) -> R:
        """Asks persistence's read API; raises the ApexError it answered with."""
        data = await self.query_raw(name, request, timeout=timeout)
        try:
            return reply_type.model_validate(data)
        except ValidationError as exc:
            raise Unavailable(f"{name} answered with an unexpected shape: {exc}") from exc

    async def query_raw(self, name: str, request: BaseModel, *, timeout: float = 5.0) -> dict[str, Any]:
        try:
            msg = await self.nc.request(
                subjects.query(name), request.model_dump_json().encode(), timeout=timeout
            )
        except nats.errors.NoRespondersError as exc:
            raise Unavailable(f"nobody serves {name}", code=ErrorCode.SERVICE_UNAVAILABLE) from exc
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise Unavailable(f"{name} did not answer in time") from exc
        reply = QueryReply.model_validate_json(msg.data)
        if not reply.ok:
            raise ApexError.from_info(
                reply.error or ErrorInfo(code="internal_error", message="empty error reply", retryable=True)
            )
        return reply.data or {}

    # --- waiting for facts ---------------------------------------------------------

    def watch(self, subject: str) -> SubjectWatch:
        return SubjectWatch(self, subject)


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

    try:
        return await nats.connect(
            nats_servers(url),
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=3,
            error_cb=on_error,
            **options,
        )
    except (OSError, nats.errors.NoServersError, nats.errors.TimeoutError) as exc:
        raise Unavailable(f"Cannot reach NATS at {url}: {exc}", code=ErrorCode.BUS_UNAVAILABLE) from exc
