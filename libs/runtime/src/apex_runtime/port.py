"""The bus port: the one way services reach the log, the control subjects and the
key-value buckets. ``NatsBus`` (apex_runtime.bus) is the production adapter over nats-py,
``MemoryBus`` (apex_runtime.memory) the in-memory one for unit tests; the contract suite
(tests/integration/runtime/test_bus_contract.py) runs the same bodies against both.

Command consumers are not part of the port: FastStream's router serves them (see
docs/architecture.md, "Where FastStream serves and where the port is plain nats-py").
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from pydantic import BaseModel, ValidationError

from apex_contracts import Envelope, ErrorInfo, ThreadEvent, Unavailable, subjects
from apex_contracts.errors import ApexError
from apex_contracts.queries import QueryReply
from apex_contracts.streams import APEX_EVT, ConsumerSpec, StreamSpec

if TYPE_CHECKING:
    from apex_runtime.watch import SubjectWatch

R = TypeVar("R", bound=BaseModel)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return len(have) > index
        if index >= len(have) or (token != "*" and token != have[index]):
            return False
    return len(have) == len(want)


def stream_holding(specs: Iterable[StreamSpec], subject: str) -> str | None:
    """The name of the first of ``specs`` whose subjects hold ``subject``, a wildcard
    subject within them included (``apex.evt.t.u.>`` in ``apex.evt.>``); None when none."""
    for spec in specs:
        for pattern in spec.subjects:
            if subject_matches(pattern, subject) or subject.startswith(pattern.rstrip(">")):
                return spec.name
    return None


class Stored(NamedTuple):
    """One message as the log holds it; a followed one (``follow``) also says how many
    messages the follower's consumer still had for it then (``pending``, -1: not known)."""

    seq: int
    subject: str
    data: bytes
    pending: int = -1


@dataclass(frozen=True)
class Notice:
    """A message heard on a core subject (``listen``); ``reply`` is where an answer goes."""

    subject: str
    data: bytes
    reply: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pulled:
    """One message of a pull consumer, with its acknowledgement: ``ack`` settles it,
    ``nak`` asks for it again after ``delay`` seconds."""

    seq: int
    subject: str
    data: bytes
    ack: Callable[[], Awaitable[None]]
    nak: Callable[[float], Awaitable[None]]


class PullConsumer(abc.ABC):
    """A durable consumer its owner pulls batches from (``Bus.pull``)."""

    @abc.abstractmethod
    async def fetch(self, batch: int, *, timeout: float) -> list[Pulled]:
        """Up to ``batch`` messages, waiting at most ``timeout`` seconds for the first;
        an empty list when none arrived."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stops pulling; the durable consumer and its position stay. Never raises."""


@dataclass(frozen=True)
class ConsumerState:
    """A durable consumer's backlog: waiting (not yet delivered), delivered but not yet
    acknowledged, out for a second or later delivery; ``acked_through`` is the stream seq
    below which every message is acknowledged."""

    pending: int
    ack_pending: int
    redelivered: int
    acked_through: int
    delivered_through: int = 0
    waiting: int = 0


@dataclass(frozen=True)
class StreamState:
    """A stream as the operator sees it; ``current_replicas`` counts the replicas (the
    leader included) that hold everything."""

    name: str
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    consumers: int
    replicas: int = 1
    leader: str | None = None
    current_replicas: int = 1


class Subscription(abc.ABC):
    """A live subscription (``listen``, ``follow``)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stops delivery; safe to call twice, and after the bus closed."""


class WrongRevision(Exception):
    """A conditional KV write lost: the key exists (``create``) or was changed since the
    revision the writer read (``update``, ``delete(last=)``)."""


@dataclass(frozen=True)
class KvEntry:
    key: str
    value: bytes
    revision: int


class KvBucket(abc.ABC):
    """A key-value bucket with revisions: optimistic concurrency by ``last`` revision."""

    @abc.abstractmethod
    async def get(self, key: str) -> KvEntry | None:
        """The key's current entry; None when it was never written, deleted or purged."""

    @abc.abstractmethod
    async def put(self, key: str, value: bytes) -> int:
        """Writes unconditionally; returns the new revision."""

    @abc.abstractmethod
    async def create(self, key: str, value: bytes) -> int:
        """Writes only when the key holds no value; returns the revision; raises
        WrongRevision when it does."""

    @abc.abstractmethod
    async def update(self, key: str, value: bytes, last: int) -> int:
        """Writes only when the key is still at revision ``last``; returns the new one;
        raises WrongRevision otherwise."""

    @abc.abstractmethod
    async def delete(self, key: str, last: int | None = None) -> None:
        """Deletes the key (only at revision ``last`` when given, else WrongRevision)."""

    @abc.abstractmethod
    async def purge(self, key: str) -> None:
        """Deletes the key and its history."""

    @abc.abstractmethod
    async def purge_matching(self, pattern: str) -> None:
        """Deletes every key matching ``pattern`` (NATS wildcards) and its history."""

    @abc.abstractmethod
    async def keys(self) -> list[str]:
        """Every key that holds a value; empty when none."""

    @abc.abstractmethod
    async def entries(self, pattern: str = ">") -> list[KvEntry]:
        """The current entries whose key matches ``pattern`` (NATS wildcards ``*``, ``>``)."""


