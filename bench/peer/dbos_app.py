"""The durable peer: the same four agent steps as Apex's offline golden path (and as the
LangGraph peer, bench/peer/graph.py) as a DBOS workflow, durable on Postgres. Each agent
is a DBOS step that writes the same custom events to the workflow's durable stream, as
DBOS's documentation writes streamed output; the events go to the client as
Server-Sent Events it can resume from an offset. No LLM.

Runs in its own virtual environment (bench/durable_peer.py builds it), one process:
``python dbos_app.py <port> <postgres-url>``.

- ``POST /runs`` {question, pause_ms}: starts a run; answers with its events (SSE: a
  ``metadata`` event with the run id, then each event with ``id: <offset>``, then ``end``)
- ``GET /runs/{run_id}/stream?offset=N``: the run's events from offset N, live until it ends
- ``GET /ok``: 200 once DBOS is launched

``pause_ms`` makes each step wait after its first event, as a model call would: the
killed-worker trials use it so that the kill lands inside a step."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from dbos import DBOS, DBOSConfig, SetWorkflowID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

STREAM = "events"


async def emit(agent: str, n: int, kind: str, **data: Any) -> None:
    event = {"type": kind, "agent": agent, "key": f"{agent}:{kind}:{n}", "data": data, "at": time.time()}
    await DBOS.write_stream_async(STREAM, event)


@DBOS.step()
async def supervisor(question: str, pause_s: float) -> list[str]:
    await emit("supervisor", 0, "agent_started")
    await asyncio.sleep(pause_s)
    await emit("supervisor", 1, "agent_thinking", text="Planning: triage, data helper, reporting.")
    plan = ["triage", "data_helper", "reporting"]
    await emit("supervisor", 2, "agent_completed", plan=plan)
    return plan


@DBOS.step()
async def triage(question: str, pause_s: float) -> dict[str, Any]:
    await emit("triage", 0, "agent_started")
    await asyncio.sleep(pause_s)
    await emit("triage", 1, "agent_thinking", text="The question is about where the money goes.")
    await emit("triage", 2, "tool_executing", tool="usage_coverage", call_id="c0")
    rows = 0  # an empty tenant, as in Apex's golden path
    await emit(
        "triage", 3, "tool_completed", tool="usage_coverage", call_id="c0", status="ok", result={"rows": rows}
    )
    await emit("triage", 4, "agent_thinking", text=f"{rows} usage records in range; data is insufficient.")
    await emit("triage", 5, "agent_completed", intent="cost", sufficiency="insufficient")
    return {"intent": "cost", "rows": rows}


@DBOS.step()
async def data_helper(pause_s: float) -> dict[str, Any]:
    await emit("data_helper", 0, "agent_started")
    await asyncio.sleep(pause_s)
    await emit("data_helper", 1, "agent_thinking", text="Data request prepared.")
    await emit("data_helper", 2, "agent_completed")
    return {}


@DBOS.step()
async def reporting(pause_s: float) -> str:
    await emit("reporting", 0, "agent_started")
    await asyncio.sleep(pause_s)
    await emit("reporting", 1, "agent_thinking", text="No usable data: writing a guidance report.")
    await emit("reporting", 2, "agent_completed", status="needs_data")
    return "## I need your usage data first"


@DBOS.workflow()
async def analyst(question: str, pause_s: float = 0.0) -> str:
    await supervisor(question, pause_s)
    await triage(question, pause_s)
    await data_helper(pause_s)
    response = await reporting(pause_s)
    await DBOS.close_stream_async(STREAM)
    return response


def _sse(data: Any, event: str | None = None, offset: int | None = None) -> bytes:
    head = (f"event: {event}\n" if event else "") + (f"id: {offset}\n" if offset is not None else "")
    return f"{head}data: {json.dumps(data)}\n\n".encode()


async def _events(run_id: str, offset: int, metadata: bool) -> AsyncIterator[bytes]:
    if metadata:
        yield _sse({"run_id": run_id}, "metadata")
    async for value in DBOS.read_stream_async(run_id, STREAM, offset=offset):
        yield _sse(value, offset=offset)
        offset += 1
    yield _sse({}, "end")


async def start_run(request: Request) -> StreamingResponse:
    body = await request.json()
    run_id = str(uuid.uuid4())
    with SetWorkflowID(run_id):
        await DBOS.start_workflow_async(analyst, body.get("question", ""), body.get("pause_ms", 0) / 1000)
    return StreamingResponse(_events(run_id, 0, True), media_type="text/event-stream")


async def resume(request: Request) -> StreamingResponse:
    offset = int(request.query_params.get("offset", "0"))
    return StreamingResponse(
        _events(request.path_params["run_id"], offset, False), media_type="text/event-stream"
    )


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    DBOS.launch()
    yield
    DBOS.destroy(workflow_completion_timeout_sec=0)


def main() -> None:
    port, database_url = int(sys.argv[1]), sys.argv[2]
    config: DBOSConfig = {
        "name": "apex-bench-peer",
        "system_database_url": database_url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    app = Starlette(
        routes=[
            Route("/runs", start_run, methods=["POST"]),
            Route("/runs/{run_id}/stream", resume),
            Route("/ok", ok),
        ],
        lifespan=lifespan,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop", http="httptools")


if __name__ == "__main__":
    main()
