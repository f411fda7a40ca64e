"""Token streaming: many concurrent runs, each streaming ``message.delta`` events at 50 a
second, through the whole platform to WebSocket clients.

The platform runs the language-model brain against bench/llm_server.py (a scripted
OpenAI-compatible streaming server on loopback, its own process, configured with
``APEX_LLM_BASE_URL``); the tenant has three days of usage, so every run classifies,
gathers data with the tools and then writes its text as a stream. The server holds the
writers until all of them have asked, then streams each one chunk every 20 ms; every
chunk carries the moment it was sent, so the client measures the delay from the model to
the screen. Clients ask for ``events`` frames of up to 100 and ack the way the page does
(coalesced, 150 ms).

Figures: deltas expected and delivered (each once, in order, and the final text equal to
them joined), delivery latency (model → client, and event written → client), the rate
the deltas were written to the log at per run (a slow agent falls behind its model: that
is lag too), and the p99 delay over the first, middle and last third of the streaming
window (bounded lag: the last third no worse than 1.5× the first plus 50 ms, and the
deltas written at ≥ 90% of the model's rate)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from datetime import datetime
from typing import Any, NamedTuple

import httpx
import orjson
import psutil
from websockets.exceptions import ConnectionClosed

from apex_cli.demo_data import generate
from apex_cli.embedded import free_port
from apex_contracts import TERMINAL
from apex_contracts.frames import event_frames
from bench.common import percentile, running_platform, summary
from bench.cpu import platform_pids
from bench.golden import open_ws
from bench.llm_server import read_stamps
from bench.stream_probe import CpuSampler, LogProbe
from tests.e2e.platform import Platform

QUESTION = "Where is my LLM spend going and how do I cut it?"
MAX_BATCH = 100  # as the chat page asks (its socket.js)


class StreamedRun:
    """What one client saw of its run: per streamed message, one row per model chunk
    (a delta carries every chunk that arrived while the previous one was being stored)."""

    def __init__(self) -> None:
        # message id → (chunk, sent by the model, written to the log, arrived), seconds
        self.deltas: dict[str, list[tuple[int, float, float, float]]] = {}
        self.texts: dict[str, list[str]] = {}
        self.events: dict[str, set[int]] = {}  # message id → delta indexes seen
        self.duplicates = 0
        self.outcome = "timeout"
        self.response = ""

    def add(self, event: dict[str, Any], arrived: float) -> None:
        data = event["data"]
        seen = self.events.setdefault(data["message_id"], set())
        if data["index"] in seen:
            self.duplicates += 1
            return
        seen.add(data["index"])
        written = datetime.fromisoformat(event["occurred_at"]).timestamp()
        mine = self.deltas.setdefault(data["message_id"], [])
        for sent in read_stamps(data["text"]) or [float("nan")]:
            mine.append((len(mine), sent, written, arrived))
        self.texts.setdefault(data["message_id"], []).append(data["text"])


async def one_client(ws: Any, run: StreamedRun, deadline: float) -> None:
    await ws.send(
        orjson.dumps(
            {
                "type": "message.send",
                "client_msg_id": uuid.uuid4().hex,
                "text": QUESTION,
                "max_batch": MAX_BATCH,
            }
        ).decode()
    )
    last_seq: dict[str, int] = {}
    acking: set[str] = set()

    async def ack_soon(thread_id: str) -> None:
        await asyncio.sleep(0.15)
        acking.discard(thread_id)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(
                orjson.dumps(
                    {"type": "event.ack", "thread_id": thread_id, "seq": last_seq[thread_id]}
                ).decode()
            )

    run_id = None
    try:
        async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
            while True:
                frame = orjson.loads(await ws.recv())
                arrived = time.time()
                if frame["type"] == "message.accepted":
                    run_id = frame["run_id"]
                for each in event_frames(frame):
                    if each["seq"] <= last_seq.get(each["thread_id"], 0):
                        continue
                    thread_id = each["thread_id"]
                    last_seq[thread_id] = each["seq"]
                    if thread_id not in acking:
                        acking.add(thread_id)
                        asyncio.get_running_loop().create_task(ack_soon(thread_id))
                    event = each["event"]
                    if event["type"] == "message.delta":
                        run.add(event, arrived)
                    elif event["type"] in TERMINAL and event.get("run_id") == run_id:
                        run.outcome = event["data"].get("status") or event["type"]
                        run.response = ((event["data"].get("response") or {}).get("text")) or ""
                        return
    except TimeoutError:
        return


def figures(runs: list[StreamedRun], expected_per_run: int, interval_s: float) -> dict[str, Any]:
    """Delivery, latency and lag over every run's first streamed message."""
    rows = []
    delivered = complete_runs = matching_text = 0
    delta_events: list[int] = []
    model_rates, written_rates = [], []
    for run in runs:
        if not run.deltas:
            continue
        message = next(iter(run.deltas))
        mine = sorted(run.deltas[message])
        delivered += len(mine)
        delta_events.append(len(run.events[message]))
        complete_runs += [index for index, *_ in mine] == list(range(expected_per_run))
        matching_text += run.response == "".join(run.texts[message]) and bool(run.response)
        rows += mine
        for rates, times in (
            (model_rates, [s for _, s, _, _ in mine]),
            (written_rates, [w for _, _, w, _ in mine]),
        ):
            if len(times) > 1 and max(times) > min(times):
                rates.append((len(times) - 1) / (max(times) - min(times)))
    out: dict[str, Any] = {
        "runs": len(runs),
        "deltas_expected": expected_per_run * len(runs),
        "deltas_delivered": delivered,
        "deltas_duplicated": sum(r.duplicates for r in runs),
        "runs_with_every_delta_in_order": complete_runs,
        "runs_whose_text_equals_the_deltas": matching_text,
        "runs_rewritten": sum(1 for r in runs if len(r.deltas) > 1),
        "outcomes": {o: sum(1 for r in runs if r.outcome == o) for o in {r.outcome for r in runs}},
        "target_rate_per_run": round(1 / interval_s, 1),
        "delta_events_per_run": summary(delta_events) if delta_events else None,
    }
    if not rows:
        return out
    model_to_client = [(arrived - sent) * 1000 for _, sent, _, arrived in rows]
    written_to_client = [(arrived - written) * 1000 for _, _, written, arrived in rows]
    out["model_to_client_ms"] = summary(model_to_client)
    out["written_to_client_ms"] = summary(written_to_client)
    out["model_rate_per_run"] = summary(model_rates)
    # a slow reader holds the model's chunks in socket buffers: the rate the deltas were
    # written to the log is the one the user sees the text grow at
    out["written_rate_per_run"] = summary(written_rates)
    start, end = min(r[1] for r in rows), max(r[1] for r in rows)
    out["streaming_window_s"] = round(end - start, 2)
    out["window_epoch_s"] = [start, end]
    out["delivered_per_s"] = round(len(rows) / max(1e-3, max(r[3] for r in rows) - start))
    thirds = []
    for part in range(3):
        low, high = start + (end - start) * part / 3, start + (end - start) * (part + 1) / 3
        chunk = [(a - s) * 1000 for _, s, _, a in rows if low <= s <= high]
        thirds.append(round(percentile(chunk, 0.99), 1) if chunk else None)
    out["p99_ms_by_third"] = thirds
    first, last = thirds[0], thirds[-1]
    out["lag_bounded"] = bool(
        first is not None
        and last is not None
        and last <= 1.5 * first + 50
        and out["written_rate_per_run"]["p50"] >= 0.9 / interval_s
    )
    return out


