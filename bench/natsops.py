"""NATS operations per run, counted two ways over the same batch of runs.

- The server's own monitoring endpoint (``/varz``, ``/jsz``, ``/connz``): messages in and
  out, JetStream API requests, messages stored per stream (events, commands, each KV
  bucket), deliveries and acks per durable consumer, messages in and out per connection.
- Each service's own client (bench/instrument/sitecustomize.py): every message it sent,
  by kind (event and command publishes, acks, direct gets, KV reads and writes, pull
  requests, other JetStream API calls, queries, replies, heartbeats) and every message
  it received (deliveries per stream, replies, subscriptions).

Both are snapshotted before and after the batch; the differences divided by the runs are
the figures. The batch is over only when the bus is drained: every consumer has nothing
pending and nothing waiting for an ack."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

INSTRUMENT = Path(__file__).resolve().parent / "instrument"


def monitor_url(nats_conf: Path) -> str:
    """The monitoring address of an embedded NATS server, from its configuration file."""
    found = re.search(r"^http:\s*([\w.]+:\d+)", nats_conf.read_text(), re.MULTILINE)
    if found is None:
        raise ValueError(f"{nats_conf} has no http (monitoring) address")
    return f"http://{found[1]}"


async def server_snapshot(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        varz = (await http.get("/varz")).json()
        jsz = (
            await http.get("/jsz", params={"streams": "true", "consumers": "true", "config": "true"})
        ).json()
        connz = (await http.get("/connz", params={"limit": "4096"})).json()
    streams: dict[str, int] = {}
    consumers: dict[str, dict[str, int]] = {}
    for account in jsz.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            streams[stream["name"]] = stream["state"]["last_seq"]
            for c in stream.get("consumer_detail") or []:
                consumers[f"{stream['name']}/{c['name']}"] = {
                    "delivered": c["delivered"]["consumer_seq"],
                    "acked": c["ack_floor"]["consumer_seq"],
                    "redelivered": c.get("num_redelivered", 0),
                    "pending": c.get("num_pending", 0),
                    "ack_pending": c.get("num_ack_pending", 0),
                    "durable": int(bool((c.get("config") or {}).get("durable_name"))),
                }
    by_name: Counter[str] = Counter()
    for conn in connz.get("connections") or []:
        name = conn.get("name") or "unnamed"
        by_name[f"{name}:in"] += conn.get("in_msgs", 0)
        by_name[f"{name}:out"] += conn.get("out_msgs", 0)
    return {
        "in_msgs": varz["in_msgs"],
        "out_msgs": varz["out_msgs"],
        "in_bytes": varz["in_bytes"],
        "out_bytes": varz["out_bytes"],
        "js_api": ((jsz.get("api") or {}).get("total")) or 0,
        "streams": streams,
        "consumers": consumers,
        "connections": dict(by_name),
    }


def client_snapshot(ops_dir: Path) -> dict[str, int]:
    """The instrumented clients' counts summed per service, as ``sent/<service>/<kind>``
    and ``received/<service>/<kind>``."""
    out: Counter[str] = Counter()
    for path in ops_dir.glob("*.json"):
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for direction in ("sent", "received"):
            out.update({f"{direction}/{body['service']}/{k}": v for k, v in body[direction].items()})
    return dict(out)


def flat(server: dict[str, Any]) -> dict[str, int]:
    """A server snapshot as one counter per key."""
    out = {f"server/{k}": server[k] for k in ("in_msgs", "out_msgs", "in_bytes", "out_bytes", "js_api")}
    out.update({f"stored/{name}": seq for name, seq in server["streams"].items()})
    for name, c in server["consumers"].items():
        if c["durable"]:
            out[f"consumer/{name}/delivered"] = c["delivered"]
            out[f"consumer/{name}/acked"] = c["acked"]
    out.update({f"conn/{name}": n for name, n in server["connections"].items()})
    return out


def per_run(
    before: dict[str, int],
    after: dict[str, int],
    runs: int,
    wall_s: float,
    idle: tuple[dict[str, int], dict[str, int], float] | None = None,
) -> dict[str, float]:
    """Each counter's increase per run; with ``idle`` (two snapshots and the seconds
    between them, taken while nothing ran) less what the counter does when idle (pull
    requests, heartbeats) over the batch's ``wall_s``."""
    out: dict[str, float] = {}
    for key, value in after.items():
        delta = value - before.get(key, 0)
        if idle is not None:
            idle_before, idle_after, idle_s = idle
            rate = max(0, idle_after.get(key, 0) - idle_before.get(key, 0)) / idle_s
            delta = max(0.0, delta - rate * wall_s)
        if delta:
            out[key] = round(delta / runs, 2)
    return out


def grouped(figures: dict[str, float]) -> dict[str, Any]:
    """Per-run counters arranged for reading: what the clients sent by kind and by
    service, what they received by kind, and what the server saw."""

    def group(prefix: str, part: int) -> dict[str, float]:
        sums: Counter[str] = Counter()
        for key, value in figures.items():
            if key.startswith(prefix):
                sums[key.split("/")[part]] += value
        return {k: round(v, 1) for k, v in sums.most_common()}

    matrix: dict[str, dict[str, float]] = {}
    for key, value in sorted(figures.items(), key=lambda kv: -kv[1]):
        if key.startswith("sent/"):
            _, service, kind = key.split("/", 2)
            matrix.setdefault(service, {})[kind] = value
    server = {k.split("/", 1)[1]: v for k, v in figures.items() if k.startswith("server/")}
    for size in ("in_bytes", "out_bytes"):
        if size in server:
            server[size.replace("bytes", "kb")] = round(server.pop(size) / 1024, 1)
    return {
        "sent_total": round(sum(v for k, v in figures.items() if k.startswith("sent/")), 1),
        "sent_by_kind": group("sent/", 2),
        "sent_by_service": group("sent/", 1),
        "sent_by_service_and_kind": matrix,
        "received_by_kind": group("received/", 2),
        "server": server,
        "stored_per_stream": {k.split("/", 1)[1]: v for k, v in figures.items() if k.startswith("stored/")},
        "consumers": {k.split("/", 1)[1]: v for k, v in figures.items() if k.startswith("consumer/")},
        "connections": {k.split("/", 1)[1]: v for k, v in figures.items() if k.startswith("conn/")},
    }


class OpsCounter:
    """Snapshots of one platform's NATS (server and instrumented clients)."""

    def __init__(self, monitor: str, ops_dir: Path | None) -> None:
        self.monitor = monitor
        self.ops_dir = ops_dir

    async def snapshot(self) -> dict[str, int]:
        """Every counter, flat; the clients write theirs every half second, so this waits
        for a fresh write first."""
        await asyncio.sleep(1.2)
        clients = client_snapshot(self.ops_dir) if self.ops_dir else {}
        return {**flat(await server_snapshot(self.monitor)), **clients}

    async def drained(self, timeout: float = 120.0) -> float:
        """Waits until no consumer (the services' work queues, the projectors' and every
        other follower's ordered consumers) has work pending or unacked; returns the
        seconds waited (cut at ``timeout``). A projector may still hold its last batch
        (delivered, not yet applied: up to its linger), hence the half second after."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            server = await server_snapshot(self.monitor)
            busy = [n for n, c in server["consumers"].items() if c["pending"] or c["ack_pending"]]
            if not busy:
                await asyncio.sleep(0.5)
                return round(time.monotonic() - started, 2)
            await asyncio.sleep(0.25)
        return round(time.monotonic() - started, 2)
