"""A retried agent step never mixes two attempts. The run machinery runs on a private NATS
(orchestrator and tools in this process, two agents processes on the scripted
OpenAI-compatible server); the model writes its answer differently on each attempt.
The agents process streaming the first answer dies (SIGKILL) or stalls (SIGSTOP) mid-
stream; the step's next attempt streams its own answer under new ids and supersedes the
first one's partial text. A reader folding the thread's events (``apex_client.Answers``),
live from before the run or replaying it afterwards, sees one answer at every moment:
a prefix of the first until it is superseded, then of the second, which is the run's
final text."""

from __future__ import annotations

import asyncio
import signal
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from apex_cli.embedded import EmbeddedServer
from apex_client import Answers
from apex_contracts.streams import AGENT_STEP_CONSUMER
from apex_runtime import Bus
from tests.integration.agents.scripted_llm import Reply, ScriptedLLM, Stream, role
from tests.integration.orchestrator.harness import (
    GatewayStandIn,
    Machinery,
    Process,
    UsageStandIn,
    User,
    assert_clean,
    service_detail,
    until_ready,
    wait_terminal,
)

# No digits: the figure validator accepts the text as it is.
FIRST = [
    "Most of your spend goes to one large model, used for every kind of request today. ",
    "Short classification prompts do not need it; a smaller model would answer them well ",
    "and the first attempt would have gone on to explain how to route them.",
]
SECOND = [
    "Your spend is concentrated on a single premium model. ",
    "Route simple prompts to a smaller model and cache the repeated ones. ",
    "Both changes keep quality where it matters.",
]


class Writer:
    """Triage classifies the question as about cost, the data helper asks for nothing (the
    plan's analyses run anyway), and the writer answers FIRST, held after two chunks, then
    SECOND on every later request (also held after one chunk when ``second_hold``)."""

    def __init__(self) -> None:
        self.first_hold = asyncio.Event()
        self.second_hold: asyncio.Event | None = None
        self.writes = 0

    def release(self) -> None:
        for hold in (self.first_hold, self.second_hold):
            if hold is not None:
                hold.set()

    def __call__(self, request: dict[str, Any]) -> Reply:
        who = role(request)
        if who == "triage":
            return Stream(tool_calls=[("c1", "classify_question", '{"intent": "cost"}')])
        if who == "data_helper":
            return Stream(text=["Nothing more to add."])
        self.writes += 1
        if self.writes == 1:
            return Stream(text=FIRST, hold=self.first_hold, hold_after=2)
        return Stream(text=SECOND, hold=self.second_hold, hold_after=1)


@pytest.fixture
async def machinery(server_factory: Callable[[str], EmbeddedServer]) -> AsyncIterator[Machinery]:
    server = server_factory("nats")
    running = Machinery(server.url, Path(tempfile.mkdtemp(prefix="apex-attempts-")))
    await running.connect()
    try:
        yield running
    finally:
        await running.close()
        server.stop()


@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"])
async def test_a_retried_step_supersedes_the_partial_answer(machinery: Machinery, fault: str) -> None:
    bus = machinery.bus
    assert bus is not None
    await UsageStandIn(bus, with_data=True).start()
    writer = Writer()
    if fault == "SIGSTOP":
        writer.second_hold = asyncio.Event()
    async with ScriptedLLM(writer) as llm:
        await machinery.start("tools")
        await machinery.start("orchestrator")
        llm_env = {"APEX_LLM_BASE_URL": llm.base_url, "APEX_LLM_MODEL": "scripted-model"}
        replicas = [machinery.spawn("agents", **llm_env), machinery.spawn("agents", **llm_env)]
        for replica in replicas:
            await until_ready(replica)
        user = User()
        sent = await GatewayStandIn(bus).send(
            user, "Where is my LLM spend going and how do I cut it?", start=False
        )
        async with bus.watch(sent.subject) as live:
            await GatewayStandIn(bus).start(sent)

            first = await _deltas(bus, sent.subject, attempt=1, at_least=2)
            streaming = await _streaming(replicas)
            streaming.signal(signal.SIGKILL if fault == "SIGKILL" else signal.SIGSTOP)
            try:
                # the step's next delivery (after the ack wait) supersedes the partial answer
                superseded = await live.wait_for(
                    lambda e: e.get("type") == "message.superseded",
                    timeout=AGENT_STEP_CONSUMER.ack_wait_s + 60,
                )
                if fault == "SIGSTOP":  # the stalled attempt wakes up and is told its stream no longer counts
                    streaming.signal(signal.SIGCONT)
                    writer.first_hold.set()
                    await asyncio.sleep(2.0)
                    assert writer.second_hold is not None
                    writer.second_hold.set()
            finally:
                streaming.signal(signal.SIGCONT)
            end = await wait_terminal(bus, sent, timeout=120)
            await asyncio.sleep(1.0)
            seen_live = [dict(h.message) for h in live.after(0) if h.message.get("run_id") == sent.run_id]
        writer.release()  # a killed attempt's request is still held: let the server close

    assert superseded["data"] == {"step": 3, "attempt": 2, "message_ids": [first[0]["data"]["message_id"]]}
    assert end["type"] == "run.completed"
    assert end["data"]["response"]["text"] == "".join(SECOND)
    replay = [orjson.loads(raw) async for _seq, raw in bus.read_subject(sent.subject)]
    mine = [e for e in replay if e.get("run_id") == sent.run_id]
    assert_clean(mine)
    completed = [e for e in mine if e["type"] == "agent_completed" and e["data"]["step"] == 3]
    assert completed[0]["data"]["output"]["response"]["text"] == "".join(SECOND)
    for reader, events in (("replaying", mine), ("live", seen_live)):
        _one_answer_at_every_moment(reader, events, sent.run_id)
    if fault == "SIGSTOP":
        assert streaming.proc.poll() is None, streaming.tail()
        assert "attempt 1 of step 3 was superseded" in streaming.tail(200), "the woken attempt went on"


def _one_answer_at_every_moment(reader: str, events: list[dict[str, Any]], run_id: str) -> None:
    answers = Answers()
    first, second = "".join(FIRST), "".join(SECOND)
    after_superseded = False
    for event in events:
        answers.apply(event)
        after_superseded |= event["type"] == "message.superseded"
        shown = answers.streamed(run_id)
        assert second.startswith(shown) if after_superseded else first.startswith(shown), (
            f"{reader}: a mixed answer after {event['type']}: {shown!r}"
        )
    assert after_superseded, f"{reader}: never saw the superseded event"
    assert answers.streamed(run_id) == second and answers.text(run_id) == second, reader


async def _deltas(bus: Bus, subject: str, *, attempt: int, at_least: int) -> list[dict[str, Any]]:
    for _ in range(600):
        deltas = [
            event
            for event in [orjson.loads(raw) async for _seq, raw in bus.read_subject(subject)]
            if event["type"] == "message.delta" and event["data"].get("attempt") == attempt
        ]
        if len(deltas) >= at_least:
            return deltas
        await asyncio.sleep(0.1)
    raise AssertionError(f"attempt {attempt} never streamed {at_least} chunks")


async def _streaming(replicas: list[Process]) -> Process:
    """The agents replica holding the step (the only step in flight)."""
    loads = [await service_detail(r.port, "work_in_flight") for r in replicas]
    assert sorted(loads) == [0, 1], loads
    return replicas[loads.index(1)]