async def _stats(llm_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{llm_url}/stats", timeout=10)).json()  # type: ignore[no-any-return]


async def _with_data(platform: Platform) -> Any:
    user = platform.register()
    rows = list(generate(days=3))
    await asyncio.to_thread(platform.upload, user, rows)
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            got = (
                await http.get(
                    f"{platform.gateway}/api/v1/usage/summary",
                    headers={"Authorization": f"Bearer {user.access_token}"},
                    timeout=30,
                )
            ).json()
            if got.get("requests", 0) >= len(rows):
                break
            await asyncio.sleep(0.25)
    return user


class Drive(NamedTuple):
    streamed: list[StreamedRun]
    elapsed_s: float
    probe: LogProbe
    cpu: CpuSampler


async def _drive(platform: Platform, runs: int, deadline_s: float) -> Drive:
    user = await _with_data(platform)
    sockets = await asyncio.gather(*(open_ws(platform, user) for _ in range(runs)))
    streamed = [StreamedRun() for _ in range(runs)]
    async with LogProbe(platform) as probe, CpuSampler(platform_pids(platform.home)) as cpu:
        started = time.monotonic()
        await asyncio.gather(
            *(one_client(ws, run, started + deadline_s) for ws, run in zip(sockets, streamed, strict=True))
        )
        elapsed = time.monotonic() - started
    for ws in sockets:
        await ws.close()
    return Drive(streamed, elapsed, probe, cpu)


def where_the_time_goes(drive: Drive, window: list[float] | None) -> dict[str, Any]:
    """The delta's delay split at the bus, and the machine's load while the text streamed."""
    cores = psutil.cpu_count(logical=True) or 1
    return {
        **drive.probe.figures(),
        "cpu_in_window": drive.cpu.window(*window, cores=cores) if window else None,
    }


def measure(s: dict[str, Any]) -> dict[str, Any]:
    runs, deltas, interval_ms = s["stream_runs"], s["stream_deltas"], 20.0
    port = free_port()
    llm = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.llm_server",
            "--port",
            str(port),
            "--streams",
            str(runs),
            "--deltas",
            str(deltas),
            "--interval-ms",
            str(interval_ms),
        ],
    )
    overrides = {
        "APEX_LLM_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "APEX_LLM_MODEL": "gpt-4.1-mini",
        "APEX_LLM_API_KEY": "sk-bench",
        "APEX_LLM_TIMEOUT_S": "300",
        "APEX_LLM_BACKOFF_S": "0.05",
        "APEX_AGENTS_MAX_CONCURRENT": str(max(64, runs * 2)),
        "APEX_ORCHESTRATOR_MAX_RUNS": str(max(200, runs * 2)),
        "APEX_MAX_RUNS_PER_USER": "1000",
        "APEX_STEP_TIMEOUT_S": "300",
        "APEX_RUN_TIMEOUT_S": "900",
        "APEX_WS_MAX_CONNECTIONS_PER_USER": "10000",
        "APEX_WS_SEND_QUEUE": str(deltas * 4 + 1000),
        "APEX_WS_RATE_PER_S": "1000",
        "APEX_WS_USER_RATE_PER_S": "100000",
        "APEX_WS_USER_RATE_BURST": "100000",
    }
    try:
        with running_platform(**overrides) as platform:
            drive = asyncio.run(_drive(platform, runs, s["stream_deadline_s"]))
            stats = asyncio.run(_stats(f"http://127.0.0.1:{port}"))
    finally:
        llm.terminate()
        llm.wait(30)
    shown = figures(drive.streamed, deltas, interval_ms / 1000)
    return {
        "concurrent_runs": runs,
        "deltas_per_run": deltas,
        "interval_ms": interval_ms,
        "elapsed_s": round(drive.elapsed_s, 1),
        "deadline_s": s["stream_deadline_s"],
        "writers_released_together": stats.get("released_together"),
        "llm_requests": stats.get("requests"),
        **shown,
        "where_the_time_goes": where_the_time_goes(drive, shown.get("window_epoch_s")),
    }
