"""A tools service with one more tool, ``count_execution``, whose body counts its own
executions in Postgres: one row in ``tool_executions`` each time the body starts (call
id, claim attempt, process id), then, after holding for ``hold_ms``, its side effect: one
row in ``tool_effects`` keyed by the call id (the idempotency key the executor hands a
tool), so a body that ran twice has two executions and still one effect.

Run as a process: ``python -m tests.integration.tools.counting_tool`` (the usual
``APEX_*`` settings, plus ``APEX_TEST_COUNTER_DSN``)."""

from __future__ import annotations

import asyncio
import os

import asyncpg
from pydantic import Field

from apex_contracts.envelope import Model
from apex_contracts.tools import ToolResult
from apex_runtime import run_process
from apex_tools.bootstrap import main as tools_main
from apex_tools.claims import CALL
from apex_tools.ports import UsageQueries
from apex_tools.registry import Tool, default_tools
from apex_tools.settings import ToolsSettings

TOOL = "count_execution"
SCHEMA = """
CREATE TABLE IF NOT EXISTS tool_executions (
    id bigserial PRIMARY KEY, call_id text NOT NULL, attempt int NOT NULL, pid int NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tool_effects (
    call_id text PRIMARY KEY, attempt int NOT NULL, pid int NOT NULL
);
"""


class CountInput(Model):
    hold_ms: int = Field(default=0, ge=0, le=120_000)


class CountResult(ToolResult):
    call_id: str
    attempt: int
    pid: int
    executions: int


async def count_execution(usage: UsageQueries, tenant_id: str, args: CountInput) -> CountResult:
    scope = CALL.get()
    assert scope is not None, "the executor sets the call scope around a body"
    conn = await asyncpg.connect(os.environ["APEX_TEST_COUNTER_DSN"])
    try:
        await conn.execute(
            "INSERT INTO tool_executions (call_id, attempt, pid) VALUES ($1, $2, $3)",
            scope.call_id,
            scope.attempt,
            os.getpid(),
        )
        await asyncio.sleep(args.hold_ms / 1000)
        await conn.execute(
            "INSERT INTO tool_effects (call_id, attempt, pid) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            scope.call_id,
            scope.attempt,
            os.getpid(),
        )
        executions = await conn.fetchval(
            "SELECT count(*) FROM tool_executions WHERE call_id = $1", scope.call_id
        )
    finally:
        await conn.close()
    return CountResult(call_id=scope.call_id, attempt=scope.attempt, pid=os.getpid(), executions=executions)


def tools() -> dict[str, Tool]:
    return default_tools() | {TOOL: Tool(TOOL, CountInput, count_execution, 120.0, "test")}  # type: ignore[arg-type]


async def main(stop: asyncio.Event) -> None:
    await tools_main(stop, ToolsSettings(), tools())


if __name__ == "__main__":
    run_process(main)
