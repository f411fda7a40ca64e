"""The client protocol ``apex.v1``: JSON text frames over the gateway's ``/ws``.

``parse_client_frame`` turns a text frame into a typed frame or raises an ``ApexError``
whose code tells the client exactly what was wrong (``invalid_json``, ``unknown_type``,
``invalid_frame``, ``invalid_id``); the connection stays open either way. It reads no field
of the raw JSON before checking its type: any JSON value in any place is an answer, never a
crash (property-tested over a live socket in tests/e2e/test_hostile_frames.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, Field, TypeAdapter, ValidationError

from apex_contracts.envelope import Model
from apex_contracts.errors import ErrorCode, InvalidId, InvalidInput
from apex_contracts.ids import RunId, ThreadId

PROTOCOL: Literal["apex.v1"] = "apex.v1"
BEARER_SUBPROTOCOL_PREFIX = "apex.bearer."
# what one ``events`` frame may carry: events (``thread.subscribe`` ``max_batch``), and
# bytes of event frames; an event frame larger than that is sent on its own
MAX_BATCH = 1000
BATCH_BYTES = 256 * 1024


def no_nul(value: str) -> str:
    """Text a person wrote, stored in Postgres: it can hold any character but NUL."""
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    return value


UserText = Annotated[str, AfterValidator(no_nul)]
Ref = Annotated[str | None, Field(default=None, max_length=100)]
ClientMsgId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_\-:.]+$")]


# --- client to server ----------------------------------------------------------------


class MessageSend(Model):
    type: Literal["message.send"] = "message.send"
    ref: Ref = None
    client_msg_id: ClientMsgId
    text: UserText = Field(min_length=1, max_length=16_000)
    thread_id: ThreadId | None = None


class SocketMessageSend(MessageSend):
    """``message.send`` on a WebSocket, which subscribes the socket to a thread it does
    not follow yet: ``max_batch`` is that subscription's, as in ``thread.subscribe``."""

    max_batch: int = Field(default=1, ge=1, le=MAX_BATCH)


class ThreadSubscribe(Model):
    type: Literal["thread.subscribe"] = "thread.subscribe"
    ref: Ref = None
    thread_id: ThreadId
    after_seq: Annotated[int, Field(ge=0)] | Literal["cursor"] = 0
    epoch: str | None = Field(default=None, max_length=100)
    # up to this many events of the thread may share one ``events`` frame (1: each its own)
    max_batch: int = Field(default=1, ge=1, le=MAX_BATCH)


class ThreadUnsubscribe(Model):
    type: Literal["thread.unsubscribe"] = "thread.unsubscribe"
    ref: Ref = None
    thread_id: ThreadId


class EventAck(Model):
    type: Literal["event.ack"] = "event.ack"
    ref: Ref = None
    thread_id: ThreadId
    seq: int = Field(ge=0)


class RunCancelFrame(Model):
    type: Literal["run.cancel"] = "run.cancel"
    ref: Ref = None
    run_id: RunId


class Ping(Model):
    type: Literal["ping"] = "ping"
    ref: Ref = None


class SessionRefresh(Model):
    """A new access token for the open socket: same user, tenant and session. Answered
    with ``session.refreshed``; the socket then lives until the new token expires."""

    type: Literal["session.refresh"] = "session.refresh"
    ref: Ref = None
    token: str = Field(min_length=1, max_length=8192)


ClientFrame = Annotated[
    SocketMessageSend
    | ThreadSubscribe
    | ThreadUnsubscribe
    | EventAck
    | RunCancelFrame
    | Ping
    | SessionRefresh,
    Field(discriminator="type"),
]
CLIENT_FRAME_TYPES: frozenset[str] = frozenset(
    {
        "message.send",
        "thread.subscribe",
        "thread.unsubscribe",
        "event.ack",
        "run.cancel",
        "ping",
        "session.refresh",
    }
)
MAX_REF_CHARS = 100
_CLIENT_ADAPTER: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


