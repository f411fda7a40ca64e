"""What an agent can do during its step, and nothing more: read its inputs, think out
loud (``agent_thinking``) and call tools (``tool.call`` commands, answered by
``tool_completed`` events). Every id is derived from (run, step, n), so a step that runs
again after a crash publishes the same facts and calls the same tools, which the stream
and the ledger deduplicate."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from apex_contracts import (
    AgentStep,
    AgentThinking,
    AgentThinkingData,
    ErrorCode,
    LimitExceeded,
    Scope,
    ToolCall,
    ToolCallData,
    derive_id,
    subjects,
)
from apex_contracts.envelope import Model
from apex_contracts.errors import DeadlineExceeded
from apex_contracts.report import ToolEvidence
from apex_runtime import Bus, SubjectWatch


class StepContext:
    def __init__(
        self,
        bus: Bus,
        command: AgentStep,
        watch: SubjectWatch,
        start_seq: int,
        tool_wait_s: float,
    ) -> None:
        self._bus = bus
        self.command = command
        self.scope = Scope.of(command)
        self._watch = watch
        self._start_seq = start_seq
        self._tool_wait_s = tool_wait_s
        self._thoughts = 0
        self._calls = 0

    @property
    def question(self) -> str:
        return self.command.data.question

    @property
    def inputs(self) -> dict[str, Any]:
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
        await self._bus.publish_event(self.scope.make(
            AgentThinking,
            AgentThinkingData(agent=data.agent, step=data.step, text=text),
            id=f"{self.command.run_id}:{data.step}:thinking:{n}",
            agent=data.agent,
            causation_id=self.command.id,
        ))

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
            call_id = derive_id("call", self.command.run_id, str(data.step), str(self._calls))
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
                    call_id=call_id, tool=tool, arguments=arguments, step=data.step,
                    timeout_ms=int(self._tool_wait_s * 1000),
                ),
                id=f"{self.command.run_id}:{call_id}:tool.call",
                agent=data.agent,
                causation_id=self.command.id,
            ),
            subjects.CMD_TOOL_CALL,
        )

    async def _await(self, call_id: str, tool: str) -> ToolEvidence:
        def completed(event: dict[str, Any]) -> bool:
            return event.get("type") == "tool_completed" and (event.get("data") or {}).get(
                "call_id"
            ) == call_id

        try:
            event = await self._watch.wait_for(
                completed, timeout=self._tool_wait_s + 5.0, scan_after_seq=self._start_seq
            )
        except TimeoutError as exc:
            raise DeadlineExceeded(
                f"The {tool} tool did not answer in time.", code=ErrorCode.TOOL_TIMEOUT
            ) from exc
        result = event["data"]
        return ToolEvidence(
            call_id=call_id, tool=tool, status=result["status"], result=result.get("result")
        )
