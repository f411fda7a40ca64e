"""Real stores for the persistence integration tests: a migrated Postgres database, a
flushed Redis, one embedded ClickHouse engine for the session with a database per
test, and builders of realistic runs made of contract events."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from apex_contracts import (
    AgentCompleted,
    AgentCompletedData,
    AgentStarted,
    AgentStartedData,
    AgentThinking,
    AgentThinkingData,
    Envelope,
    MessageCreated,
    MessageCreatedData,
    RunAccepted,
    RunAcceptedData,
    RunCancelled,
    RunCancelledData,
    RunCompleted,
    RunCompletedData,
    RunFailed,
    RunFailedData,
    RunUsage,
    Scope,
    ThreadDeleted,
    ThreadDeletedData,
    ThreadEvent,
    ThreadRenamed,
    ThreadRenamedData,
    ToolCompleted,
    ToolCompletedData,
    ToolExecuting,
    ToolExecutingData,
    derive_id,
    new_id,
)
from apex_contracts.errors import ErrorInfo
from apex_contracts.events import UserErased, UserErasedData
from apex_contracts.report import AssistantResponse, Period, Report, SupervisorOutput
from apex_contracts.subjects import thread_events
from apex_persistence.analytics.ddl import migrate_analytics
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.postgres.db import Database, make_engine
from apex_persistence.postgres.migrate import migrate
from apex_persistence.projection.delivery import Delivery
from apex_runtime import Bus

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Story:
    """Runs of a few threads, as the orchestrator, agents and tools would publish them."""

    def __init__(
        self, tenant_id: str | None = None, user_id: str | None = None, *, start: datetime | None = None
    ) -> None:
        self.tenant_id = tenant_id or new_id("ten")
        self.user_id = user_id or new_id("usr")
        self.clock = start or T0

    def _tick(self, event: ThreadEvent) -> ThreadEvent:
        self.clock += timedelta(milliseconds=250)
        return event.model_copy(update={"occurred_at": self.clock})

    def run(
        self,
        thread_id: str | None = None,
        *,
        text: str = "Where does my LLM spend go?",
        end: str = "completed",
        tools: int = 2,
        tokens: int = 300,
    ) -> list[ThreadEvent]:
        s = Scope(
            tenant_id=self.tenant_id,
            user_id=self.user_id,
            thread_id=thread_id or new_id("thr"),
            run_id=new_id("run"),
        )
        run_id = str(s.run_id)
        message_id = derive_id("msg", run_id, "user")
        events: list[ThreadEvent] = [
            s.make(
                MessageCreated,
                MessageCreatedData(message_id=message_id, content=text, client_msg_id=run_id),
                id=f"{run_id}:message",
            ),
            s.make(
                RunAccepted, RunAcceptedData(message_id=message_id, question=text), id=f"{run_id}:accepted"
            ),
            s.make(
                AgentStarted,
                AgentStartedData(agent="supervisor", step=0),
                id=f"{run_id}:0:started",
                agent="supervisor",
            ),
            s.make(
                AgentThinking,
                AgentThinkingData(agent="supervisor", step=0, text="planning"),
                id=f"{run_id}:0:thinking",
                agent="supervisor",
            ),
        ]
        for n in range(tools):
            call_id = derive_id("call", run_id, str(n))
            events.append(
                s.make(
                    ToolExecuting,
                    ToolExecutingData(call_id=call_id, tool="cost_breakdown", arguments={"n": n}),
                    id=f"{run_id}:t{n}:exec",
                )
            )
            events.append(
                s.make(
                    ToolCompleted,
                    ToolCompletedData(
                        call_id=call_id,
                        tool="cost_breakdown",
                        status="ok",
                        duration_ms=30 + n,
                        result={"rows": n},
                    ),
                    id=f"{run_id}:t{n}:done",
                )
            )
        events.append(
            s.make(
                AgentCompleted,
                AgentCompletedData(
                    agent="supervisor",
                    step=0,
                    duration_ms=700,
                    summary="done",
                    output=SupervisorOutput(plan=["reporting"]),
                    tokens=tokens,
                ),
                id=f"{run_id}:0:completed",
                agent="supervisor",
            )
        )
        events.append(s.make(*self._terminal(end, tokens), id=f"{run_id}:end"))
        return [self._tick(e) for e in events]

    @staticmethod
    def _terminal(end: str, tokens: int) -> tuple[type[ThreadEvent], object]:
        if end == "failed":
            return RunFailed, RunFailedData(
                error=ErrorInfo(code="tool_failed", message="x", retryable=True), duration_ms=2000
            )
        if end == "cancelled":
            return RunCancelled, RunCancelledData(cause="user", duration_ms=1000)
        return RunCompleted, RunCompletedData(
            status=end,
            duration_ms=2500,
            usage=RunUsage(tool_calls=2, llm_tokens=tokens, llm_cost_usd=0.0123),
            response=AssistantResponse(
                text=f"Report ({end}).", report=Report(period=Period(), total_cost_usd=1.5, requests=10)
            ),
        )

    def _scope(self, thread_id: str) -> dict[str, Any]:
        self.clock += timedelta(milliseconds=250)
        return {
            "tenant_id": self.tenant_id,
            "user_id": self.user_id,
            "thread_id": thread_id,
            "occurred_at": self.clock,
        }

    def rename(self, thread_id: str, title: str) -> ThreadRenamed:
        return ThreadRenamed(id=new_id("evt"), **self._scope(thread_id), data=ThreadRenamedData(title=title))

    def delete(self, thread_id: str, *, erase: bool = False, runs: Sequence[str] = ()) -> ThreadDeleted:
        return ThreadDeleted(
            id=f"{thread_id}:deleted:{len(runs)}",
            **self._scope(thread_id),
            data=ThreadDeletedData(erase=erase, requested_by=self.user_id, runs=list(runs)),
        )

    def erase_user(self, runs: Sequence[str] = ()) -> UserErased:
        """The user's tombstone; ``runs``: the user's runs still going (covered after it)."""
        self.clock += timedelta(milliseconds=250)
        return UserErased(
            id=f"{self.user_id}:erased",
            tenant_id=self.tenant_id,
            user_id=self.user_id,
            occurred_at=self.clock,
            data=UserErasedData(requested_by=self.user_id, runs=list(runs), account_closed=True),
        )

    @staticmethod
    def subject(event: Envelope) -> str:
        if isinstance(event, UserErased):
            return UserErased.subject(event.tenant_id, event.user_id)
        assert event.user_id is not None and event.thread_id is not None
        return thread_events(event.tenant_id, event.user_id, event.thread_id)

    @staticmethod
    def deliveries(events: Sequence[Envelope], first_seq: int = 1) -> list[Delivery]:
        return [Delivery(seq, Story.subject(e), e.wire()) for seq, e in enumerate(events, start=first_seq)]

    @staticmethod
    async def publish(bus: Bus, events: Sequence[Envelope]) -> list[int]:
        """Publishes in order; returns the stream sequences."""
        return [await bus.publish(event, Story.subject(event)) for event in events]

    @staticmethod
    def chaotic(batch: list[Delivery], seed: int = 7) -> list[list[Delivery]]:
        """Every delivery twice, shuffled, cut into random batches: a hostile redelivery."""
        rng = random.Random(seed)
        twice = batch + batch
        rng.shuffle(twice)
        chunks: list[list[Delivery]] = []
        while twice:
            size = rng.randint(1, 7)
            chunks.append(twice[:size])
            twice = twice[size:]
        return chunks

    def threads(self, count: int = 3, runs_per_thread: int = 2) -> list[ThreadEvent]:
        """Several threads with several runs each, every end status represented."""
        ends = ["completed", "needs_data", "failed", "cancelled"]
        events: list[ThreadEvent] = []
        for t in range(count):
            thread_id = new_id("thr")
            for r in range(runs_per_thread):
                events += self.run(
                    thread_id,
                    text=f"Question {t}.{r} about model costs and latency",
                    end=ends[(t + r) % len(ends)],
                    tools=1 + (t + r) % 3,
                )
        return events


Eventually = Callable[..., Awaitable[Any]]


async def _eventually(check: Callable[[], Awaitable[Any]], timeout: float = 20.0, every: float = 0.1) -> Any:
    """Polls ``check`` until it returns something truthy; fails after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached in {timeout}s: last result {result!r}")
        await asyncio.sleep(every)


