"""What an agent can do during its step, and nothing more: read its inputs, think out
loud (``agent_thinking``), call tools (``tool.call`` commands, answered by
``tool_completed`` events), stream the answer's text (``message.delta``) and account for
the language-model tokens it spends. Every id is derived from (run, step, n), so a step
that runs again after a crash publishes the same facts and calls the same tools, which
the stream and the ledger deduplicate; streamed text is the exception: each attempt
streams under its own ids (``attempt``), and supersedes what earlier ones streamed."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from apex_contracts import (
    AgentStep,
    AgentThinking,
    AgentThinkingData,
    ErrorCode,
    Event,
    LimitExceeded,
    MessageDelta,
    MessageDeltaData,
    Scope,
    StepInputs,
    ThreadEvent,
    ToolCall,
    ToolCallData,
    ToolCompleted,
    read_event,
    subjects,
)
from apex_contracts.dedupe_ids import (
    agent_thinking_id,
    call_id_for,
    message_delta_id,
    reply_message_id,
    tool_event_id,
)
from apex_contracts.envelope import Model
from apex_contracts.errors import DeadlineExceeded
from apex_contracts.report import ToolEvidence
from apex_runtime import Bus, SubjectWatch

log = logging.getLogger(__name__)


def event_types(*classes: type[ThreadEvent]) -> frozenset[str]:
    """The ``type`` of each event class: what a reader looking only for these checks
    before it parses a message."""
    return frozenset(cls.model_fields["type"].default for cls in classes)


def thread_event(raw: bytes | dict[str, Any], of: frozenset[str] | None = None) -> Event | None:
    """A message of the thread as its typed event, upcast, parsed where it is read: None
    for a type unknown to this worker or a malformed event (the orchestrator, which
    decides the run, fails it on that; a step only looks for its own facts). With ``of``
    (``event_types``), None without parsing for a message of any other type: a watch's
    waiters see every event of the run, and most are not what they wait for."""
    if of is not None and isinstance(raw, dict) and raw.get("type") not in of:
        return None
    try:
        return read_event(raw)
    except (ValidationError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
        log.warning("skipping an unreadable event on the thread: %r", exc)
        return None


_TOOL_COMPLETED = event_types(ToolCompleted)


class StepContext:
    def __init__(
        self,
        bus: Bus,
        command: AgentStep,
        watch: SubjectWatch,
        start_seq: int,
        tool_wait_s: float,
        attempt: int = 1,
    ) -> None:
        self._bus = bus
        self.command = command
        self.attempt = attempt
        self.scope = Scope.of(command)
        self._watch = watch
        self._start_seq = start_seq
        self._tool_wait_s = tool_wait_s
        self._thoughts = 0
        self._calls = 0
        self._messages = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.llm_cost_usd = 0.0
        self.brain: Literal["offline", "llm"] = "offline"

    @property
    def question(self) -> str:
        return self.command.data.question

    @property
    def inputs(self) -> StepInputs:
        return self.command.data.inputs

    @property
    def history(self) -> list[dict[str, str]]:
        return self.command.data.history

    @property
    def now(self) -> datetime:
        """The step's notion of "now": fixed by the command, so a rerun decides the same."""
        return self.command.occurred_at

    @property
    def tool_calls_made(self) -> int:
        return self._calls

    async def think(self, text: str) -> None:
        n = self._thoughts
        self._thoughts += 1
        data = self.command.data
        await self._bus.publish_event(
            self.scope.make(
                AgentThinking,
                AgentThinkingData(agent=data.agent, step=data.step, text=text),
                id=agent_thinking_id(str(self.command.run_id), data.step, n),
                agent=data.agent,
                causation_id=self.command.id,
            )
        )

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def account(self, input_tokens: int, output_tokens: int, cost_usd: float | None) -> None:
        """Adds a language-model call's tokens (and list-price cost) to this step's usage;
        ``agent_completed`` carries them and the orchestrator sums them per run."""
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.llm_cost_usd += cost_usd or 0.0
        self.brain = "llm"

    def stream(self, min_chars: int = 48, max_wait_s: float = 0.15) -> DeltaStream:
        """A new streamed assistant message of this step (a rewrite is a new message)."""
        n = self._messages
        self._messages += 1
        return DeltaStream(self, n, min_chars, max_wait_s)

    async def publish_delta(self, message: int, index: int, message_id: str, text: str) -> None:
        data = self.command.data
        await self._bus.publish_event(
            self.scope.make(
                MessageDelta,
                MessageDeltaData(
                    message_id=message_id, index=index, text=text, step=data.step, attempt=self.attempt
                ),
                id=message_delta_id(str(self.command.run_id), data.step, self.attempt, message, index),
                agent=data.agent,
                causation_id=self.command.id,
            )
        )

    async def call_tool(self, tool: str, arguments: Model) -> ToolEvidence:
        (evidence,) = await self.call_tools([(tool, arguments)])
        return evidence

    async def call_tools(self, calls: list[tuple[str, Model]]) -> list[ToolEvidence]:
        """Runs independent tool calls in parallel; results come back in call order."""
        data = self.command.data
        if self._calls + len(calls) > data.budget_tool_calls:
            raise LimitExceeded(
                f"The {data.agent} agent would exceed the run's tool-call budget.",
                code=ErrorCode.BUDGET_EXCEEDED,
            )
        planned = []
        for tool, arguments in calls:
            call_id = call_id_for(str(self.command.run_id), data.step, self._calls)
            self._calls += 1
            planned.append((call_id, tool, arguments.model_dump(mode="json")))
        await asyncio.gather(*(self._send(call_id, tool, args) for call_id, tool, args in planned))
        return list(await asyncio.gather(*(self._await(call_id, tool) for call_id, tool, _ in planned)))

    async def _send(self, call_id: str, tool: str, arguments: dict[str, Any]) -> None:
        data = self.command.data
        await self._bus.publish(
            self.scope.make(
                ToolCall,
                ToolCallData(
                    call_id=call_id,
                    tool=tool,
                    arguments=arguments,
                    step=data.step,
                    timeout_ms=int(self._tool_wait_s * 1000),
                ),
                id=tool_event_id(str(self.command.run_id), call_id, "tool.call"),
                agent=data.agent,
                causation_id=self.command.id,
            ),
            subjects.CMD_TOOL_CALL,
        )

    async def _await(self, call_id: str, tool: str) -> ToolEvidence:
        answers: list[ToolCompleted] = []

        def completed(message: dict[str, Any]) -> bool:
            event = thread_event(message, _TOOL_COMPLETED)
            if isinstance(event, ToolCompleted) and event.data.call_id == call_id:
                answers.append(event)
                return True
            return False

        try:
            await self._watch.wait_for(
                completed, timeout=self._tool_wait_s + 5.0, scan_after_seq=self._start_seq
            )
        except TimeoutError as exc:
            raise DeadlineExceeded(
                f"The {tool} tool did not answer in time.", code=ErrorCode.TOOL_TIMEOUT
            ) from exc
        result = answers[-1].data
        return ToolEvidence(call_id=call_id, tool=tool, status=result.status, result=result.result)


