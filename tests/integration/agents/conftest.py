"""The analyst's services in-process over real servers: NATS (a server of this test's
own: stream and consumer names are fixed), persistence (Postgres, Redis, the embedded
ClickHouse), tools and agents, each started by its own composition root. ``Stack.ask``
plays the orchestrator's part for one run: it sends the four agent steps in order,
each with the outputs of the earlier ones, and returns the run's events."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from apex_agents.bootstrap import main as agents_main
from apex_agents.settings import AgentsSettings
from apex_contracts import (
    AgentStep,
    AgentStepData,
    RunAccepted,
    RunAcceptedData,
    Scope,
    UsageIngest,
    UsageIngestData,
    UsageRecord,
    derive_id,
    new_id,
    subjects,
)
from apex_contracts.queries import Q_USAGE_SUMMARY, UsageSummary
from apex_persistence.analytics.ddl import migrate_analytics
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.bootstrap import PersistenceService
from apex_persistence.settings import PersistenceSettings
from apex_runtime import Bus
from apex_tools.bootstrap import main as tools_main
from apex_tools.settings import ToolsSettings

AGENTS = ("supervisor", "triage", "data_helper", "reporting")


@dataclass
class Run:
    run_id: str
    events: list[dict[str, Any]]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def output(self, agent: str) -> dict[str, Any]:
        done = [e for e in self.of("agent_completed") if e["data"]["agent"] == agent]
        assert done, f"{agent} did not complete: {[e['type'] for e in self.events]}"
        return done[-1]["data"]["output"]  # type: ignore[no-any-return]

    @property
    def response(self) -> dict[str, Any]:
        return self.output("reporting")["response"]  # type: ignore[no-any-return]

    def call_ids(self) -> set[str]:
        return {e["data"]["call_id"] for e in self.of("tool_completed")}

    def thoughts(self, agent: str | None = None) -> list[str]:
        return [e["data"]["text"] for e in self.of("agent_thinking") if agent in (None, e["data"]["agent"])]


@dataclass
class Stack:
    bus: Bus
    tenant_id: str = field(default_factory=lambda: new_id("ten"))
    user_id: str = field(default_factory=lambda: new_id("usr"))

    async def upload(self, rows: list[dict[str, Any]]) -> None:
        """Usage records through the real ingest command, then waits until they are stored."""
        records = [UsageRecord.model_validate(r) for r in rows]
        batch = new_id("upl")
        for part in range(0, len(records), 2000):
            await self.bus.publish(
                UsageIngest(
                    id=f"{batch}:{part}",
                    tenant_id=self.tenant_id,
                    user_id=self.user_id,
                    data=UsageIngestData(
                        batch_id=batch, source="ndjson", records=records[part : part + 2000]
                    ),
                ),
                subjects.usage_ingest(self.tenant_id),
            )
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            summary = await self.bus.query_raw(Q_USAGE_SUMMARY, UsageSummary(tenant_id=self.tenant_id))
            if summary["requests"] >= len({r.dedup_key() for r in records}):
                return
            assert asyncio.get_running_loop().time() < deadline, summary
            await asyncio.sleep(0.2)

    async def ask(
        self,
        question: str,
        *,
        thread_id: str | None = None,
        history: list[dict[str, str]] | None = None,
        step_timeout: float = 60.0,
    ) -> Run:
        thread_id = thread_id or new_id("thr")
        run_id = new_id("run")
        scope = Scope(tenant_id=self.tenant_id, user_id=self.user_id, thread_id=thread_id, run_id=run_id)
        subject = subjects.thread_events(self.tenant_id, self.user_id, thread_id)
        inputs: dict[str, Any] = {}
        async with self.bus.watch(subject) as watch:
            await self.bus.publish_event(
                scope.make(
                    RunAccepted,
                    RunAcceptedData(message_id=derive_id("msg", run_id), question=question),
                    id=f"{run_id}:accepted",
                )
            )
            for step, agent in enumerate(AGENTS):
                await self.bus.publish(
                    scope.make(
                        AgentStep,
                        AgentStepData(
                            agent=agent,
                            step=step,
                            question=question,
                            inputs=dict(inputs),  # type: ignore[arg-type]
                            history=history or [],
                            deadline_ms=int(step_timeout * 1000),
                        ),
                        id=f"{run_id}:{step}:agent.step",
                        agent=agent,  # type: ignore[arg-type]
                    ),
                    subjects.CMD_AGENT_STEP,
                )
                outcome = await watch.wait_for(
                    lambda e, s=step: (
                        e.get("run_id") == run_id
                        and e.get("type") in ("agent_completed", "agent_failed")
                        and e["data"]["step"] == s
                    ),
                    timeout=step_timeout + 10,
                )
                if outcome["type"] == "agent_completed":
                    inputs[agent] = outcome["data"]["output"]
                else:
                    inputs.setdefault("failures", []).append(
                        {"agent": agent, "error": outcome["data"]["error"]}
                    )
        events = [orjson.loads(raw) async for _seq, raw in self.bus.read_subject(subject)]
        return Run(run_id, [e for e in events if e.get("run_id") == run_id])


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture(scope="session")
async def agents_chdb(infra_root: Path) -> AsyncIterator[ChdbStore]:
    store = ChdbStore(infra_root / "chdb", "apex_unused")  # the process's one embedded engine
    yield store
    await store.close()


@pytest.fixture
async def make_stack(
    server_factory: Any, pg_dsn: str, redis_url: str, agents_chdb: ChdbStore
) -> AsyncIterator[StackFactory]:
    """Starts the stack; ``make_stack(**agent_settings)`` configures the agents (the brain)."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    services: list[PersistenceService] = []
    buses: list[Bus] = []
    analytics = agents_chdb.sibling(f"t_{uuid.uuid4().hex[:12]}")
    await migrate_analytics(analytics)

    async def make(**agent_settings: Any) -> Stack:
        nats = server_factory("nats")
        common = {"nats_url": nats.url, "log_format": "text", "env": "test"}
        persistence = PersistenceService(
            PersistenceSettings(
                **common,
                postgres_dsn=pg_dsn,
                redis_url=redis_url,
                persistence_port=0,
                instance_id="persistence-test",
                clickhouse_database=analytics.database,
            ),
            analytics=analytics,
        )
        await persistence.start()
        services.append(persistence)
        tasks.append(asyncio.create_task(tools_main(stop, ToolsSettings(**common, tools_port=0))))
        tasks.append(
            asyncio.create_task(agents_main(stop, AgentsSettings(**common, agents_port=0, **agent_settings)))
        )
        bus = await Bus.connect(nats.url, "analyst-test")
        buses.append(bus)
        await asyncio.sleep(1.0)  # the consumers bind
        return Stack(bus)

    yield make
    stop.set()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)
    for service in services:
        await service.stop()
    for bus in buses:
        await bus.close()
    await analytics.command("DROP DATABASE IF EXISTS $db")
