"""The envelope every message on the bus carries, and how old versions are read.

A message is a frozen pydantic model: the envelope fields plus ``data``, typed per
``type``. Readers ignore fields they do not know, so the envelope can grow without
breaking them; a change to the meaning of ``data`` bumps ``schema_version`` and
registers an upcaster that turns the old shape into the new one before validation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from apex_contracts.ids import RunId, TenantId, ThreadId, UserId

E = TypeVar("E", bound="Envelope")

AgentName = Literal["supervisor", "triage", "data_helper", "reporting"]
AGENTS: tuple[AgentName, ...] = ("supervisor", "triage", "data_helper", "reporting")

_MESSAGE_ID_RE = re.compile(r"^[A-Za-z0-9_:.\-]{1,200}$")


def _check_message_id(value: str) -> str:
    if not _MESSAGE_ID_RE.match(value):
        raise ValueError("message ids use letters, digits and _ : . - (at most 200)")
    return value


MessageKey = Annotated[str, AfterValidator(_check_message_id)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Model(BaseModel):
    """Base of every contract model: frozen, tolerant of unknown fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Envelope(Model):
    """Fields common to commands and events. ``id`` doubles as ``Nats-Msg-Id``."""

    id: MessageKey
    type: str
    schema_version: int = 1
    tenant_id: TenantId
    user_id: UserId | None = None
    thread_id: ThreadId | None = None
    run_id: RunId | None = None
    agent: AgentName | None = None
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    causation_id: str | None = None
    correlation_id: str | None = None
    data: Model

    def wire(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class Scope(Model):
    """Who and where a message is about; stamps envelopes so handlers stay short."""

    tenant_id: TenantId
    user_id: UserId
    thread_id: ThreadId
    run_id: RunId | None = None
    correlation_id: str | None = None

    def make(
        self,
        cls: type[E],
        data: Model,
        *,
        id: str,
        agent: AgentName | None = None,
        causation_id: str | None = None,
    ) -> E:
        return cls(  # type: ignore[call-arg]  # each event class defaults its own `type`
            id=id,
            tenant_id=self.tenant_id,
            user_id=self.user_id,
            thread_id=self.thread_id,
            run_id=self.run_id,
            agent=agent,
            causation_id=causation_id,
            correlation_id=self.correlation_id or self.run_id,
            data=data,
        )

    @classmethod
    def of(cls, message: Envelope) -> Self:
        if message.user_id is None or message.thread_id is None:
            raise ValueError(f"{message.type} {message.id} has no user or thread")
        return cls(
            tenant_id=message.tenant_id,
            user_id=message.user_id,
            thread_id=message.thread_id,
            run_id=message.run_id,
            correlation_id=message.correlation_id,
        )


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(message_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Registers a function that turns a message of ``from_version`` (the whole raw
    message: an upcaster may need its envelope, say its id) into the message of version
    ``from_version + 1``; ``upcast`` stamps the new version."""

    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(message_type, from_version)] = fn
        return fn

    return register


def upcast(raw: dict[str, Any], current: dict[str, int]) -> dict[str, Any]:
    """Applies registered upcasters until ``raw`` is at the current version of its type."""
    message_type = raw.get("type")
    if not isinstance(message_type, str):
        return raw
    version = int(raw.get("schema_version", 1))
    target = current.get(message_type, version)
    while version < target:
        step = _UPCASTERS.get((message_type, version))
        if step is None:
            raise ValueError(f"no upcaster for {message_type} v{version}")
        raw = {**step({**raw, "data": dict(raw.get("data") or {})}), "schema_version": version + 1}
        version += 1
    return raw
