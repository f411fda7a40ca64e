"""Events: past-tense facts on ``apex.evt.<tenant>.<user>.<thread>``, one total order per thread.

Each event class fixes its ``type`` and the shape of its ``data``. ``EVENT_TYPES`` maps a
type to its class; ``parse_event`` reads raw bytes into the right class (after
upcasting); ``LIFECYCLE`` are the five events that must never be dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import Field, TypeAdapter

from apex_contracts import upcasters as _upcasters  # noqa: F401  (registers the upcasters)
from apex_contracts.envelope import AgentName, Envelope, Model, upcast
from apex_contracts.errors import ErrorInfo
from apex_contracts.ids import CallId, MessageId, RunId, ThreadId, UserId, validate_id
from apex_contracts.report import AgentOutput, AssistantResponse, ResponseStatus
from apex_contracts.subjects import EVT_PREFIX


class ThreadEvent(Envelope):
    """An event always belongs to a thread of a user of a tenant."""

    user_id: UserId
    thread_id: ThreadId


# --- the conversation ---------------------------------------------------------------


class MessageCreatedData(Model):
    message_id: MessageId
    role: Literal["user"] = "user"
    content: str
    client_msg_id: str
    title: str | None = None


class MessageCreated(ThreadEvent):
    """The user's message, recorded before its run starts."""

    type: Literal["message.created"] = "message.created"
    data: MessageCreatedData


class MessageDeltaData(Model):
    message_id: MessageId
    index: int = Field(ge=0)
    text: str
    step: int | None = Field(default=None, ge=0)
    attempt: int = Field(default=1, ge=1)


class MessageDelta(ThreadEvent):
    """A coalesced chunk of the assistant's streamed text: chunk ``index`` of message
    ``message_id``, written by ``attempt`` of agent ``step`` (each attempt of a step
    streams under its own message ids). Version 2: ``step`` is always named (a v1 delta
    may name it only in its id; ``apex_contracts.upcasters`` reads it from there)."""

    type: Literal["message.delta"] = "message.delta"
    schema_version: int = 2
    data: MessageDeltaData


class MessageSupersededData(Model):
    step: int = Field(ge=0)
    attempt: int = Field(ge=2)
    message_ids: list[MessageId] = Field(min_length=1)


class MessageSuperseded(ThreadEvent):
    """Attempt ``attempt`` of agent ``step`` runs again after an earlier one died while
    streaming: the streamed messages ``message_ids`` of the earlier attempts no longer
    count. A reader drops what it showed of them and ignores any later delta of them (a
    paused worker may still send some); the new attempt streams under new ids."""

    type: Literal["message.superseded"] = "message.superseded"
    data: MessageSupersededData


class ThreadRenamedData(Model):
    title: str = Field(min_length=1, max_length=200)


class ThreadRenamed(ThreadEvent):
    type: Literal["thread.renamed"] = "thread.renamed"
    data: ThreadRenamedData


class ThreadDeletedData(Model):
    erase: bool = False
    requested_by: UserId
    runs: list[RunId] = Field(default=[], max_length=100_000)


class ThreadDeleted(ThreadEvent):
    """Tombstone: projections hide (or, with ``erase``, remove) the thread everywhere. An
    erasure covers what came before it in the log, and the later events of ``runs`` (the
    thread's runs that may still be going: their last facts follow the tombstone)."""

    type: Literal["thread.deleted"] = "thread.deleted"
    data: ThreadDeletedData


# --- a run ---------------------------------------------------------------------------


class RunAcceptedData(Model):
    message_id: MessageId
    question: str
    attempt: int = 1


class RunAccepted(ThreadEvent):
    type: Literal["run.accepted"] = "run.accepted"
    data: RunAcceptedData


class RunQueuedData(Model):
    behind: list[RunId] = []
    policy: Literal["enqueue", "interrupt"] = "enqueue"
    reason: Literal["concurrency", "waiting_for_service"] = "concurrency"
    waiting_for: list[str] = []


class RunQueued(ThreadEvent):
    """The run waits. ``reason`` says why: ``concurrency`` (double-texting) waits for the
    user's earlier runs (``enqueue``) or for the ones it interrupted to stop
    (``interrupt``), named in ``behind``; ``waiting_for_service`` (appended by the
    gateway) waits for the services named in ``waiting_for`` to come back: the command
    is kept, and the run starts when they do."""

    type: Literal["run.queued"] = "run.queued"
    data: RunQueuedData


class RunCancelRequestedData(Model):
    cause: str
    requested_by: str


class RunCancelRequested(ThreadEvent):
    type: Literal["run.cancel_requested"] = "run.cancel_requested"
    data: RunCancelRequestedData


class AgentStartedData(Model):
    agent: AgentName
    step: int = Field(ge=0)


class AgentStarted(ThreadEvent):
    type: Literal["agent_started"] = "agent_started"
    data: AgentStartedData


class AgentThinkingData(Model):
    agent: AgentName
    step: int = Field(ge=0)
    text: str


class AgentThinking(ThreadEvent):
    type: Literal["agent_thinking"] = "agent_thinking"
    data: AgentThinkingData


class AgentCompletedData(Model):
    agent: AgentName
    step: int = Field(ge=0)
    duration_ms: int = Field(ge=0)
    summary: str
    output: AgentOutput
    tokens: int = 0
    llm_cost_usd: float = Field(default=0.0, ge=0)
    brain: Literal["offline", "llm"] = "offline"