NoticeHandler = Callable[[Notice], Awaitable[None]]
StoredHandler = Callable[[Stored], Awaitable[None]]


class Bus(abc.ABC):
    """The port to the log (JetStream streams), the core subjects and the KV buckets.

    Every promise below holds for every implementation; the contract suite proves it."""

    @classmethod
    async def connect(cls, url: str, name: str, **options: Any) -> Bus:
        """A ``NatsBus`` connected to ``url`` (kept for callers that only know ``Bus``)."""
        from apex_runtime.bus import NatsBus

        return await NatsBus.connect(url, name, **options)

    # --- lifecycle -----------------------------------------------------------------

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """True while the bus can carry messages."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Delivers what is in flight, then disconnects; safe to call twice."""

    @abc.abstractmethod
    async def ensure_topology(self, *, wait_s: float = 60.0) -> None:
        """Creates (or updates) every stream and bucket of apex_contracts.streams."""

    @abc.abstractmethod
    async def ensure_consumer(self, spec: ConsumerSpec) -> None:
        """Brings an existing durable consumer's capacity to ``spec``'s; a missing one is
        left to the subscriber that creates it."""

    @abc.abstractmethod
    async def pull(self, spec: ConsumerSpec) -> PullConsumer:
        """The durable pull consumer ``spec`` (created, or bound when it exists): every
        message on its filter from the stream's start, each delivered until acknowledged
        (explicit acks; a message not acknowledged within ``ack_wait_s`` comes again, at
        most ``max_deliver`` times). Raises the transient bus errors while the stream is
        unavailable."""

    # --- publishing ----------------------------------------------------------------

    @abc.abstractmethod
    async def publish(self, message: Envelope, subject: str) -> int:
        """Stores ``message`` durably and returns its stream seq. The message id is the
        dedupe id: publishing the same id again within the stream's duplicate window
        stores nothing and returns the first seq. Raises Unavailable(publish_failed)."""

    async def publish_event(self, event: ThreadEvent) -> int:
        """``publish`` on the event's thread subject."""
        subject = subjects.thread_events(event.tenant_id, event.user_id, event.thread_id)
        return await self.publish(event, subject)

    @abc.abstractmethod
    async def publish_raw(self, subject: str, data: bytes, headers: Mapping[str, str] | None = None) -> int:
        """Stores ``data`` as it is (already encoded: a relayed audit entry, a dead letter)
        with ``headers``; a ``Nats-Msg-Id`` header is the dedupe id, with the promise of
        ``publish``. Returns the seq."""

    async def dead_letter(self, subject: str, data: bytes, headers: Mapping[str, str]) -> int:
        """Stores a message nobody could handle on the dead-letter stream under ``subject``
        (``subjects.dead_letter(original)``), with the headers that say why. Returns its seq."""
        if not subject.startswith(subjects.DEAD_LETTER_PREFIX + "."):
            raise ValueError(f"{subject} is not a dead-letter subject")
        return await self.publish_raw(subject, data, headers)

    # --- reading the log -----------------------------------------------------------

    @abc.abstractmethod
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
        """Every stored message on ``subject`` (wildcards allowed) with seq > ``after_seq``,
        in seq order, read ``batch`` at a time without creating a consumer. With
        ``upto_seq`` it stops after that seq. With ``through_seq`` (a seq known stored on
        ``subject``) it does not end before reaching it, waiting for a lagging replica;
        raises Unavailable(bus_unavailable) when it cannot."""

    async def read_subject(
        self,
        subject: str,
        *,
        after_seq: int = 0,
        batch: int = 1000,
        stream: str = APEX_EVT.name,
        through_seq: int = 0,
        upto_seq: int = 0,
    ) -> AsyncIterator[tuple[int, bytes]]:
        """``read_range`` as (seq, data) pairs."""
        async for stored in self.read_range(
            subject,
            after_seq=after_seq,
            batch=batch,
            stream=stream,
            through_seq=through_seq,
            upto_seq=upto_seq,
        ):
            yield stored.seq, stored.data

    @abc.abstractmethod
    async def follow(
        self, subject: str, handler: StoredHandler, *, after_seq: int | None = None
    ) -> Subscription:
        """Hands ``handler`` every message stored on ``subject`` after ``after_seq`` (None:
        only those stored from now on), in seq order, each once, until stopped; a lost
        connection resumes after the last seq handed over."""

    @abc.abstractmethod
    async def last_seq(self, subject: str, stream: str = APEX_EVT.name, *, leader: bool = False) -> int:
        """Seq of the newest message on ``subject``; 0 when none. ``leader``: the answer
        includes every acknowledged publish (a replica may lag by a moment otherwise)."""

    @abc.abstractmethod
    async def first_seq(self, stream: str = APEX_EVT.name) -> int:
        """The oldest seq the stream still holds (older ones aged out or were purged)."""

    @abc.abstractmethod
    async def head_seq(self, stream: str = APEX_EVT.name) -> int:
        """The stream's last seq, any subject; 0 when empty."""

    @abc.abstractmethod
    async def seq_before(self, moment: datetime, subject: str, stream: str = APEX_EVT.name) -> int:
        """The last seq stored on the stream before ``moment`` (the stream's head when
        nothing on ``subject`` was stored since; 0 when empty)."""

    @abc.abstractmethod
    async def stream_epoch(self, stream: str = APEX_EVT.name) -> str:
        """Identifies this incarnation of the stream: seqs of another epoch (the stream
        deleted and recreated) are not comparable."""

    @abc.abstractmethod
    async def owner_of_thread(self, thread_id: str) -> tuple[str, str] | None:
        """(tenant, user) whose subject holds ``thread_id``; None when it has no events.
        For auditing probes only, never to grant access."""

    @abc.abstractmethod
    async def stream_state(self, stream: str) -> StreamState:
        """The stream's size, positions, consumers and replicas."""

    @abc.abstractmethod
    async def consumer_state(self, stream: str, durable: str) -> ConsumerState | None:
        """The durable consumer's backlog; None when it does not exist (yet)."""

    @abc.abstractmethod
    async def purge(self, stream: str, subject: str, *, keep_after: int = 0) -> None:
        """Removes the messages on ``subject`` (only those with seq <= ``keep_after`` when
        given); later seqs are untouched."""

    @abc.abstractmethod
    async def delete_message(self, stream: str, seq: int) -> bool:
        """Removes one message; False when it was not there."""

    # --- core subjects -------------------------------------------------------------

    @abc.abstractmethod
    async def broadcast(self, subject: str, data: bytes, *, reply: str = "") -> None:
        """Fans ``data`` out to every current listener of ``subject``, at most once, not
        stored; returns once the server has it."""

    @abc.abstractmethod
    async def listen(self, subject: str, handler: NoticeHandler, *, queue: str = "") -> Subscription:
        """Hands ``handler`` every broadcast on ``subject`` (wildcards allowed) from now on;
        with ``queue``, each broadcast goes to one member of the queue group."""

    @abc.abstractmethod
    def new_inbox(self) -> str:
        """A unique subject for replies."""

    @abc.abstractmethod
    async def request(self, subject: str, data: bytes, *, timeout: float = 5.0) -> bytes:
        """One request, one reply. Raises Unavailable(service_unavailable) when nobody
        listens, Unavailable when the reply does not come in ``timeout``."""

    async def query(self, name: str, request: BaseModel, reply_type: type[R], *, timeout: float = 5.0) -> R:
        """Asks persistence's read API; raises the ApexError it answered with."""
        data = await self.query_raw(name, request, timeout=timeout)
        try:
            return reply_type.model_validate(data)
        except ValidationError as exc:
            raise Unavailable(f"{name} answered with an unexpected shape: {exc}") from exc

    async def query_raw(self, name: str, request: BaseModel, *, timeout: float = 5.0) -> dict[str, Any]:
        """``query`` without the reply's type."""
        raw = await self.request(subjects.query(name), request.model_dump_json().encode(), timeout=timeout)
        reply = QueryReply.model_validate_json(raw)
        if not reply.ok:
            raise ApexError.from_info(
                reply.error or ErrorInfo(code="internal_error", message="empty error reply", retryable=True)
            )
        return reply.data or {}

    # --- buckets and watches -------------------------------------------------------

    @abc.abstractmethod
    async def bucket(self, name: str) -> KvBucket:
        """The KV bucket ``name`` (made by ``ensure_topology``)."""

    def watch(self, subject: str, *, after_seq: int | None = None) -> SubjectWatch:
        """Follows ``subject`` from ``after_seq`` (None: from its last message now) and
        waits for facts on it, already stored or still to come."""
        from apex_runtime.watch import SubjectWatch

        return SubjectWatch(self, subject, after_seq=after_seq)