@pytest.fixture
def eventually() -> Eventually:
    return _eventually


@pytest.fixture
def story() -> Story:
    return Story()


@pytest.fixture
def new_story() -> type[Story]:
    """Makes more stories (another tenant, another user) in the same test."""
    return Story


@pytest.fixture
async def pg(pg_dsn: str) -> AsyncIterator[Database]:
    await migrate(pg_dsn)
    db = Database(make_engine(pg_dsn, pool_size=2))
    yield db
    await db.close()


@pytest.fixture
async def bus(server_factory: Any, request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """A NATS server of this test's own (fresh stream sequences: 1, 2, ...)."""
    connected = await Bus.connect(server_factory("nats").url, request.module.__name__.rsplit(".", 1)[-1])
    await connected.ensure_topology()
    yield connected
    await connected.close()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def chdb_engine(infra_root: Path) -> AsyncIterator[ChdbStore]:
    store = ChdbStore(infra_root / "chdb", "apex_unused")
    yield store
    await store.close()


@pytest.fixture
async def analytics(chdb_engine: ChdbStore) -> AsyncIterator[ChdbStore]:
    """A migrated analytics database of this test's own."""
    store = chdb_engine.sibling(f"t_{uuid.uuid4().hex[:12]}")
    await migrate_analytics(store)
    yield store
    await store.command("DROP DATABASE IF EXISTS $db")