class AgentCompleted(ThreadEvent):
    type: Literal["agent_completed"] = "agent_completed"
    data: AgentCompletedData


class AgentFailedData(Model):
    agent: AgentName
    step: int = Field(ge=0)
    error: ErrorInfo


class AgentFailed(ThreadEvent):
    type: Literal["agent_failed"] = "agent_failed"
    data: AgentFailedData


class ToolExecutingData(Model):
    call_id: CallId
    tool: str
    arguments: dict[str, Any]
    agent: AgentName | None = None


class ToolExecuting(ThreadEvent):
    type: Literal["tool_executing"] = "tool_executing"
    data: ToolExecutingData


class ToolCompletedData(Model):
    call_id: CallId
    tool: str
    status: Literal["ok", "error"]
    duration_ms: int = Field(ge=0)
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None


class ToolCompleted(ThreadEvent):
    type: Literal["tool_completed"] = "tool_completed"
    data: ToolCompletedData


class RunUsage(Model):
    tool_calls: int = 0
    llm_tokens: int = 0
    llm_cost_usd: float = 0.0


class RunCompletedData(Model):
    status: ResponseStatus
    response: AssistantResponse
    duration_ms: int = Field(ge=0)
    usage: RunUsage = RunUsage()


class RunCompleted(ThreadEvent):
    type: Literal["run.completed"] = "run.completed"
    data: RunCompletedData


class RunFailedData(Model):
    error: ErrorInfo
    duration_ms: int = Field(default=0, ge=0)


class RunFailed(ThreadEvent):
    type: Literal["run.failed"] = "run.failed"
    data: RunFailedData


class RunCancelledData(Model):
    cause: str
    duration_ms: int = Field(default=0, ge=0)


class RunCancelled(ThreadEvent):
    type: Literal["run.cancelled"] = "run.cancelled"
    data: RunCancelledData


Event = Annotated[
    MessageCreated
    | MessageDelta
    | MessageSuperseded
    | ThreadRenamed
    | ThreadDeleted
    | RunAccepted
    | RunQueued
    | RunCancelRequested
    | AgentStarted
    | AgentThinking
    | AgentCompleted
    | AgentFailed
    | ToolExecuting
    | ToolCompleted
    | RunCompleted
    | RunFailed
    | RunCancelled,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_TYPES: dict[str, type[ThreadEvent]] = {
    cls.model_fields["type"].default: cls for cls in ThreadEvent.__subclasses__()
}
# the version a producer writes today: the default of each class's ``schema_version``
CURRENT_VERSIONS: dict[str, int] = {
    name: int(cls.model_fields["schema_version"].default) for name, cls in EVENT_TYPES.items()
}

TERMINAL: frozenset[str] = frozenset({"run.completed", "run.failed", "run.cancelled"})
LIFECYCLE: frozenset[str] = frozenset(
    {"agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"}
)


def parse_event(raw: bytes | str | dict[str, Any]) -> Event:
    """Reads an event of any known type and version; raises pydantic.ValidationError."""
    data = raw if isinstance(raw, dict) else orjson.loads(raw)
    return EVENT_ADAPTER.validate_python(upcast(data, CURRENT_VERSIONS))


def read_event(raw: bytes | str | dict[str, Any]) -> Event | None:
    """Reads a message of a thread's log into its event class, upcast to the current
    version: None for a type this reader does not know (a newer producer's, which a
    reader skips); raises pydantic.ValidationError for a known type that is malformed,
    orjson.JSONDecodeError for bytes that are not JSON."""
    data = raw if isinstance(raw, dict) else orjson.loads(raw)
    if data.get("type") not in EVENT_TYPES:
        return None
    return parse_event(data)


_HIDDEN = ("tenant_id", "user_id", "causation_id", "correlation_id")


def client_view(event: dict[str, Any]) -> dict[str, Any]:
    """The event as a client sees it: without tenant and tracing internals."""
    view = dict(event)
    for key in _HIDDEN:
        view.pop(key, None)
    return view


# --- a user --------------------------------------------------------------------------


class UserErasedData(Model):
    requested_by: UserId
    reason: str | None = Field(default=None, max_length=200)
    runs: list[RunId] = Field(default=[], max_length=100_000)
    account_closed: bool = False


class UserErased(Envelope):
    """Tombstone of a user: every store erases everything of the user that came before it
    in the log (threads, messages, runs, events, hot keys, analytics rows, the user's audit
    entries), and the later events of ``runs`` (the user's runs that may still be going);
    the user's subjects are purged from the log; persistence audits it as ``data.erased``.
    Events of the user after it (none once the account is closed, ``account_closed``) are
    not covered; a re-registered user is a new user id.

    Not a thread event: it is published on the user's own subject in APEX_EVT,
    ``UserErased.subject(tenant, user)`` = ``apex.evt.<tenant>.<user>.erased``, so it
    takes its place in the one total order of the log. Nats-Msg-Id = ``<user_id>:erased``.
    """

    type: Literal["user.erased"] = "user.erased"
    user_id: UserId
    data: UserErasedData

    SUBJECT_TOKEN: ClassVar[str] = "erased"

    @staticmethod
    def subject(tenant_id: str, user_id: str) -> str:
        return f"{EVT_PREFIX}.{validate_id(tenant_id, 'ten')}.{validate_id(user_id, 'usr')}.erased"
