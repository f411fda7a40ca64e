"""Commands: imperative requests on ``apex.cmd.*``; exactly one consumer handles each."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, TypeAdapter, model_validator

from apex_contracts.envelope import AgentName, Envelope, Model
from apex_contracts.errors import ErrorInfo
from apex_contracts.ids import CallId, MessageId, RunId, ThreadId, UserId
from apex_contracts.report import DataHelperOutput, ReportingOutput, SupervisorOutput, TriageOutput
from apex_contracts.usage import UsageRecord
from apex_contracts.usage_columns import UsageColumns


class RunStartData(Model):
    message_id: MessageId
    text: str = Field(min_length=1, max_length=16_000)
    client_msg_id: str
    title: str | None = None


class RunStart(Envelope):
    """Start a run for a user message. Acked by the orchestrator only at the run's end."""

    type: Literal["run.start"] = "run.start"
    user_id: UserId
    thread_id: ThreadId
    run_id: RunId
    data: RunStartData


class RunCancelData(Model):
    cause: str = "user"
    requested_by: str


class RunCancel(Envelope):
    type: Literal["run.cancel"] = "run.cancel"
    user_id: UserId
    thread_id: ThreadId
    run_id: RunId
    data: RunCancelData


class StepFailure(Model):
    """An earlier agent of the run that failed, and how."""

    agent: AgentName
    error: ErrorInfo


class StepInputs(Model):
    """What a step receives from the run so far: the output of each earlier agent that
    completed (its latest step), and the earlier agents that failed. On the wire it is
    the object it always was, ``{"<agent>": <its output>, "failures": [...]}``, absent
    agents left out."""

    supervisor: SupervisorOutput | None = None
    triage: TriageOutput | None = None
    data_helper: DataHelperOutput | None = None
    reporting: ReportingOutput | None = None
    failures: list[StepFailure] = []


class AgentStepData(Model):
    agent: AgentName
    step: int = Field(ge=0)
    question: str
    inputs: StepInputs = StepInputs()
    history: list[dict[str, str]] = []
    budget_tool_calls: int = 50
    budget_llm_tokens: int | None = None  # what is left of the run's token budget; None: no limit
    deadline_ms: int = 60_000
    # the thread's seq just before the run's first event: the step reads the thread from
    # there, not from its start (0: from the start, as a command without it says)
    after_seq: int = Field(default=0, ge=0)
    # the thread's last seq the orchestrator had read when it sent the step: a first
    # delivery reads the thread through there, without asking the log for its last seq
    # (0: it asks, as a redelivery always does)
    seen_seq: int = Field(default=0, ge=0)


class AgentStep(Envelope):
    """Run one agent step. Its events carry ids derived from (run, step), so a redelivered
    step republishes the same facts, which the stream deduplicates."""

    type: Literal["agent.step"] = "agent.step"
    user_id: UserId
    thread_id: ThreadId
    run_id: RunId
    agent: AgentName
    data: AgentStepData


class ToolCallData(Model):
    call_id: CallId
    tool: str
    arguments: dict[str, Any] = {}
    timeout_ms: int = Field(default=10_000, ge=1, le=300_000)
    step: int = Field(default=0, ge=0)


class ToolCall(Envelope):
    """Run one tool call; a call id already in the ledger is answered from it."""

    type: Literal["tool.call"] = "tool.call"
    user_id: UserId
    thread_id: ThreadId
    run_id: RunId
    data: ToolCallData


class UsageIngestData(Model):
    batch_id: str
    source: Literal["json", "ndjson", "csv", "otlp", "demo", "openai", "anthropic"] = "json"
    # A batch comes as ``columns`` (what ingest publishes); ``records``, one object per
    # record, is how batches came before and is still read.
    records: list[UsageRecord] = Field(default_factory=list)
    columns: UsageColumns | None = None

    @model_validator(mode="after")
    def _one_form(self) -> UsageIngestData:
        if self.columns is not None and self.records:
            raise ValueError("a batch comes as records or as columns, not both")
        return self

    def batch(self) -> UsageColumns:
        """The batch's records as columns, whichever form it came in."""
        return self.columns if self.columns is not None else UsageColumns.of(self.records)


class UsageIngest(Envelope):
    type: Literal["usage.ingest"] = "usage.ingest"
    data: UsageIngestData


Command = Annotated[RunStart | RunCancel | AgentStep | ToolCall | UsageIngest, Field(discriminator="type")]
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


def parse_command(raw: bytes | str | dict[str, Any]) -> Command:
    data = raw if isinstance(raw, dict) else orjson.loads(raw)
    return COMMAND_ADAPTER.validate_python(data)
