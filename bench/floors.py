"""The physical floors of this stack, measured in the same run as Apex: one JetStream
publish-to-consume round trip (fsync on), a bare uvicorn WebSocket echo and fan-out, and
the in-process cost of the four offline agents without any bus."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import orjson
from nats.js.api import StorageType, StreamConfig
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect

from apex_cli.embedded import free_port
from apex_runtime import serve_http
from bench.common import repeated, summary


async def jetstream_round_trip(nats_url: str, samples: int = 300, **options: Any) -> dict[str, Any]:
    nc = await nats.connect(nats_url, **options)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name="BENCH_FLOOR", subjects=["bench.floor.>"], storage=StorageType.FILE)
    )
    arrived: asyncio.Queue[float] = asyncio.Queue()

    async def on_msg(msg: Any) -> None:
        arrived.put_nowait(time.perf_counter())

    sub = await js.subscribe("bench.floor.rtt", ordered_consumer=True, cb=on_msg)
    times = []
    for n in range(samples):
        started = time.perf_counter()
        await js.publish("bench.floor.rtt", orjson.dumps({"n": n, "pad": "x" * 400}))
        times.append((await arrived.get() - started) * 1000)
    await sub.unsubscribe()
    await js.delete_stream("BENCH_FLOOR")
    await nc.close()
    return {"round_trip_ms": summary(times[20:], 3)}


async def jetstream_store_rate(
    nats_url: str,
    streams: tuple[int, ...] = (1, 4),
    in_flight: int = 100,
    seconds: float = 2.0,
    **options: Any,
) -> dict[str, Any]:
    """What file streams with an fsync per write store per second when ``in_flight``
    publishers each wait for their ack, spread over 1 or more streams: a stream stores its
    messages one at a time, each with its own fsync, so the rate is set by the disk's fsync
    time and the wait by the messages queued ahead."""
    nc = await nats.connect(nats_url, **options)
    js = nc.jetstream()
    out: dict[str, Any] = {"in_flight": in_flight}
    for count in streams:
        names = [f"BENCH_STORE_{n}" for n in range(count)]
        for n, name in enumerate(names):
            await js.add_stream(
                StreamConfig(name=name, subjects=[f"bench.store.{n}"], storage=StorageType.FILE)
            )
        out[f"streams_{count}"] = await _store_rate(js, count, in_flight, seconds)
        for name in names:
            await js.delete_stream(name)
    await nc.close()
    return out


async def _store_rate(js: Any, streams: int, in_flight: int, seconds: float) -> dict[str, Any]:
    waits: list[float] = []
    ends = time.perf_counter() + seconds
    payload = orjson.dumps({"pad": "x" * 400})

    async def publisher(n: int) -> None:
        while (started := time.perf_counter()) < ends:
            await js.publish(f"bench.store.{n % streams}", payload)
            waits.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(publisher(n) for n in range(in_flight)))
    elapsed = time.perf_counter() - began
    return {"messages_per_s": round(len(waits) / elapsed), "publish_ms": summary(waits, 2)}


async def _echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect:
        return


class _Fanout:
    def __init__(self) -> None:
        self.sockets: list[WebSocket] = []
        self.ready = asyncio.Event()

    async def endpoint(self, ws: WebSocket) -> None:
        await ws.accept()
        self.sockets.append(ws)
        try:
            await ws.receive_text()
        except WebSocketDisconnect:
            return


async def ws_floor(clients: int = 1000, frames: int = 20, samples: int = 300) -> dict[str, Any]:
    fanout = _Fanout()
    app = Starlette(routes=[WebSocketRoute("/echo", _echo), WebSocketRoute("/fan", fanout.endpoint)])
    port = free_port()
    server, task = await serve_http(app, "127.0.0.1", port, ws_max_size=65536, ws_per_message_deflate=False)
    try:
        ws = await connect(f"ws://127.0.0.1:{port}/echo")
        rtts = []
        for n in range(samples):
            started = time.perf_counter()
            await ws.send(orjson.dumps({"type": "ping", "ref": str(n)}).decode())
            await ws.recv()
            rtts.append((time.perf_counter() - started) * 1000)
        await ws.close()
        fan_rates = await _fanout_rate(port, fanout, clients, frames)
    finally:
        server.should_exit = True
        await task
    return {"echo_round_trip_ms": summary(rtts[20:], 3), "fanout_frames_per_s": fan_rates, "clients": clients}


async def _fanout_rate(port: int, fanout: _Fanout, clients: int, frames: int) -> dict[str, Any]:
    sockets = []
    for offset in range(0, clients, 200):
        sockets += await asyncio.gather(
            *(
                connect(f"ws://127.0.0.1:{port}/fan", ping_interval=None)
                for _ in range(min(200, clients - offset))
            )
        )
    frame = orjson.dumps(
        {
            "type": "event",
            "thread_id": "thr_x",
            "seq": 1,
            "event": {"type": "agent_thinking", "data": {"text": "x" * 200}},
        }
    ).decode()
    rates = []
    for _ in range(3):
        started = time.perf_counter()

        async def drain(ws: Any) -> None:
            for _ in range(frames):
                await ws.recv()

        readers = asyncio.gather(*(drain(ws) for ws in sockets))
        for _ in range(frames):
            for server_ws in fanout.sockets:
                await server_ws.send_text(frame)
        await readers
        rates.append(clients * frames / (time.perf_counter() - started))
    for ws in sockets:
        ws.transport.abort()
    return repeated(rates, 0)


async def agents_in_process(repeats: int = 200) -> dict[str, Any]:
    """The four offline agents on an empty tenant, with tool results handed over in memory."""
    from apex_agents.offline import offline_agents
    from bench.inprocess import InMemoryContext

    agents = offline_agents()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        inputs: dict[str, Any] = {}
        for step, name in enumerate(("supervisor", "triage", "data_helper", "reporting")):
            ctx = InMemoryContext(name, step, inputs)
            output, _summary = await agents[name].run(ctx)  # type: ignore[attr-defined]
            inputs[name] = output.model_dump(mode="json")
        times.append((time.perf_counter() - started) * 1000)
    return {"four_agents_ms": summary(times[10:], 3)}


async def gateway_fanout(platform: Any, clients: int, frames: int = 20) -> dict[str, Any]:
    """Frames per second the gateway fans out: `clients` sockets subscribed to one thread,
    `frames` events appended to it, until every socket has every frame."""
    from bench.gateway import open_ws, seed_thread

    user = platform.register()
    thread_id = await seed_thread(platform, user, 1)
    sockets = []
    for offset in range(0, clients, 200):
        sockets += await asyncio.gather(
            *(open_ws(platform.ws_url, user.access_token) for _ in range(min(200, clients - offset)))
        )
    head = 1
    for ws in sockets:
        await ws.send(
            orjson.dumps({"type": "thread.subscribe", "thread_id": thread_id, "after_seq": 0}).decode()
        )
    await asyncio.gather(*(_read_events(ws, 1) for ws in sockets))
    rates = []
    for _ in range(3):
        readers = asyncio.gather(*(_read_events(ws, frames) for ws in sockets))
        started = time.perf_counter()
        await _append(platform, user, thread_id, frames, head)
        await readers
        rates.append(clients * frames / (time.perf_counter() - started))
        head += frames
    for ws in sockets:
        ws.transport.abort()
    return {"clients": clients, "frames_per_s": repeated(rates, 0)}


async def _read_events(ws: Any, count: int) -> None:
    got = 0
    while got < count:
        if orjson.loads(await ws.recv())["type"] == "event":
            got += 1


async def _append(platform: Any, user: Any, thread_id: str, count: int, offset: int) -> None:
    from apex_contracts import AgentThinking, AgentThinkingData, Scope, new_id
    from apex_contracts.subjects import thread_events

    nc = await nats.connect(platform.recorded_env()["APEX_NATS_URL"], **platform.nats_options())
    js = nc.jetstream()
    scope = Scope(tenant_id=user.tenant_id, user_id=user.user_id, thread_id=thread_id, run_id=new_id("run"))
    subject = thread_events(user.tenant_id, user.user_id, thread_id)
    for n in range(count):
        event = scope.make(
            AgentThinking,
            AgentThinkingData(agent="triage", step=1, text="x" * 200),
            id=f"{scope.run_id}:fan:{offset + n}",
        )
        await js.publish(subject, event.wire(), headers={"Nats-Msg-Id": event.id})
    await nc.close()


async def ingest(platform: Any, rows: int) -> dict[str, Any]:
    """Usage ingest through the real gateway: rows per second until stored, per format."""
    import tempfile
    from pathlib import Path

    import httpx

    from bench.ingest import write

    out: dict[str, Any] = {"rows": rows}
    for kind in ("ndjson", "csv"):
        path = Path(tempfile.mkdtemp(prefix="apex-bench-ingest-")) / f"usage.{kind}"
        write(path, kind, rows)
        user = platform.register()
        headers = {
            "Authorization": f"Bearer {user.access_token}",
            "Content-Type": "text/csv" if kind == "csv" else "application/x-ndjson",
        }
        started = time.perf_counter()
        async with httpx.AsyncClient(timeout=httpx.Timeout(1800, connect=10)) as http:
            with path.open("rb") as body:
                answer = (
                    (
                        await http.post(
                            f"{platform.gateway}/api/v1/usage", content=body.read(), headers=headers
                        )
                    )
                    .raise_for_status()
                    .json()
                )
            answered = time.perf_counter() - started
            while True:
                summary_ = (
                    await http.get(f"{platform.gateway}/api/v1/usage/summary", headers=headers)
                ).json()
                if summary_.get("requests", 0) >= rows:
                    break
                await asyncio.sleep(0.25)
        stored = time.perf_counter() - started
        out[kind] = {
            "bytes": path.stat().st_size,
            "accepted": answer.get("accepted"),
            "answered_rows_per_s": round(rows / answered),
            "stored_rows_per_s": round(rows / stored),
        }
    return out


async def projections(seconds: float, rate: float = 1000.0) -> dict[str, Any]:
    """Projection lag at a sustained rate and rebuild speed (bench.projections, own servers)."""
    import sys
    import tempfile
    from pathlib import Path

    target = Path(tempfile.mkdtemp(prefix="apex-bench-proj-")) / "figures.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.projections",
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--json",
        str(target),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if target.exists():
        return orjson.loads(target.read_bytes())  # type: ignore[no-any-return]
    return {"error": f"exit {proc.returncode}: {err.decode(errors='replace')[-2000:]}"}
