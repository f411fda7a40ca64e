"""The AsyncAPI description of the bus, built from the services' own FastStream routers
(what each service consumes) plus a declaration of what each publishes, with the
contract models as payload schemas."""

from __future__ import annotations

from typing import Any

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI

from apex_contracts import busapi, commands, events, frames, subjects
from apex_contracts.audit import AuditEntry
from apex_contracts.health import Heartbeat

EVENT_SUBJECT = "apex.evt.{tenant_id}.{user_id}.{thread_id}"

# (subject, title, payload, publisher service, description)
PUBLISHED: list[tuple[str, str, Any, str, str]] = [
    (
        subjects.CMD_RUN_START,
        "run.start command",
        commands.RunStart,
        "gateway",
        "A user message starts a run. Nats-Msg-Id = <run_id>:start.",
    ),
    (
        subjects.CMD_RUN_CANCEL,
        "run.cancel command",
        commands.RunCancel,
        "gateway",
        "Cancel a run of the sender. Nats-Msg-Id = <run_id>:cancel.",
    ),
    (
        subjects.CMD_USAGE_INGEST + ".{tenant_id}",
        "usage.ingest command",
        commands.UsageIngest,
        "ingest",
        "A batch of validated, new usage records of one tenant, on its tenant's subject (the batches "
        "still waiting there count as committed for the next upload's duplicate check). "
        "Nats-Msg-Id = <batch_id>:<part>.",
    ),
    (
        subjects.CMD_AGENT_STEP,
        "agent.step command",
        commands.AgentStep,
        "orchestrator",
        "Run one agent step. Nats-Msg-Id = <run_id>:<step>:agent.step.",
    ),
    (
        subjects.CMD_TOOL_CALL,
        "tool.call command",
        commands.ToolCall,
        "agents",
        "Run one tool call. Nats-Msg-Id = <run_id>:<call_id>:tool.call.",
    ),
    (
        EVENT_SUBJECT,
        "thread events",
        events.Event,
        "gateway, orchestrator, agents, tools",
        "Every event of a thread, one total order (the stream sequence is the client's seq).",
    ),
    (
        "apex.audit.{tenant_id}",
        "audit entries",
        AuditEntry,
        "auth, gateway",
        "Security-relevant facts, projected into the append-only audit log.",
    ),
    (
        "apex.health.{service}.{instance}",
        "heartbeats",
        Heartbeat,
        "every service",
        "Liveness, readiness and circuit breakers of one process, every 2 s.",
    ),
    (
        "apex.dlq.{command}",
        "dead letters",
        bytes,
        "every command consumer",
        "A command that failed on every delivery, with Apex-Error-* headers.",
    ),
]


_API = busapi.API_PREFIX + ".{tenant_id}.{user_id}."
_ERROR_REPLY = (
    "or an error frame {type: error, code, message, retryable} (the WebSocket's codes: invalid_json, "
    "invalid_frame, invalid_id, not_found, bus_unavailable, internal_error). "
)
_ACCOUNT = (
    "a tenant's service account (request/reply; its replies arrive under its inbox prefix "
    "_INBOX.{user_id}). The NATS server refuses any other tenant or user. See docs/bus-api.md."
)
# The bus API: what a service account sends (it may also read its threads' events,
# ``apex.evt.<tenant_id>.<user_id>.>``, by core subscription or a filtered ordered consumer)
BUS_API: list[tuple[str, str, Any, str, str]] = [
    (
        _API + busapi.OP_MESSAGE_SEND,
        "bus API message.send",
        frames.MessageSend,
        _ACCOUNT,
        "The WebSocket message.send frame's JSON (type optional): starts a run, once per client_msg_id. "
        "Reply: the message.accepted frame {type, client_msg_id, thread_id, run_id}, "
        + _ERROR_REPLY
        + "Answered by the gateway (queue group gateway-bus-api).",
    ),
    (
        _API + busapi.OP_RUN_CANCEL,
        "bus API run.cancel",
        frames.RunCancelFrame,
        _ACCOUNT,
        "The WebSocket run.cancel frame's JSON: the run ends with run.cancelled. Reply: "
        "{type: run.cancel.requested, run_id, thread_id, status: cancel_requested}, "
        + _ERROR_REPLY
        + "Answered by the gateway (queue group gateway-bus-api).",
    ),
    (
        _API + busapi.OP_USAGE_INGEST,
        "bus API usage.ingest",
        bytes,
        _ACCOUNT,
        "Usage records as NDJSON (one JSON object a line, the fields of POST /api/v1/usage), at most "
        "the servers' max_payload (8 MB as Apex configures NATS). Reply: POST /api/v1/usage's answer with type usage.ingested "
        "{accepted, duplicates, rejected: [{line, error}], ...}, "
        + _ERROR_REPLY
        + "Answered by the ingest service (queue group ingest-bus-api).",
    ),
]


def _routers() -> list[Any]:
    from apex_agents.handlers import build_router as agents_router
    from apex_orchestrator.handlers import build_router as orchestrator_router
    from apex_persistence.bus_spec import routers as persistence_routers
    from apex_tools.handlers import build_router as tools_router

    return [
        orchestrator_router(None, None, 1),  # type: ignore[arg-type]
        agents_router(None, 1),  # type: ignore[arg-type]
        tools_router(None, 1),  # type: ignore[arg-type]
        *persistence_routers(),
    ]


def build_spec() -> dict[str, Any]:
    broker = NatsBroker("nats://127.0.0.1:4222", description="Apex bus: NATS JetStream")
    for router in _routers():
        broker.include_router(router)
    for subject, title, payload, publisher, description in [*PUBLISHED, *BUS_API]:
        broker.publisher(
            subject, title=title, description=f"Published by {publisher}. {description}", schema=payload
        )
    spec = AsyncAPI(
        broker,
        title="Apex bus",
        version="1.0.0",
        description="Commands, events, reads and heartbeats of Apex. Generated from code.",
    )
    return spec.to_specification().to_jsonable()  # type: ignore[no-any-return]
