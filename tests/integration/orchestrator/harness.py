"""The run machinery (orchestrator, agents, tools) on a private NATS server, and stand-ins
for the services around it: a gateway that sends what the real one sends, and a
persistence read API whose answers a test can hold back (a slow or hanging tool).

Services run either in this process (their real ``main``) or as real processes
(``python -m apex_<name>``) when a test needs to kill or pause them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats.errors
import orjson
from nats.aio.msg import Msg

from apex_agents.bootstrap import main as agents_main
from apex_agents.settings import AgentsSettings
from apex_cli.embedded import free_port, send_signal
from apex_contracts import (
    TERMINAL,
    MessageCreated,
    MessageCreatedData,
    RunCancel,
    RunCancelData,
    RunStart,
    RunStartData,
    Scope,
    derive_id,
    new_id,
    subjects,
)
from apex_contracts.queries import Q_USAGE_AGGREGATE, Dimension, QueryReply, UsageAggregate, UsageRows
from apex_orchestrator.bootstrap import main as orchestrator_main
from apex_orchestrator.settings import OrchestratorSettings
from apex_runtime import Bus
from apex_tools.bootstrap import main as tools_main
from apex_tools.settings import ToolsSettings

QUESTION = "Where is my LLM spend going and how do I cut it?"
_MAINS: dict[str, tuple[Callable[..., Awaitable[None]], type[Any], str]] = {
    "orchestrator": (orchestrator_main, OrchestratorSettings, "orchestrator_port"),
    "agents": (agents_main, AgentsSettings, "agents_port"),
    "tools": (tools_main, ToolsSettings, "tools_port"),
}


@dataclass
class InProcess:
    """A service running its real ``main`` in this event loop."""

    name: str
    port: int
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.stop.set()
        try:
            await asyncio.wait_for(self.task, 20)
        except TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


@dataclass
class Process:
    """A service as a real process (to kill or pause)."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        """Sends ``sig``; a SIGSTOP returns once the process has stopped."""
        if self.proc.poll() is None:
            send_signal(self.proc.pid, sig)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def metric(self, name: str) -> float:
        return await service_detail(self.port, name)


class UsageStandIn:
    """Answers ``apex.q.usage.aggregate`` as persistence would: no rows by default (the
    tenant has no data), or some rows. ``hold()`` makes every answer wait until
    ``release()``: the tools that asked are then running, for as long as the test wants."""

    def __init__(self, bus: Bus, *, with_data: bool = False) -> None:
        self.bus = bus
        self.with_data = with_data
        self.asked = 0
        self._open = asyncio.Event()
        self._open.set()
        self._sub: Any = None

    async def start(self) -> UsageStandIn:
        self._sub = await self.bus.nc.subscribe(subjects.query(Q_USAGE_AGGREGATE), cb=self._answer)
        return self

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def _answer(self, msg: Msg) -> None:
        asyncio.get_running_loop().create_task(self._reply(msg))

    async def _reply(self, msg: Msg) -> None:
        self.asked += 1
        query = UsageAggregate.model_validate_json(msg.data)
        await self._open.wait()
        rows = _rows(query) if self.with_data else []
        reply = QueryReply(ok=True, data=UsageRows(rows=rows, sql="-- stand-in", elapsed_ms=1.0).model_dump())
        with contextlib.suppress(nats.errors.Error):  # the asker may be gone (interrupted)
            await msg.respond(reply.model_dump_json().encode())


def _rows(query: UsageAggregate) -> list[dict[str, Any]]:
    """One row, or with ``grouping_sets`` one row per set (as persistence names them)."""
    if not query.grouping_sets:
        return [_row(query, query.group_by)]
    union = list(dict.fromkeys(d for dims in query.grouping_sets for d in dims))
    return [
        {d: None for d in union} | _row(query, dims) | {"grouping_set": index}
        for index, dims in enumerate(query.grouping_sets)
    ]


def _row(query: UsageAggregate, group_by: list[Dimension]) -> dict[str, Any]:
    dims = {
        "model": "gpt-4o",
        "provider": "openai",
        "workload": "chat",
        "day": "2026-01-05",
        "hour": "2026-01-05T10:00:00+00:00",
        "hour_of_day": 10,
        "status": "ok",
        "prompt_hash": "h1",
        "dedup_key": "k1",
    }
    row: dict[str, Any] = {d: dims[d] for d in group_by}
    for metric in query.metrics:
        if metric == "cost_sources":
            row[metric] = ["uploaded"]
        else:
            row[metric] = "2026-01-05T10:00:00+00:00" if metric.endswith("_ts") else 100
    return row


@dataclass
class User:
    tenant_id: str = field(default_factory=lambda: new_id("ten"))
    user_id: str = field(default_factory=lambda: new_id("usr"))


@dataclass
class Sent:
    scope: Scope
    run_id: str
    start_command: RunStart

    @property
    def subject(self) -> str:
        return subjects.thread_events(self.scope.tenant_id, self.scope.user_id, self.scope.thread_id)


class GatewayStandIn:
    """Sends what the gateway sends for a user's message and for a cancel."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def send(
        self, user: User, text: str = QUESTION, *, thread_id: str | None = None, start: bool = True
    ) -> Sent:
        client_msg_id = uuid.uuid4().hex
        run_id = derive_id("run", user.tenant_id, user.user_id, client_msg_id)
        scope = Scope(
            tenant_id=user.tenant_id,
            user_id=user.user_id,
            thread_id=thread_id or derive_id("thr", user.tenant_id, user.user_id, client_msg_id),
            run_id=run_id,
        )
        message_id = derive_id("msg", user.tenant_id, user.user_id, client_msg_id)
        await self.bus.publish_event(
            scope.make(
                MessageCreated,
                MessageCreatedData(message_id=message_id, content=text, client_msg_id=client_msg_id),
                id=f"{run_id}:message",
            )
        )
        sent = Sent(
            scope,
            run_id,
            scope.make(
                RunStart,
                RunStartData(message_id=message_id, text=text, client_msg_id=client_msg_id),
                id=f"{run_id}:start",
            ),
        )
        if start:
            await self.start(sent)
        return sent

    async def start(self, sent: Sent) -> None:
        """The run.start command (``send(start=False)`` leaves it to the test)."""
        await self.bus.publish(sent.start_command, subjects.CMD_RUN_START)

    async def cancel(self, sent: Sent, cause: str = "user") -> None:
        await self.bus.publish(
            sent.scope.make(
                RunCancel,
                RunCancelData(cause=cause, requested_by=sent.scope.user_id),
                id=f"{sent.run_id}:cancel",
            ),
            subjects.CMD_RUN_CANCEL,
        )


