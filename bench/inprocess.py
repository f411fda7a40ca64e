"""A StepContext without a bus: for measuring the agents' own cost (the in-process floor)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from apex_contracts import StepInputs, derive_id
from apex_contracts.envelope import Model
from apex_contracts.report import Period, ToolEvidence
from apex_contracts.tools import CoverageResult


class InMemoryContext:
    """What an agent sees, answered in memory: an empty tenant's coverage for every tool."""

    def __init__(self, agent: str, step: int, inputs: dict[str, Any]) -> None:
        self.agent = agent
        self.step = step
        self._inputs = dict(inputs)
        self._calls = 0
        self.question = "Where is my LLM spend going and how do I cut it?"
        self.history: list[dict[str, str]] = []
        self.now = datetime(2026, 11, 24, tzinfo=UTC)

    @property
    def inputs(self) -> StepInputs:
        return StepInputs.model_validate(self._inputs)

    @property
    def tool_calls_made(self) -> int:
        return self._calls

    async def think(self, text: str) -> None:
        del text

    def account(self, tokens: int, cost_usd: float | None) -> None:
        del tokens, cost_usd

    async def call_tool(self, tool: str, arguments: Model) -> ToolEvidence:
        (evidence,) = await self.call_tools([(tool, arguments)])
        return evidence

    async def call_tools(self, calls: list[tuple[str, Model]]) -> list[ToolEvidence]:
        out = []
        for tool, _arguments in calls:
            call_id = derive_id("call", "bench", str(self.step), str(self._calls))
            self._calls += 1
            empty = CoverageResult(rows=0, period=Period(), fields_present={}, fields_missing=[])
            out.append(
                ToolEvidence(call_id=call_id, tool=tool, status="ok", result=empty.model_dump(mode="json"))
            )
        return out