def parse_client_frame(text: str | bytes) -> ClientFrame:
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("The frame is not valid JSON.", code=ErrorCode.INVALID_JSON) from exc
    if not isinstance(raw, dict):
        raise InvalidInput("A frame is a JSON object.", code=ErrorCode.INVALID_FRAME)
    ref = _echoable_ref(raw.get("ref"))
    frame_type = raw.get("type")
    # an unhashable ``type`` (a list, an object) must not reach the set lookup
    if not isinstance(frame_type, str) or frame_type not in CLIENT_FRAME_TYPES:
        shown = frame_type[:40] if isinstance(frame_type, str) else type(frame_type).__name__
        raise InvalidInput(
            f"Unknown frame type {shown!r}.",
            code=ErrorCode.UNKNOWN_TYPE,
            details={"ref": ref, "known": sorted(CLIENT_FRAME_TYPES)},
        )
    try:
        return _CLIENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise _frame_error(exc, ref) from None


def _echoable_ref(value: Any) -> str | None:
    """The frame's ``ref`` when it is one an answer may carry back (a short string)."""
    return value if isinstance(value, str) and len(value) <= MAX_REF_CHARS else None


def _frame_error(exc: ValidationError, ref: str | None) -> InvalidInput:
    first = exc.errors(include_url=False, include_input=False)[0]
    location = ".".join(str(part) for part in first["loc"][1:]) or "frame"
    message = f"{location}: {first['msg']}"
    details: dict[str, Any] = {"ref": ref, "field": location}
    if "_id" in location and first["type"] in {"value_error", "string_pattern_mismatch"}:
        return InvalidId(message, details=details)
    return InvalidInput(message, code=ErrorCode.INVALID_FRAME, details=details)


# --- server to client ----------------------------------------------------------------


class SessionReady(Model):
    type: Literal["session.ready"] = "session.ready"
    connection_id: str
    user_id: str
    tenant_id: str
    protocol: Literal["apex.v1"] = PROTOCOL
    heartbeat_ms: int
    epoch: str
    limits: dict[str, int] = {}


class EventFrame(Model):
    type: Literal["event"] = "event"
    thread_id: str
    seq: int
    event: dict[str, Any]


class EventsFrame(Model):
    """Events of one thread that were waiting to be written together, in seq order, each
    exactly as its own ``event`` frame would be; only to a subscription that asked for
    them (``max_batch`` > 1), at most ``max_batch`` events and about ``BATCH_BYTES``."""

    type: Literal["events"] = "events"
    thread_id: str
    events: list[EventFrame]


class MessageAccepted(Model):
    type: Literal["message.accepted"] = "message.accepted"
    ref: str | None = None
    client_msg_id: str
    thread_id: str
    run_id: str


class ThreadSubscribed(Model):
    """Sent before the replay: events with seq in (from_seq, head_seq] follow as replay,
    later ones are live. ``head_seq`` is 0 for a thread with no events yet."""

    type: Literal["thread.subscribed"] = "thread.subscribed"
    ref: str | None = None
    thread_id: str
    from_seq: int
    head_seq: int


class Pong(Model):
    type: Literal["pong"] = "pong"
    ref: str | None = None


class SessionRefreshed(Model):
    """The socket now lives until ``expires_at`` (epoch seconds, the new token's ``exp``)."""

    type: Literal["session.refreshed"] = "session.refreshed"
    ref: str | None = None
    expires_at: int


class ErrorFrame(Model):
    type: Literal["error"] = "error"
    code: str
    message: str
    retryable: bool
    ref: str | None = None
    thread_id: str | None = None
    retry_after_ms: int | None = None
    last_seq: int | None = None
    first_seq: int | None = None
    # ``replay_incomplete``: the seqs (inclusive) neither the stream nor the archive holds
    gap_from: int | None = None
    gap_to: int | None = None
    # ``internal_error`` only: the id under which the server logged the fault
    incident: str | None = None


ServerFrame = Annotated[
    SessionReady
    | EventFrame
    | EventsFrame
    | MessageAccepted
    | ThreadSubscribed
    | Pong
    | SessionRefreshed
    | ErrorFrame,
    Field(discriminator="type"),
]
SERVER_FRAME_ADAPTER: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame)


def event_frames(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The event frames a decoded server frame carries: itself for an ``event``, its
    elements for an ``events``, none for any other frame."""
    kind = frame.get("type")
    if kind == "event":
        return [frame]
    return list(frame["events"]) if kind == "events" else []


def parse_server_frame(text: str | bytes) -> ServerFrame:
    return SERVER_FRAME_ADAPTER.validate_json(text)


# Close codes and their reasons.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_LARGE = 1009
CLOSE_SERVICE_RESTART = 1012
CLOSE_BAD_HANDSHAKE = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_SLOW_CONSUMER = 4408
CLOSE_TOO_MANY = 4429
