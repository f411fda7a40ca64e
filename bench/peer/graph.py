"""The peer: the same four agent steps as Apex's offline golden path, as a LangGraph graph
served by `langgraph dev` (in-memory runtime), emitting the same custom events, no LLM.

Each step emits agent_started, agent_thinking, (a tool call: tool_executing and
tool_completed for triage), agent_completed; the run ends with a response."""

from __future__ import annotations

import time
from typing import Any, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    question: str
    plan: list[str]
    intent: str
    rows: int
    response: str


def _emit(kind: str, agent: str, **data: Any) -> None:
    get_stream_writer()({"type": kind, "agent": agent, "data": data, "at": time.time()})


def supervisor(state: State) -> State:
    _emit("agent_started", "supervisor")
    _emit("agent_thinking", "supervisor", text="Planning: triage, data helper, reporting.")
    _emit("agent_completed", "supervisor", plan=["triage", "data_helper", "reporting"])
    return {"plan": ["triage", "data_helper", "reporting"]}


def triage(state: State) -> State:
    _emit("agent_started", "triage")
    _emit("agent_thinking", "triage", text="The question is about where the money goes.")
    _emit("tool_executing", "triage", tool="usage_coverage", call_id="c0")
    rows = 0  # an empty tenant, as in Apex's golden path
    _emit("tool_completed", "triage", tool="usage_coverage", call_id="c0", status="ok", result={"rows": rows})
    _emit("agent_thinking", "triage", text=f"{rows} usage records in range; data is insufficient.")
    _emit("agent_completed", "triage", intent="cost", sufficiency="insufficient")
    return {"intent": "cost", "rows": rows}


def data_helper(state: State) -> State:
    _emit("agent_started", "data_helper")
    _emit("agent_thinking", "data_helper", text="Data request prepared.")
    _emit("agent_completed", "data_helper")
    return {}


def reporting(state: State) -> State:
    _emit("agent_started", "reporting")
    _emit("agent_thinking", "reporting", text="No usable data: writing a guidance report.")
    response = "## I need your usage data first"
    _emit("agent_completed", "reporting", status="needs_data")
    return {"response": response}


builder = StateGraph(State)
for name, node in (
    ("supervisor", supervisor),
    ("triage", triage),
    ("data_helper", data_helper),
    ("reporting", reporting),
):
    builder.add_node(name, node)
builder.add_edge(START, "supervisor")
builder.add_edge("supervisor", "triage")
builder.add_edge("triage", "data_helper")
builder.add_edge("data_helper", "reporting")
builder.add_edge("reporting", END)
graph = builder.compile()
