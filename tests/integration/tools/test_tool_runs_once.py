"""A tool call runs once: two tools replicas (real processes) on a private NATS run a
tool whose body counts its executions in Postgres (``counting_tool.py``), while the
test delivers a call twice, pauses the replica running it (SIGSTOP) within and past its
lease, and kills it (SIGKILL) mid-body. Whatever happens, each call completes once
(one ``tool_completed``, one side effect), and its body ran once while a lease held:

| trial | executions per call |
|---|---|
| delivered twice at once, and again after it completed | 1 |
| runner paused past the ack wait, within its lease | 1 |
| runner killed mid-body (the lease expires, another takes over) | 2 (1 effect) |
| runner paused past its lease (taken over; the paused one's outcome is dropped) | 2 (1 effect) |

Each test prints its counts (the figures of docs/durability.md)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from apex_cli.embedded import EmbeddedServer, free_port
from apex_contracts import Scope, ToolCall, ToolCallData, derive_id, new_id, subjects
from apex_contracts.streams import TOOL_CALL_CONSUMER
from apex_runtime import Bus
from tests.integration.orchestrator.harness import Process, until_ready
from tests.integration.tools.counting_tool import SCHEMA, TOOL

# Each trial starts two replicas and waits out ack waits and leases on real processes;
# under a loaded CI machine that alone can near the default 120 s.
pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[3]
CALLS = 4


@dataclass
class Rig:
    bus: Bus
    nats_url: str
    dsn: str
    workdir: Path
    scope: Scope
    replicas: list[Process]

    def spawn(self, lease_s: float) -> Process:
        port = free_port()
        log_path = self.workdir / f"tools-{uuid.uuid4().hex[:6]}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("APEX_")}
        env.update(
            {
                "APEX_NATS_URL": self.nats_url,
                "APEX_TOOLS_PORT": str(port),
                "APEX_TOOLS_LEASE_S": str(lease_s),
                "APEX_TEST_COUNTER_DSN": self.dsn,
                "APEX_LOG_FORMAT": "text",
                "APEX_ENV": "test",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(REPO),
            }
        )
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.tools.counting_tool"],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process("tools", port, proc, log_path)
        self.replicas.append(process)
        return process

    async def call(self, call_id: str, hold_ms: int, *, msg_id: str | None = None) -> None:
        command = self.scope.make(
            ToolCall,
            ToolCallData(
                call_id=call_id, tool=TOOL, arguments={"hold_ms": hold_ms}, step=1, timeout_ms=120_000
            ),
            id=msg_id or f"{self.scope.run_id}:{call_id}:tool.call",
            agent="data_helper",
        )
        await self.bus.publish(command, subjects.CMD_TOOL_CALL)

    async def completions(self) -> dict[str, list[dict[str, Any]]]:
        subject = subjects.thread_events(self.scope.tenant_id, self.scope.user_id, self.scope.thread_id)
        out: dict[str, list[dict[str, Any]]] = {}
        async for _seq, data in self.bus.read_subject(subject):
            event = orjson.loads(data)
            if event["type"] == "tool_completed":
                out.setdefault(event["data"]["call_id"], []).append(event)
        return out

    async def executions(self) -> dict[str, list[asyncpg.Record]]:
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch("SELECT call_id, attempt, pid FROM tool_executions ORDER BY id")
        finally:
            await conn.close()
        out: dict[str, list[asyncpg.Record]] = {}
        for row in rows:
            out.setdefault(row["call_id"], []).append(row)
        return out

    async def effects(self) -> dict[str, int]:
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch("SELECT call_id, count(*) AS n FROM tool_effects GROUP BY call_id")
        finally:
            await conn.close()
        return {row["call_id"]: row["n"] for row in rows}

    async def until(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = await check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}\n" + "\n".join(r.tail() for r in self.replicas)
                )
            await asyncio.sleep(0.1)


@pytest.fixture
async def rig(server_factory: Callable[[str], EmbeddedServer], pg_dsn: str) -> AsyncIterator[Rig]:
    nats = server_factory("nats")
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()
    bus = await Bus.connect(nats.url, "tool-once-test")
    await bus.ensure_topology()
    scope = Scope(
        tenant_id=new_id("ten"), user_id=new_id("usr"), thread_id=new_id("thr"), run_id=new_id("run")
    )
    rig = Rig(bus, nats.url, pg_dsn, Path(tempfile.mkdtemp(prefix="apex-tool-once-")), scope, [])
    try:
        yield rig
    finally:
        for replica in rig.replicas:
            replica.close()
        await bus.close()
        nats.stop()


def _call_ids(n: int) -> list[str]:
    run = new_id("run")
    return [derive_id("call", run, "1", str(i)) for i in range(n)]


async def _started(rig: Rig, replicas: list[Process], lease_s: float, hold_ms: int) -> list[str]:
    for _ in range(2):
        rig.spawn(lease_s)
    for replica in rig.replicas:
        await until_ready(replica)
    calls = _call_ids(CALLS)
    for call_id in calls:
        await rig.call(call_id, hold_ms)
    await rig.until(lambda: _all_started(rig, calls), 60, "every body to start")
    return calls


async def _all_started(rig: Rig, calls: list[str]) -> bool:
    found = await rig.executions()
    return all(call_id in found for call_id in calls)


async def _victim(rig: Rig, calls: list[str]) -> tuple[Process, list[str]]:
    """The replica running the most bodies, and the calls it runs."""
    found = await rig.executions()
    by_pid: dict[int, list[str]] = {}
    for call_id in calls:
        by_pid.setdefault(found[call_id][0]["pid"], []).append(call_id)
    pid = max(by_pid, key=lambda p: len(by_pid[p]))
    victim = next(r for r in rig.replicas if r.pid == pid)
    return victim, by_pid[pid]


async def _settled(rig: Rig, calls: list[str], timeout: float) -> dict[str, list[dict[str, Any]]]:
    async def done() -> dict[str, list[dict[str, Any]]] | None:
        completed = await rig.completions()
        return completed if all(c in completed for c in calls) else None

    await rig.until(done, timeout, "every call to complete")
    await asyncio.sleep(2.0)  # anything late (a woken replica) has had its chance to publish
    return await rig.completions()


async def _claims(replica: Process, outcome: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{replica.port}/metrics", timeout=5)).text
    needle = f'apex_tools_claims_total{{outcome="{outcome}"}}'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(needle))


def _report(trial: str, executions: dict[str, list[Any]], calls: list[str]) -> list[int]:
    counts = [len(executions.get(c, [])) for c in calls]
    print(f"\n{trial}: executions per call {counts}")
    return counts


async def test_a_call_delivered_twice_runs_once(rig: Rig) -> None:
    rig.spawn(20.0)
    rig.spawn(20.0)
    for replica in rig.replicas:
        await until_ready(replica)
    calls = _call_ids(CALLS)
    for call_id in calls:  # two deliveries of each call at once: both replicas get one
        await rig.call(call_id, 1500)
        await rig.call(call_id, 1500, msg_id=f"again:{call_id}")
    completed = await _settled(rig, calls, 120)
    for call_id in calls:  # and once more after it completed: answered from the ledger
        await rig.call(call_id, 1500, msg_id=f"later:{call_id}")
    await asyncio.sleep(3.0)
    completed = await rig.completions()
    executions = await rig.executions()
    assert _report("delivered twice, then again", executions, calls) == [1] * CALLS
    assert all(len(completed[c]) == 1 for c in calls), completed
    assert await rig.effects() == dict.fromkeys(calls, 1)


async def test_a_runner_paused_within_its_lease_runs_the_call_once(rig: Rig) -> None:
    calls = await _started(rig, rig.replicas, lease_s=60.0, hold_ms=3000)
    victim, held = await _victim(rig, calls)
    victim.signal(signal.SIGSTOP)
    try:  # past the ack wait: the other replica is handed the call and waits on the lease
        await asyncio.sleep(TOOL_CALL_CONSUMER.ack_wait_s + 5)
    finally:
        victim.signal(signal.SIGCONT)
    completed = await _settled(rig, calls, 120)
    executions = await rig.executions()
    assert (
        _report(
            f"runner paused {TOOL_CALL_CONSUMER.ack_wait_s + 5:.0f} s within its lease", executions, calls
        )
        == [1] * CALLS
    )
    assert all(len(completed[c]) == 1 for c in calls)
    assert all(completed[c][0]["data"]["result"]["pid"] == victim.pid for c in held)
    assert await rig.effects() == dict.fromkeys(calls, 1)
    other = next(r for r in rig.replicas if r is not victim)
    assert await _claims(other, "waited") >= 1, "the call was never handed to the other replica"
    assert await _claims(other, "taken_over") == 0


async def test_a_runner_killed_mid_body_is_taken_over_once(rig: Rig) -> None:
    calls = await _started(rig, rig.replicas, lease_s=6.0, hold_ms=3000)
    victim, held = await _victim(rig, calls)
    victim.signal(signal.SIGKILL)
    completed = await _settled(rig, calls, 150)
    executions = await rig.executions()
    counts = _report("runner killed mid-body", executions, calls)
    assert counts == [2 if c in held else 1 for c in calls]
    assert all(len(completed[c]) == 1 for c in calls)
    for call_id in held:  # the second body is the takeover, and its outcome is the call's
        assert [row["attempt"] for row in executions[call_id]] == [1, 2]
        assert completed[call_id][0]["data"]["result"]["attempt"] == 2
    assert await rig.effects() == dict.fromkeys(calls, 1)


async def test_a_runner_paused_past_its_lease_loses_the_call(rig: Rig) -> None:
    calls = await _started(rig, rig.replicas, lease_s=6.0, hold_ms=3000)
    victim, held = await _victim(rig, calls)
    victim.signal(signal.SIGSTOP)
    try:  # the other replica is handed the call, waits out the lease, runs it and completes it
        completed = await _settled(rig, calls, 150)
    finally:
        victim.signal(signal.SIGCONT)
    await asyncio.sleep(5.0)  # the woken replica finds its claim taken over: publishes nothing
    completed = await rig.completions()
    executions = await rig.executions()
    counts = _report("runner paused past its lease", executions, calls)
    assert counts == [2 if c in held else 1 for c in calls]
    assert all(len(completed[c]) == 1 for c in calls), "a call completed twice"
    for call_id in held:
        assert completed[call_id][0]["data"]["result"]["attempt"] == 2
        assert completed[call_id][0]["data"]["result"]["pid"] != victim.pid
    assert await rig.effects() == dict.fromkeys(calls, 1)
    assert victim.proc.poll() is None, victim.tail()
    assert await _claims(victim, "lost") == len(held)
