"""Observability over the real platform: with ``APEX_OTLP_ENDPOINT`` pointing at a
collector, one chat message becomes one trace (the run's root span, a dispatch and an
``invoke_agent`` span per agent, ``execute_tool`` spans under the agents that called the
tools), exported by the orchestrator, agents and tools processes; and their /metrics
show the run, its steps, its tool calls, their consumers' backlog and heartbeats."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from apex_runtime.tracing import run_ids, run_trace_id
from tests.e2e.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.e2e.platform import Platform, platform_env
from tests.e2e.wsclient import open_socket, recv, send, until_terminal

AGENTS = ("supervisor", "triage", "data_helper", "reporting")
SCRAPED = ("orchestrator", "agents", "tools", "persistence")


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[Platform, OtlpReceiver]]:
    home = Path(tempfile.mkdtemp(prefix="apex-otel-"))
    home.chmod(0o755)
    with OtlpReceiver() as receiver:
        env = platform_env(home)
        env["APEX_OTLP_ENDPOINT"] = receiver.endpoint
        env["OTEL_BSP_SCHEDULE_DELAY"] = "200"  # milliseconds between batch exports
        running = Platform(home, env)
        running.start()
        try:
            yield running, receiver
        finally:
            running.stop()
            shutil.rmtree(home, ignore_errors=True)


def _scrape(platform: Platform, service: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    port = platform.env[f"APEX_{service.upper()}_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (n, have), value in samples.items() if n == name and wanted <= have)


def _spans_of_run(receiver: OtlpReceiver, run_id: str, timeout: float = 20.0) -> list[ReceivedSpan]:
    """The run's spans once the root span and every agent's span have arrived."""
    trace_id = run_trace_id(run_id)
    deadline = time.monotonic() + timeout
    while True:
        spans = [s for s in receiver.snapshot() if s.trace_id == trace_id]
        names = {s.name for s in spans}
        if "invoke_workflow analyst" in names and all(f"invoke_agent {a}" in names for a in AGENTS):
            return spans
        if time.monotonic() > deadline:
            raise AssertionError(f"spans of {run_id} incomplete: {sorted(names)}")
        time.sleep(0.2)


async def test_one_message_is_one_trace_and_moves_the_counters(
    traced: tuple[Platform, OtlpReceiver],
) -> None:
    platform, receiver = traced
    before = {service: _scrape(platform, service) for service in SCRAPED}
    user = platform.register()
    ws = await open_socket(platform.ws_url, user.access_token)
    assert (await recv(ws))["type"] == "session.ready"
    await send(
        ws, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": "Where does my LLM money go?"}
    )
    accepted = await recv(ws)
    assert accepted["type"] == "message.accepted"
    run_id = accepted["run_id"]
    frames = await until_terminal(ws, run_id)
    await ws.close()
    assert frames[-1]["event"]["type"] == "run.completed"

    spans = _spans_of_run(receiver, run_id)
    by_name: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    # the run's root span: the ids derived from the run, exported by the orchestrator
    (root,) = by_name["invoke_workflow analyst"]
    assert (int(root.trace_id, 16), int(root.span_id, 16)) == run_ids(run_id)
    assert root.service == "orchestrator" and root.parent_span_id == ""
    assert root.attributes["apex.run.status"] == "needs_data"
    for agent in AGENTS:
        (dispatch,) = by_name[f"dispatch {agent}"]
        (invoked,) = by_name[f"invoke_agent {agent}"]
        assert dispatch.service == "orchestrator" and dispatch.parent_span_id == root.span_id
        assert invoked.service == "agents"
        assert invoked.parent_span_id == dispatch.span_id, "the traceparent crossed the bus"
        assert invoked.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert invoked.attributes["gen_ai.agent.name"] == agent
        assert invoked.attributes["apex.run.id"] == run_id
    tools = [s for s in spans if s.name.startswith("execute_tool ")]
    assert tools, "at least one tool call was traced"
    invoke_ids = {s.span_id: s for s in spans if s.name.startswith("invoke_agent ")}
    for tool in tools:
        assert tool.service == "tools"
        assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
        assert tool.name == f"execute_tool {tool.attributes['gen_ai.tool.name']}"
        assert str(tool.attributes["gen_ai.tool.call.id"]).startswith("call_")
        assert tool.parent_span_id in invoke_ids, "a tool span hangs under the agent that called it"
    assert {s.trace_id for s in spans} == {run_trace_id(run_id)}

    after = {service: _scrape(platform, service) for service in SCRAPED}

    def moved(process: str, name: str, **labels: str) -> float:
        return _total(after[process], name, **labels) - _total(before[process], name, **labels)

    assert moved("orchestrator", "apex_orchestrator_runs_started_total") >= 1
    assert moved("orchestrator", "apex_orchestrator_runs_ended_total", status="needs_data") >= 1
    assert moved("orchestrator", "apex_orchestrator_run_duration_seconds_count") >= 1
    assert moved("orchestrator", "apex_orchestrator_time_to_first_event_seconds_count") >= 1
    for agent in AGENTS:
        assert moved("orchestrator", "apex_orchestrator_steps_dispatched_total", agent=agent) >= 1
        assert moved("agents", "apex_agents_steps_total", agent=agent, outcome="completed") >= 1
        assert moved("agents", "apex_agents_step_seconds_count", agent=agent, brain="offline") >= 1
    assert moved("tools", "apex_tools_calls_total") >= len(tools)
    assert moved("tools", "apex_tools_call_seconds_count") >= len(tools)
    for service, consumer in (
        ("orchestrator", "orchestrator-run-start"),
        ("agents", "agents-step"),
        ("tools", "tools-call"),
        ("persistence", "persistence-usage-batches"),
    ):
        backlog = {"service": service, "consumer": consumer}
        assert ("apex_consumer_pending_messages", frozenset(backlog.items())) in after[service]
        assert _total(after[service], "apex_heartbeats_sent_total", service=service, outcome="sent") >= 1
