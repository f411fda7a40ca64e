"""The golden path over the real platform: a user connects, sends a message and watches
the whole run, in order, once."""

from __future__ import annotations

import time
import uuid

from tests.e2e.platform import Platform
from tests.e2e.wsclient import open_socket, recv, send, until_terminal

AGENTS = ["supervisor", "triage", "data_helper", "reporting"]


async def test_golden_path_for_a_tenant_without_data(platform: Platform) -> None:
    user = platform.register()
    ws = await open_socket(platform.ws_url, user.access_token)
    ready = await recv(ws)
    assert ready["type"] == "session.ready"
    assert ready["user_id"] == user.user_id and ready["tenant_id"] == user.tenant_id
    assert ready["protocol"] == "apex.v1"
    assert ws.subprotocol == "apex.v1"

    started = time.perf_counter()
    await send(
        ws,
        {
            "type": "message.send",
            "client_msg_id": uuid.uuid4().hex,
            "text": "Where is my LLM spend going and how do I cut it?",
        },
    )
    accepted = await recv(ws)
    assert accepted["type"] == "message.accepted"
    frames = await until_terminal(ws, accepted["run_id"])
    elapsed_ms = (time.perf_counter() - started) * 1000
    await ws.close()

    events = [f for f in frames if f["type"] == "event"]
    seqs = [f["seq"] for f in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "in seq order, no duplicates"
    ids = [f["event"]["id"] for f in events]
    assert len(set(ids)) == len(ids)
    types = [f["event"]["type"] for f in events]
    assert types[0] == "message.created"
    assert types[1] == "run.accepted"
    assert types[-1] == "run.completed"
    assert sum(t in ("run.completed", "run.failed", "run.cancelled") for t in types) == 1
    for agent in AGENTS:
        mine = [f["event"]["type"] for f in events if (f["event"].get("data") or {}).get("agent") == agent]
        assert mine[0] == "agent_started", agent
        assert "agent_thinking" in mine, agent
        assert mine[-1] == "agent_completed", agent
    started_order = [f["event"]["data"]["agent"] for f in events if f["event"]["type"] == "agent_started"]
    assert started_order == AGENTS
    executing = [f["event"]["data"]["call_id"] for f in events if f["event"]["type"] == "tool_executing"]
    completed = [f["event"]["data"]["call_id"] for f in events if f["event"]["type"] == "tool_completed"]
    assert executing and executing == completed
    assert types.index("tool_executing") < types.index("tool_completed")
    final = events[-1]["event"]["data"]
    assert final["status"] == "needs_data"
    assert final["response"]["kind"] == "guidance"
    assert "upload" in final["response"]["text"].lower()
    assert "tenant_id" not in events[-1]["event"]
    print(f"golden path: {elapsed_ms:.0f} ms, {len(events)} events")
