"""Runs one ``tool.call`` command: the claim in the ledger, ``tool_executing``, the tool
(typed, timed out, under the claim's lease), the outcome written under the claim,
``tool_completed``. A call with an outcome is answered from it; a call another executor
holds is waited for (``claims.py``: a body runs at most once per call id while its lease
holds).

What can go wrong, and what happens:

- the call itself is wrong or the tool fails or times out: the call completes with
  ``status: error`` and the error (recorded in the ledger like any outcome);
- what the tool depends on is unavailable (persistence restarting, a breaker open): the
  command is retried with backoff (the error is raised to the poison guard), and only
  when every delivery failed does the call complete with the error;
- the run is cancelled or ends while the tool runs: the tool is interrupted and the call
  publishes nothing more (the run's terminal event closes it for the client).

Each delivery is an ``execute_tool <tool>`` span (GenAI semantic conventions), a child
of the agent step that asked (its ``traceparent`` travels with the command).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import Span
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from apex_contracts import (
    ApexError,
    Cancelled,
    ErrorCode,
    ErrorInfo,
    Scope,
    ToolCall,
    ToolCompleted,
    ToolCompletedData,
    ToolExecuting,
    ToolExecutingData,
    Unavailable,
)
from apex_contracts.dedupe_ids import tool_event_id
from apex_contracts.errors import CATALOGUE
from apex_contracts.tools import ToolResult
from apex_runtime import Bus, CircuitBreaker, Health, log_context, tracing
from apex_runtime.consumers import RunCancellations
from apex_tools.claims import CALL, CallScope, Held, LeaseLost, acquire, finish, give_back, leased
from apex_tools.ledger import Ledger, LedgerEntry, Taken
from apex_tools.metrics import ToolsMetrics
from apex_tools.ports import UsageQueries
from apex_tools.registry import Tool

log = logging.getLogger(__name__)
# A tool that raises one of these met an unavailable dependency, not a bad call.
_DEPENDENCY_CODES = frozenset(
    {
        ErrorCode.SERVICE_UNAVAILABLE,
        ErrorCode.STORE_UNAVAILABLE,
        ErrorCode.BUS_UNAVAILABLE,
    }
)


class ToolExecutor:
    def __init__(
        self,
        bus: Bus,
        ledger: Ledger,
        usage: UsageQueries,
        tools: dict[str, Tool],
        *,
        lease_s: float = 20.0,
        cancels: RunCancellations | None = None,
        health: Health | None = None,
        metrics: ToolsMetrics | None = None,
    ) -> None:
        self.bus = bus
        self.ledger = ledger
        self.usage = usage
        self.tools = tools
        self.lease_s = lease_s
        self.cancels = cancels or RunCancellations()
        self.health = health or Health("tools", "local")
        self.metrics = metrics or ToolsMetrics(CollectorRegistry())

    def breaker(self, family: str) -> CircuitBreaker:
        """One breaker per tool family: a family whose dependency keeps failing is
        refused at once (and retried later) instead of piling up timeouts."""
        return self.health.breaker(
            f"tools_{family}", threshold=5, reset_after_s=5.0, code=ErrorCode.SERVICE_UNAVAILABLE
        )

    async def handle(self, command: ToolCall, headers: Mapping[str, Any] | None = None) -> None:
        """Runs the call (``headers`` of the command carry the trace it belongs to)."""
        call = command.data
        run_id = str(command.run_id)
        attributes: dict[str, str | int] = {
            tracing.OPERATION: "execute_tool",
            tracing.TOOL_NAME: call.tool,
            tracing.TOOL_CALL_ID: call.call_id,
            "gen_ai.tool.type": "function",
            tracing.RUN_ID: run_id,
            tracing.TENANT_ID: command.tenant_id,
        }
        if command.agent:
            attributes[tracing.AGENT_NAME] = command.agent
        with (
            log_context(tenant_id=command.tenant_id, run_id=run_id, trace_id=tracing.run_trace_id(run_id)),
            tracing.span(
                f"execute_tool {call.tool}",
                context=tracing.parent_from(headers, run_id),
                attributes=attributes,
            ) as current,
        ):
            await self._handle(command, current)

    async def _handle(self, command: ToolCall, current: Span) -> None:
        call = command.data
        run_id = str(command.run_id)
        try:
            got = await self.cancels.run(
                run_id,
                acquire(
                    self.ledger,
                    call.call_id,
                    self._claimant(),
                    self.lease_s,
                    on_wait=self.metrics.claims.labels("waited").inc,
                ),
            )
        except Cancelled as exc:
            log.info("%s not run: run %s was cancelled or ended", call.tool, run_id)
            tracing.fail(current, exc)
            return
        revision: int | None = None  # the outcome's, when this executor wrote it
        if isinstance(got, LedgerEntry):
            entry = got
            self.metrics.replayed.labels(call.tool).inc()
            current.set_attribute("apex.tool.from_ledger", True)
        else:
            claimed = await self._run_claimed(command, got, current)
            if claimed is None:
                return
            entry, revision = claimed
        if self.cancels.is_cancelled(run_id):
            # the run ended (or was cancelled) meanwhile: no fact of a run after its ending
            log.info("%s of run %s not published: the run was cancelled or ended", call.tool, run_id)
            return
        if not entry.published:
            await self._complete(command, entry)
            await self._mark_published(call.call_id, entry, revision)

    async def _run_claimed(
        self, command: ToolCall, held: Held, current: Span
    ) -> tuple[LedgerEntry, int] | None:
        """Runs a call this executor holds; its outcome and the outcome's revision, or None
        when the call was interrupted (cancelled: published nothing) or taken over (the
        other executor publishes)."""
        call = command.data
        run_id = str(command.run_id)
        current.set_attribute("apex.tool.attempt", held.claim.attempt)
        self.metrics.claims.labels("taken_over" if held.taken_over else "claimed").inc()
        if self.cancels.is_cancelled(run_id):
            log.info("not running %s: run %s was cancelled", call.tool, run_id)
            await self._give_back(held)
            return None
        await self._announce(command)
        token = CALL.set(CallScope(call.call_id, held.claim.attempt))
        keep = False  # whether the claim stays: an outcome will be written over it, or it is lost
        try:
            entry = await self.cancels.run(run_id, leased(self.ledger, held, self._execute(command)))
            keep = True
        except Cancelled as exc:
            log.info("%s interrupted: run %s was cancelled or ended", call.tool, run_id)
            tracing.fail(current, exc)
            return None
        except LeaseLost:
            log.warning("%s of call %s stopped: another executor took the call over", call.tool, call.call_id)
            self.metrics.claims.labels("lost").inc()
            keep = True
            return None
        except Unavailable as exc:
            self.metrics.retried.labels(call.tool, exc.code).inc()
            raise
        finally:
            CALL.reset(token)
            if not keep:  # given back (whatever went wrong): the next delivery claims it at once
                await self._give_back(held)
        try:
            revision = await finish(self.ledger, held, entry)
        except LeaseLost:
            log.warning("outcome of call %s dropped: another executor took the call over", call.call_id)
            self.metrics.claims.labels("lost").inc()
            return None
        code = entry.error.code if entry.error else None
        self.metrics.call_done(call.tool, entry.status, entry.duration_ms / 1000, code)
        if code is not None:
            tracing.fail(current, code=code)
        return entry, revision

    def _claimant(self) -> str:
        return f"{self.health.instance}:{uuid.uuid4().hex[:12]}"

    async def _give_back(self, held: Held) -> None:
        try:
            await give_back(self.ledger, held)
        except Unavailable as exc:  # the lease expires by itself
            log.warning("claim of %s not released: %s", held.call_id, exc.message)

    async def _mark_published(self, call_id: str, entry: LedgerEntry, revision: int | None) -> None:
        """Records that ``tool_completed`` is in the log (a redelivery then only acks), over
        the outcome at ``revision`` (read first when this executor did not write it)."""
        if revision is None:
            found = await self.ledger.read(call_id)
            if found is None or not isinstance(found[0], LedgerEntry) or found[0].published:
                return
            entry, revision = found[0], found[1]
        with contextlib.suppress(Taken):  # changed meanwhile: marked already, or erased
            await self.ledger.replace(call_id, entry.model_copy(update={"published": True}), revision)

    async def fail(self, command: ToolCall, error: ErrorInfo) -> None:
        """Completes a call that cannot run (a dead-lettered command) with its error,
        unless it has an outcome already (then that one is the call's)."""
        call_id = command.data.call_id
        entry = LedgerEntry(status="error", tool=command.data.tool, duration_ms=0, error=error)
        found = await self.ledger.read(call_id)
        try:
            if found is None:
                await self.ledger.create(call_id, entry)
            elif isinstance(found[0], LedgerEntry):
                entry = found[0]
            else:
                await self.ledger.replace(call_id, entry, found[1])
        except Taken:
            found = await self.ledger.read(call_id)
            if found is not None and isinstance(found[0], LedgerEntry):
                entry = found[0]
        self.metrics.call_done(command.data.tool, entry.status, 0.0, error.code)
        await self._complete(command, entry)

    async def _announce(self, command: ToolCall) -> None:
        await self.bus.publish_event(
            Scope.of(command).make(
                ToolExecuting,
                ToolExecutingData(
                    call_id=command.data.call_id,
                    tool=command.data.tool,
                    arguments=command.data.arguments,
                    agent=command.agent,
                ),
                id=tool_event_id(str(command.run_id), command.data.call_id, "tool_executing"),
                agent=command.agent,
                causation_id=command.id,
            )
        )

    async def _execute(self, command: ToolCall) -> LedgerEntry:
        """The call's outcome; raises Unavailable when a dependency is down (retry)."""
        call = command.data
        started = time.perf_counter()
        tool = self.tools.get(call.tool)
        try:
            if tool is None:
                raise ApexError(f"There is no tool named {call.tool!r}.", code=ErrorCode.TOOL_UNKNOWN)
            args = _validate(tool, call.arguments)
            result = await self._run(
                tool, command.tenant_id, args, min(tool.timeout_s, call.timeout_ms / 1000)
            )
        except Unavailable:
            raise
        except ApexError as exc:
            log.warning("tool %s failed: %s", call.tool, exc.message)
            return LedgerEntry(status="error", tool=call.tool, duration_ms=_ms(started), error=exc.info())
        return LedgerEntry(
            status="ok",
            tool=call.tool,
            duration_ms=_ms(started),
            result=result.model_dump(mode="json"),
        )

    async def _run(self, tool: Tool, tenant_id: str, args: object, timeout: float) -> ToolResult:
        breaker = self.breaker(tool.family)
        breaker.check()
        try:
            async with asyncio.timeout(timeout):
                result = await tool.run(self.usage, tenant_id, args)
        except TimeoutError as exc:
            breaker.failure()
            raise ApexError(
                f"{tool.name} took longer than {timeout:.1f} s.", code=ErrorCode.TOOL_TIMEOUT
            ) from exc
        except ApexError as exc:
            if exc.code in _DEPENDENCY_CODES:
                breaker.failure()
                raise Unavailable(exc.message, code=exc.code) from exc
            raise
        breaker.success()
        return result

    async def _complete(self, command: ToolCall, entry: LedgerEntry) -> None:
        await self.bus.publish_event(
            Scope.of(command).make(
                ToolCompleted,
                ToolCompletedData(
                    call_id=command.data.call_id,
                    tool=command.data.tool,
                    status=entry.status,
                    duration_ms=entry.duration_ms,
                    result=entry.result,
                    error=entry.error,
                ),
                id=tool_event_id(str(command.run_id), command.data.call_id, "tool_completed"),
                agent=command.agent,
                causation_id=command.id,
            )
        )


def _validate(tool: Tool, arguments: dict[str, object]) -> object:
    try:
        return tool.input_model.model_validate(arguments)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "arguments"
        spec = CATALOGUE[ErrorCode.TOOL_INPUT_INVALID]
        raise ApexError(
            f"{tool.name}: {where}: {first['msg']}",
            code=ErrorCode.TOOL_INPUT_INVALID,
            retryable=spec.retryable,
        ) from exc


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