class Machinery:
    """The services of one test, on one NATS server; closed by the fixture."""

    def __init__(self, nats_url: str, workdir: Path) -> None:
        self.nats_url = nats_url
        self.workdir = workdir
        self.in_process: list[InProcess] = []
        self.processes: list[Process] = []
        self.bus: Bus | None = None

    async def connect(self) -> Bus:
        self.bus = await Bus.connect(self.nats_url, "test")
        await self.bus.ensure_topology()
        return self.bus

    async def start(self, name: str, **settings: Any) -> InProcess:
        main, settings_cls, port_field = _MAINS[name]
        port = free_port()
        config = settings_cls(
            nats_url=self.nats_url, log_format="text", log_level="WARNING", **{port_field: port}, **settings
        )
        stop = asyncio.Event()
        task = asyncio.create_task(main(stop, config), name=f"service:{name}")
        service = InProcess(name, port, stop, task)
        self.in_process.append(service)
        await _until_ready(port, task)
        return service

    def spawn(self, name: str, **env: str) -> Process:
        port = free_port()
        log_path = self.workdir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("APEX_")}
        environment.update(
            {
                "APEX_NATS_URL": self.nats_url,
                f"APEX_{name.upper()}_PORT": str(port),
                "APEX_LOG_FORMAT": "text",
                "APEX_ENV": "test",
                "PYTHONUNBUFFERED": "1",
                **env,
            }
        )
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"apex_{name}"],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(name, port, proc, log_path)
        self.processes.append(process)
        return process

    async def close(self) -> None:
        for service in reversed(self.in_process):
            await service.close()
        for process in self.processes:
            process.close()
        if self.bus is not None:
            await self.bus.close()


