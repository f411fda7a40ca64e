"""Runs one ``tool.call`` command: ``tool_executing``, the tool (typed, timed out), the
ledger entry, ``tool_completed``. A call already in the ledger is answered from it."""

from __future__ import annotations

import asyncio
import logging
import time

from pydantic import ValidationError

from apex_contracts import (
    ApexError,
    ErrorCode,
    ErrorInfo,
    Scope,
    ToolCall,
    ToolCompleted,
    ToolCompletedData,
    ToolExecuting,
    ToolExecutingData,
)
from apex_contracts.errors import CATALOGUE
from apex_runtime import Bus, log_context
from apex_tools.ledger import Ledger, LedgerEntry
from apex_tools.ports import UsageQueries
from apex_tools.registry import Tool

log = logging.getLogger(__name__)


class ToolExecutor:
    def __init__(self, bus: Bus, ledger: Ledger, usage: UsageQueries, tools: dict[str, Tool]) -> None:
        self.bus = bus
        self.ledger = ledger
        self.usage = usage
        self.tools = tools

    async def handle(self, command: ToolCall) -> None:
        call = command.data
        with log_context(tenant_id=command.tenant_id, run_id=command.run_id):
            entry = await self.ledger.get(call.call_id)
            if entry is None:
                await self._announce(command)
                entry = await self._execute(command)
                await self.ledger.put(call.call_id, entry)
            if not entry.published:
                await self._complete(command, entry)
                await self.ledger.put(call.call_id, entry.model_copy(update={"published": True}))

    async def fail(self, command: ToolCall, error: ErrorInfo) -> None:
        """Completes a call that cannot run (a dead-lettered command) with its error."""
        entry = LedgerEntry(status="error", tool=command.data.tool, duration_ms=0, error=error)
        await self.ledger.put(command.data.call_id, entry)
        await self._complete(command, entry)

    async def _announce(self, command: ToolCall) -> None:
        await self.bus.publish_event(Scope.of(command).make(
            ToolExecuting,
            ToolExecutingData(
                call_id=command.data.call_id, tool=command.data.tool,
                arguments=command.data.arguments, agent=command.agent,
            ),
            id=f"{command.run_id}:{command.data.call_id}:tool_executing",
            agent=command.agent,
            causation_id=command.id,
        ))

    async def _execute(self, command: ToolCall) -> LedgerEntry:
        call = command.data
        started = time.perf_counter()
        tool = self.tools.get(call.tool)
        try:
            if tool is None:
                raise ApexError(f"There is no tool named {call.tool!r}.", code=ErrorCode.TOOL_UNKNOWN)
            args = _validate(tool, call.arguments)
            timeout = min(tool.timeout_s, call.timeout_ms / 1000)
            try:
                async with asyncio.timeout(timeout):
                    result = await tool.run(self.usage, command.tenant_id, args)
            except TimeoutError as exc:
                raise ApexError(
                    f"{call.tool} took longer than {timeout:.1f} s.", code=ErrorCode.TOOL_TIMEOUT
                ) from exc
        except ApexError as exc:
            log.warning("tool %s failed: %s", call.tool, exc.message)
            return LedgerEntry(
                status="error", tool=call.tool, duration_ms=_ms(started), error=exc.info()
            )
        return LedgerEntry(
            status="ok", tool=call.tool, duration_ms=_ms(started),
            result=result.model_dump(mode="json"),
        )

    async def _complete(self, command: ToolCall, entry: LedgerEntry) -> None:
        await self.bus.publish_event(Scope.of(command).make(
            ToolCompleted,
            ToolCompletedData(
                call_id=command.data.call_id, tool=command.data.tool, status=entry.status,
                duration_ms=entry.duration_ms, result=entry.result, error=entry.error,
            ),
            id=f"{command.run_id}:{command.data.call_id}:tool_completed",
            agent=command.agent,
            causation_id=command.id,
        ))


def _validate(tool: Tool, arguments: dict[str, object]) -> object:
    try:
        return tool.input_model.model_validate(arguments)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "arguments"
        spec = CATALOGUE[ErrorCode.TOOL_INPUT_INVALID]
        raise ApexError(
            f"{tool.name}: {where}: {first['msg']}", code=ErrorCode.TOOL_INPUT_INVALID,
            retryable=spec.retryable,
        ) from exc


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)

