"""Gateway benchmarks: replay rate, memory per idle connection, connect rate, fan-out.

Run: ``.venv/bin/python -m bench.gateway [--connections 5000] [--replay 10000]``.
Starts its own platform (``apex up`` in a temporary folder) and prints JSON figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
import orjson
import psutil
from websockets.asyncio.client import ClientConnection, connect

from apex_contracts import AgentThinking, AgentThinkingData, Scope, new_id
from apex_contracts.frames import event_frames
from apex_runtime.bus import NatsBus
from tests.e2e.platform import Platform, User, platform_env


async def open_ws(url: str, token: str) -> ClientConnection:
    ws = await connect(
        url,
        subprotocols=["apex.v1"],
        additional_headers={"Authorization": f"Bearer {token}"},  # type: ignore[list-item]
        open_timeout=120,
        ping_interval=None,
    )
    await ws.recv()
    return ws


async def seed_thread(platform: Platform, user: User, events: int, size: int = 300) -> str:
    nc = await nats.connect(platform.recorded_env()["APEX_NATS_URL"], **platform.nats_options())
    bus = NatsBus(nc)
    scope = Scope(
        tenant_id=user.tenant_id, user_id=user.user_id, thread_id=new_id("thr"), run_id=new_id("run")
    )
    text = "x" * size
    pending = []
    for n in range(events):
        event = scope.make(
            AgentThinking, AgentThinkingData(agent="triage", step=1, text=text), id=f"{scope.run_id}:1:t:{n}"
        )
        pending.append(
            nc.jetstream().publish(
                f"apex.evt.{user.tenant_id}.{user.user_id}.{scope.thread_id}",
                event.wire(),
                headers={"Nats-Msg-Id": event.id},
            )
        )
        if len(pending) >= 200:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await nc.close()
    del bus
    return scope.thread_id


async def _replay_once(platform: Platform, user: User, thread_id: str, events: int, max_batch: int) -> float:
    ws = await open_ws(platform.ws_url, user.access_token)
    started = time.perf_counter()
    await ws.send(
        orjson.dumps(
            {"type": "thread.subscribe", "thread_id": thread_id, "after_seq": 0, "max_batch": max_batch}
        ).decode()
    )
    got = 0
    while got < events:
        got += len(event_frames(orjson.loads(await ws.recv())))
    elapsed = time.perf_counter() - started
    await ws.close()
    return elapsed


async def replay_rate(
    platform: Platform, events: int, repeats: int = 5, max_batch: int = 100
) -> dict[str, Any]:
    """A reconnecting client's replay of ``events`` events, asking for ``events`` frames of
    up to ``max_batch`` (as apex_client and the chat page do), and one frame per event;
    each the median of ``repeats`` after one replay not counted (the first read of a
    freshly written thread also pays for loading it)."""
    user = platform.register()
    thread_id = await seed_thread(platform, user, events)
    out: dict[str, Any] = {"events": events, "max_batch": max_batch, "repeats": repeats}
    for label, batch in (("", max_batch), ("one_per_frame_", 1)):
        await _replay_once(platform, user, thread_id, events, batch)
        times = [await _replay_once(platform, user, thread_id, events, batch) for _ in range(repeats)]
        best = statistics.median(times)
        out[f"{label}seconds_median"] = round(best, 3)
        out[f"{label}seconds_all"] = [round(t, 3) for t in times]
        out[f"{label}events_per_s"] = round(events / best)
    return out


async def idle_memory(platform: Platform, connections: int) -> dict[str, Any]:
    users = [platform.register() for _ in range(max(1, connections // 1000 + 1))]
    gateway = psutil.Process(platform.pid("gateway"))
    before = gateway.memory_info().rss
    sockets: list[ClientConnection] = []
    started = time.perf_counter()
    batch = 200
    for offset in range(0, connections, batch):
        sockets += await asyncio.gather(
            *(
                open_ws(platform.ws_url, users[(offset + n) % len(users)].access_token)
                for n in range(min(batch, connections - offset))
            )
        )
    connect_s = time.perf_counter() - started
    await asyncio.sleep(2)
    after = gateway.memory_info().rss
    for ws in sockets:
        ws.transport.abort()
    return {
        "connections": connections,
        "gateway_rss_before_mb": round(before / 2**20, 1),
        "gateway_rss_after_mb": round(after / 2**20, 1),
        "kb_per_connection": round((after - before) / connections / 1024, 1),
        "handshakes_per_s": round(connections / connect_s),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    home = Path(tempfile.mkdtemp(prefix="apex-bench-gw-"))
    home.chmod(0o755)
    env = platform_env(home)
    env["APEX_WS_MAX_CONNECTIONS_PER_USER"] = str(args.connections)
    env["APEX_WS_SEND_QUEUE"] = str(max(4096, args.replay + 100))
    platform = Platform(home, env)
    ready_s = platform.start()
    try:
        return {
            "platform_ready_s": round(ready_s, 1),
            "replay": await replay_rate(platform, args.replay),
            "idle": await idle_memory(platform, args.connections),
        }
    finally:
        platform.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--replay", type=int, default=10_000)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