async def _until_ready(port: int, task: asyncio.Task[None] | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if task is not None and task.done():
                task.result()
                raise RuntimeError("service stopped before it was ready")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"service on :{port} not ready after {timeout}s")


async def service_detail(port: int, name: str) -> float:
    """A figure of the service's heartbeat details, as /metrics exports it."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
    needle = f'name="{name}"'
    for line in text.splitlines():
        if line.startswith("apex_service_detail{") and needle in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} on :{port}/metrics")


async def until_detail(port: int, name: str, expected: float, timeout: float = 15.0) -> None:
    """Waits until a heartbeat figure reaches ``expected``; fails with the last value seen."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (seen := await service_detail(port, name)) != expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{name} on :{port} is {seen}, expected {expected} within {timeout}s")
        await asyncio.sleep(0.1)


async def until_ready(process: Process, timeout: float = 60.0) -> None:
    try:
        await _until_ready(process.port, timeout=timeout)
    except TimeoutError as exc:
        raise TimeoutError(f"{process.name} not ready:\n{process.tail()}") from exc


# --- reading the log ------------------------------------------------------------------


async def thread_log(bus: Bus, sent: Sent) -> list[tuple[int, dict[str, Any]]]:
    return [(seq, orjson.loads(data)) async for seq, data in bus.read_subject(sent.subject)]


async def run_events(bus: Bus, sent: Sent) -> list[dict[str, Any]]:
    return [event for _seq, event in await thread_log(bus, sent) if event.get("run_id") == sent.run_id]


async def wait_for_event(
    bus: Bus, sent: Sent, matches: Callable[[dict[str, Any]], bool], timeout: float = 30.0
) -> dict[str, Any]:
    """The first event of the run that ``matches``, once it is in the log."""
    deadline = time.monotonic() + timeout
    while True:
        for event in await run_events(bus, sent):
            if matches(event):
                return event
        if time.monotonic() > deadline:
            kinds = [e["type"] for e in await run_events(bus, sent)]
            raise TimeoutError(f"run {sent.run_id}: no matching event in {timeout}s; saw {kinds}")
        await asyncio.sleep(0.05)


async def wait_for_type(bus: Bus, sent: Sent, kind: str, timeout: float = 30.0) -> dict[str, Any]:
    return await wait_for_event(bus, sent, lambda e: e["type"] == kind, timeout)


async def wait_terminal(bus: Bus, sent: Sent, timeout: float = 60.0) -> dict[str, Any]:
    return await wait_for_event(bus, sent, lambda e: e["type"] in TERMINAL, timeout)


async def dead_letters(bus: Bus, command_subject: str) -> list[dict[str, Any]]:
    subject = subjects.dead_letter(command_subject)
    return [orjson.loads(data) async for _seq, data in bus.read_subject(subject, stream="APEX_DLQ")]


def assert_clean(events: list[dict[str, Any]]) -> None:
    """What a client may rely on for any run: each fact once, one ending, nothing after it."""
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), f"duplicate facts: {sorted({i for i in ids if ids.count(i) > 1})}"
    endings = [e for e in events if e["type"] in TERMINAL]
    assert len(endings) == 1, [e["type"] for e in events]
    assert events[-1]["type"] in TERMINAL, f"facts after the ending: {[e['type'] for e in events]}"
    completions = [(e["data"]["step"]) for e in events if e["type"] == "agent_completed"]
    assert len(completions) == len(set(completions)), "an agent step completed twice"
    calls = [e["data"]["call_id"] for e in events if e["type"] == "tool_completed"]
    assert len(calls) == len(set(calls)), "a tool call completed twice"