class DeltaStream:
    """Coalesces streamed text into ``message.delta`` events: a chunk is published once it
    has ``min_chars`` characters or ``max_wait_s`` passed since the last one, so a client
    sees the text grow without an event per token. One delta is written at a time, beside
    the model: text that arrives while the log stores the previous delta joins the next
    one, so a busy log makes the deltas larger, never the model wait (the delay from the
    model to the screen stays about two writes, whatever the load). Ids are (run, step,
    attempt, message, index): an attempt that runs again after a crash streams a new
    message, never chunks that the stream would drop as duplicates of (or add to) the
    earlier attempt's."""

    def __init__(self, ctx: StepContext, message: int, min_chars: int, max_wait_s: float) -> None:
        self._ctx = ctx
        self.message = message
        self.message_id = reply_message_id(
            str(ctx.command.run_id), ctx.command.data.step, ctx.attempt, message
        )
        self._min_chars = min_chars
        self._max_wait_s = max_wait_s
        self._buffer: list[str] = []
        self._size = 0
        self._last = time.monotonic()
        self._writing: asyncio.Task[None] | None = None
        self.index = 0
        self.text = ""

    async def write(self, chunk: str) -> None:
        if not chunk:
            return
        self._buffer.append(chunk)
        self._size += len(chunk)
        self.text += chunk
        if self._writing is not None:
            if not self._writing.done():
                return  # the log is storing the previous delta: this text goes with the next
            await self.settle()  # raises what the last write met
        if self._due():
            self._writing = asyncio.ensure_future(self._publish(*self._take()))
            # retrieved here too: a step interrupted mid-write never awaits it
            self._writing.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def flush(self) -> None:
        """Publishes what is left and returns once every delta is stored."""
        await self.settle()
        if self._buffer:
            await self._publish(*self._take())

    async def settle(self) -> None:
        """Returns once the delta being written (if any) is stored; raises what it met."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    def _due(self) -> bool:
        return bool(self._buffer) and (
            self._size >= self._min_chars or time.monotonic() - self._last >= self._max_wait_s
        )

    def _take(self) -> tuple[int, str]:
        """The next delta's index and text: what is buffered now."""
        text, self._buffer, self._size = "".join(self._buffer), [], 0
        index, self.index = self.index, self.index + 1
        self._last = time.monotonic()
        return index, text

    async def _publish(self, index: int, text: str) -> None:
        """Writes a delta, then the next while more text became due meanwhile: text that
        arrived during a write is not held until the model's next chunk."""
        while True:
            await self._ctx.publish_delta(self.message, index, self.message_id, text)
            if not self._due():
                return
            index, text = self._take()
