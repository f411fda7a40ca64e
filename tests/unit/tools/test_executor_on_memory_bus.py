"""The tool executor on ``MemoryBus`` (its ledger in the bus's KV bucket): a call runs
its body once however often it is delivered, and ``tool_completed`` is in the log once,
with the result; a call to an unknown tool completes with the error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from pydantic import Field

from apex_contracts import Scope, ToolCall, ToolCallData, new_id, subjects
from apex_contracts.envelope import Model
from apex_contracts.streams import KV_TOOL_LEDGER
from apex_contracts.tools import ToolResult
from apex_runtime import KvBucket
from apex_runtime.memory import MemoryBus
from apex_tools.executor import ToolExecutor
from apex_tools.ledger import KvLedger, Record
from apex_tools.ports import BusUsageQueries, UsageQueries
from apex_tools.registry import Tool


class EchoInput(Model):
    word: str = Field(min_length=1)


class EchoResult(ToolResult):
    word: str


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    bus = MemoryBus()
    yield bus
    await bus.close()


async def _executor(bus: MemoryBus, runs: list[str]) -> ToolExecutor:
    async def echo(usage: UsageQueries, tenant_id: str, args: EchoInput) -> EchoResult:
        runs.append(args.word)
        return EchoResult(word=args.word.upper())

    tools = {"echo": Tool("echo", EchoInput, echo, 5.0, "test")}  # type: ignore[arg-type]
    return ToolExecutor(bus, KvLedger(await bus.bucket(KV_TOOL_LEDGER)), BusUsageQueries(bus, 1.0), tools)


def _call(scope: Scope, tool: str, arguments: dict[str, object]) -> ToolCall:
    call_id = new_id("call")
    return scope.make(
        ToolCall,
        ToolCallData(call_id=call_id, tool=tool, arguments=arguments, step=1, timeout_ms=5_000),
        id=f"{scope.run_id}:{call_id}:tool.call",
        agent="data_helper",
    )


def _scope() -> Scope:
    return Scope(
        tenant_id=new_id("ten"), user_id=new_id("usr"), thread_id=new_id("thr"), run_id=new_id("run")
    )


async def _completions(bus: MemoryBus, scope: Scope) -> list[dict[str, object]]:
    subject = subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)
    events = [orjson.loads(data) async for _seq, data in bus.read_subject(subject)]
    return [e for e in events if e["type"] == "tool_completed"]


async def test_a_call_delivered_twice_runs_once_and_completes_once(bus: MemoryBus) -> None:
    runs: list[str] = []
    executor = await _executor(bus, runs)
    scope = _scope()
    command = _call(scope, "echo", {"word": "spend"})
    await executor.handle(command)
    await executor.handle(command)  # a redelivery
    assert runs == ["spend"]
    [completed] = await _completions(bus, scope)
    data = completed["data"]
    assert isinstance(data, dict) and data["status"] == "ok" and data["result"]["word"] == "SPEND"


async def test_an_unknown_tool_completes_with_the_error(bus: MemoryBus) -> None:
    executor = await _executor(bus, [])
    scope = _scope()
    await executor.handle(_call(scope, "nonesuch", {}))
    [completed] = await _completions(bus, scope)
    data = completed["data"]
    assert isinstance(data, dict) and data["status"] == "error"


class CountingLedger(KvLedger):
    """The ledger, counting what it is asked."""

    def __init__(self, kv: KvBucket) -> None:
        super().__init__(kv)
        self.asked: list[str] = []

    async def read(self, call_id: str) -> tuple[Record, int] | None:
        self.asked.append("read")
        return await super().read(call_id)

    async def create(self, call_id: str, record: Record) -> int:
        self.asked.append("create")
        return await super().create(call_id, record)

    async def replace(self, call_id: str, record: Record, revision: int) -> int:
        self.asked.append("replace")
        return await super().replace(call_id, record, revision)


async def test_a_new_call_costs_three_ledger_writes_and_no_read(bus: MemoryBus) -> None:
    runs: list[str] = []
    executor = await _executor(bus, runs)
    ledger = executor.ledger = CountingLedger(await bus.bucket(KV_TOOL_LEDGER))
    scope = _scope()
    command = _call(scope, "echo", {"word": "spend"})
    await executor.handle(command)
    assert ledger.asked == ["create", "replace", "replace"]  # claim, outcome, published
    ledger.asked.clear()
    await executor.handle(command)  # a redelivery: refused, read, answered from the ledger
    assert ledger.asked == ["create", "read"] and runs == ["spend"]
    assert len(await _completions(bus, scope)) == 1
