"""Every command, event and frame type survives a round trip through its wire form."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from apex_contracts import (
    EVENT_TYPES,
    InvalidId,
    InvalidInput,
    Scope,
    new_id,
    parse_command,
    parse_event,
    subjects,
)
from apex_contracts import commands as cmd
from apex_contracts import events as ev
from apex_contracts.envelope import upcast, upcaster
from apex_contracts.errors import ErrorCode, ErrorInfo
from apex_contracts.frames import CLIENT_FRAME_TYPES, SERVER_FRAME_ADAPTER, parse_client_frame
from apex_contracts.report import AssistantResponse, Period, Report, ReportingOutput, SupervisorOutput

PARSER_CODES = {ErrorCode.INVALID_JSON, ErrorCode.UNKNOWN_TYPE, ErrorCode.INVALID_FRAME, ErrorCode.INVALID_ID}

SCOPE = Scope(tenant_id=new_id("ten"), user_id=new_id("usr"), thread_id=new_id("thr"), run_id=new_id("run"))
ERROR = ErrorInfo(code="tool_failed", message="boom", retryable=True)
RESPONSE = AssistantResponse(text="hi", report=Report(period=Period(), total_cost_usd=1.234, requests=3))
CALL = new_id("call")
MSG = new_id("msg")

EVENT_DATA: dict[str, Any] = {
    "message.created": ev.MessageCreatedData(message_id=MSG, content="hello", client_msg_id="c1"),
    "message.delta": ev.MessageDeltaData(message_id=MSG, index=0, text="he", step=3, attempt=2),
    "message.superseded": ev.MessageSupersededData(step=3, attempt=2, message_ids=[MSG]),
    "thread.renamed": ev.ThreadRenamedData(title="Costs"),
    "thread.deleted": ev.ThreadDeletedData(requested_by=SCOPE.user_id),
    "run.accepted": ev.RunAcceptedData(message_id=MSG, question="q"),
    "run.queued": ev.RunQueuedData(behind=[new_id("run")]),
    "run.cancel_requested": ev.RunCancelRequestedData(cause="user", requested_by=SCOPE.user_id),
    "agent_started": ev.AgentStartedData(agent="triage", step=1),
    "agent_thinking": ev.AgentThinkingData(agent="triage", step=1, text="hmm"),
    "agent_completed": ev.AgentCompletedData(
        agent="supervisor",
        step=0,
        duration_ms=3,
        summary="planned",
        output=SupervisorOutput(plan=["triage", "reporting"]),
    ),
    "agent_failed": ev.AgentFailedData(agent="triage", step=1, error=ERROR),
    "tool_executing": ev.ToolExecutingData(call_id=CALL, tool="usage_coverage", arguments={"a": 1}),
    "tool_completed": ev.ToolCompletedData(
        call_id=CALL, tool="usage_coverage", status="ok", duration_ms=4, result={}
    ),
    "run.completed": ev.RunCompletedData(status="completed", response=RESPONSE, duration_ms=10),
    "run.failed": ev.RunFailedData(error=ERROR),
    "run.cancelled": ev.RunCancelledData(cause="user"),
}


def test_every_event_type_has_a_sample() -> None:
    assert set(EVENT_DATA) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_event_round_trip(event_type: str) -> None:
    cls = EVENT_TYPES[event_type]
    event = SCOPE.make(cls, EVENT_DATA[event_type], id=f"{SCOPE.run_id}:{event_type}")
    parsed = parse_event(event.wire())
    assert type(parsed) is cls
    assert parsed == event


def test_money_is_rounded_to_cents_and_latency_to_ms() -> None:
    assert RESPONSE.report.total_cost_usd == 1.23
    output = ReportingOutput(status="completed", response=RESPONSE)
    assert output.response.report.total_cost_usd == 1.23


COMMANDS = [
    SCOPE.make(cmd.RunStart, cmd.RunStartData(message_id=MSG, text="q", client_msg_id="c"), id="a"),
    SCOPE.make(cmd.RunCancel, cmd.RunCancelData(requested_by=SCOPE.user_id), id="b"),
    SCOPE.make(
        cmd.AgentStep, cmd.AgentStepData(agent="reporting", step=3, question="q"), id="c", agent="reporting"
    ),
    SCOPE.make(cmd.ToolCall, cmd.ToolCallData(call_id=CALL, tool="cost_breakdown"), id="d"),
    cmd.UsageIngest(id="e", tenant_id=SCOPE.tenant_id, data=cmd.UsageIngestData(batch_id="b1", records=[])),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.type)
def test_command_round_trip(command: Any) -> None:
    assert parse_command(command.wire()) == command


def test_unknown_fields_are_ignored_and_unknown_types_refused() -> None:
    event = SCOPE.make(ev.RunCancelled, ev.RunCancelledData(cause="user"), id="x")
    raw = {**event.model_dump(mode="json"), "future_field": 1}
    assert parse_event(raw) == event
    with pytest.raises(ValidationError):
        parse_event({**raw, "type": "run.exploded"})


def test_upcasters_bring_old_versions_forward() -> None:
    @upcaster("test.renamed", 1)
    def _v1_to_v2(message: dict[str, Any]) -> dict[str, Any]:
        return {**message, "data": {"title": message["data"]["name"]}}

    raw = {"type": "test.renamed", "schema_version": 1, "data": {"name": "x"}}
    assert upcast(raw, {"test.renamed": 2}) == {
        "type": "test.renamed",
        "schema_version": 2,
        "data": {"title": "x"},
    }


def test_bad_ids_never_enter_a_subject() -> None:
    with pytest.raises(InvalidId):
        subjects.thread_events(SCOPE.tenant_id, SCOPE.user_id, "thr_*")
    with pytest.raises(InvalidId):
        subjects.thread_events("ten_>", SCOPE.user_id, SCOPE.thread_id)
    with pytest.raises(ValidationError):
        SCOPE.model_copy(update={}).make(
            ev.RunCancelled, ev.RunCancelledData(cause="x"), id="bad id with spaces"
        )
    assert subjects.parse_thread_subject(
        subjects.thread_events(SCOPE.tenant_id, SCOPE.user_id, SCOPE.thread_id)
    ) == (SCOPE.tenant_id, SCOPE.user_id, SCOPE.thread_id)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", ErrorCode.INVALID_JSON),
        ("[]", ErrorCode.INVALID_FRAME),
        ('{"type": "nope"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "message.send", "text": "x"}', ErrorCode.INVALID_FRAME),
        ('{"type": "message.send", "client_msg_id": "c", "text": 5}', ErrorCode.INVALID_FRAME),
        ('{"type": "thread.subscribe", "thread_id": "thr_nope"}', ErrorCode.INVALID_ID),
        (f'{{"type": "event.ack", "thread_id": "{SCOPE.thread_id}", "seq": -1}}', ErrorCode.INVALID_FRAME),
        ('{"type": "run.cancel", "run_id": "run_1"}', ErrorCode.INVALID_ID),
        ('{"type": []}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": {}}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": null}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "session.refresh"}', ErrorCode.INVALID_FRAME),
        ('{"type": "session.refresh", "token": ["x"]}', ErrorCode.INVALID_FRAME),
    ],
)
def test_bad_client_frames_have_precise_codes(text: str, code: ErrorCode) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_client_frame(text)
    assert raised.value.code == code


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "message.send", "client_msg_id": "c-1", "text": "hi", "ref": "r1"},
        {"type": "thread.subscribe", "thread_id": SCOPE.thread_id, "after_seq": "cursor"},
        {"type": "thread.subscribe", "thread_id": SCOPE.thread_id, "after_seq": 7},
        {"type": "thread.unsubscribe", "thread_id": SCOPE.thread_id},
        {"type": "event.ack", "thread_id": SCOPE.thread_id, "seq": 9},
        {"type": "run.cancel", "run_id": SCOPE.run_id},
        {"type": "ping"},
        {"type": "session.refresh", "token": "a.b.c"},
    ],
)
def test_client_frames_parse(frame: dict[str, Any]) -> None:
    import orjson

    parsed = parse_client_frame(orjson.dumps(frame))
    assert parsed.model_dump(exclude_none=True, exclude_defaults=False) | frame == parsed.model_dump(
        exclude_none=True
    )


def test_server_frames_parse() -> None:
    samples = [
        {
            "type": "session.ready",
            "connection_id": "c",
            "user_id": "u",
            "tenant_id": "t",
            "protocol": "apex.v1",
            "heartbeat_ms": 1000,
            "epoch": "e",
        },
        {"type": "event", "thread_id": "t", "seq": 3, "event": {"type": "run.accepted"}},
        {"type": "message.accepted", "client_msg_id": "c", "thread_id": "t", "run_id": "r"},
        {"type": "thread.subscribed", "thread_id": "t", "from_seq": 0, "head_seq": 4},
        {"type": "pong"},
        {"type": "error", "code": "rate_limited", "message": "slow", "retryable": True, "retry_after_ms": 50},
    ]
    for sample in samples:
        assert SERVER_FRAME_ADAPTER.validate_python(sample).type == sample["type"]
    assert datetime.now(UTC)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FRAME_TYPES = sorted(CLIENT_FRAME_TYPES) + ["event", "nope"]
FIELDS = ["ref", "client_msg_id", "text", "thread_id", "after_seq", "epoch", "seq", "run_id", "token"]


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"type": st.one_of(st.sampled_from(FRAME_TYPES), JSON)},
            optional={name: JSON for name in FIELDS},
        ),
    )
)
def test_any_json_is_a_typed_frame_or_a_typed_error(value: Any) -> None:
    """The parser reads no field before checking its type: whatever the JSON, the answer
    is a frame or an InvalidInput with a frame-parser code, never another exception."""
    text = json.dumps(value)
    try:
        frame = parse_client_frame(text)
    except InvalidInput as exc:
        assert exc.code in PARSER_CODES
        ref = (exc.details or {}).get("ref")
        assert ref is None or (isinstance(ref, str) and len(ref) <= 100)
    else:
        assert frame.type in CLIENT_FRAME_TYPES
