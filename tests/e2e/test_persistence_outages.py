"""Store outages over the whole platform (``apex up``): Postgres killed, Redis killed
(``apex up`` revives both), the persistence service SIGKILLed (``apex up`` restarts it),
then the ClickHouse path failing (its table folders made immutable, as a read-only disk
would be), each during a run. Every run streams to the client in full; each outage is
noticed by its projector; afterwards every view has caught up with exactly the events
the client saw: nothing missing, nothing doubled."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from tests.e2e.platform import Platform, User, persistence_metric, platform_env
from tests.e2e.wsclient import open_socket, recv, send, until_terminal

STORES = ("postgres", "redis", "clickhouse")
TERMINAL_STATUS = {"completed", "needs_data", "failed", "cancelled"}


def _chattr_works() -> bool:
    if shutil.which("chattr") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        if subprocess.run(["chattr", "+i", folder], capture_output=True, check=False).returncode != 0:
            return False
        subprocess.run(["chattr", "-i", folder], check=True)
    return True


@pytest.fixture
def platform() -> Iterator[Platform]:
    home = Path(tempfile.mkdtemp(prefix="apex-outages-"))
    home.chmod(0o755)
    running = Platform(home, platform_env(home))
    try:
        running.start()
        yield running
    finally:
        running.stop()


async def until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.25)


async def chat(
    platform: Platform, user: User, text: str, during: Callable[[], object] | None = None
) -> dict[str, Any]:
    """A whole run on its own thread: what the client saw, once per seq, in order.
    ``during`` is called once the run has started."""
    ws = await open_socket(platform.ws_url, user.access_token)
    await recv(ws)
    await send(ws, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": text})
    accepted = await recv(ws)
    assert accepted["type"] == "message.accepted", accepted
    if during is not None:
        during()
    frames = await until_terminal(ws, accepted["run_id"], timeout=90)
    await ws.close()
    events = list({f["seq"]: f["event"] for f in frames if f["type"] == "event"}.items())
    seqs = [seq for seq, _ in events]
    assert seqs == sorted(seqs) and events[0][1]["type"] == "message.created"
    return {
        "run_id": accepted["run_id"],
        "thread_id": accepted["thread_id"],
        "events": [e for _, e in events],
    }


def table_folders(chdb: Path, tables: tuple[str, ...]) -> list[Path]:
    """Where the embedded ClickHouse keeps these tables of database ``apex``."""
    folders = []
    for table in tables:
        uuid_ = re.search(r"UUID '([0-9a-f-]+)'", (chdb / "metadata" / "apex" / f"{table}.sql").read_text())
        assert uuid_ is not None
        folders += [p for p in (chdb / "store").glob(f"*/{uuid_.group(1)}") if p.is_dir()]
    return folders


@pytest.mark.timeout(400)
async def test_runs_stream_through_store_outages_and_every_view_catches_up(platform: Platform) -> None:
    if not _chattr_works():
        pytest.skip("needs chattr +i (an immutable folder) to fail the embedded ClickHouse's disk")
    user = platform.register()
    runs = [await chat(platform, user, "Where is my LLM spend going?")]

    failed = {
        store: persistence_metric(platform, "apex_projection_failed_batches_total", store) for store in STORES
    }
    runs.append(await chat(platform, user, "And while Postgres is down?", lambda: platform.kill("postgres")))
    runs.append(await chat(platform, user, "And while Redis is down?", lambda: platform.kill("redis")))
    for store in ("postgres", "redis"):  # each outage was real: its projector failed and retried
        await until(
            lambda s=store: (
                persistence_metric(platform, "apex_projection_failed_batches_total", s) > failed[s]
            )
        )

    killed: list[int] = []
    runs.append(
        await chat(
            platform,
            user,
            "And while persistence restarts?",
            lambda: killed.append(platform.kill("persistence")),
        )
    )
    platform.wait_restarted("persistence", killed[0], timeout=60)
    await until(lambda: platform_lag(platform, "clickhouse") >= 0, timeout=90)  # measuring again

    chdb = platform.home / ".apex" / "chdb"
    frozen = table_folders(chdb, ("events", "projection_checkpoints"))
    subprocess.run(["chattr", "+i", *map(str, frozen)], check=True)
    try:
        runs.append(await chat(platform, user, "And while ClickHouse cannot write?"))
        await until(
            lambda: (
                persistence_metric(platform, "apex_projection_lag_events", "clickhouse") > 0
                and persistence_metric(platform, "apex_projection_failed_batches_total", "clickhouse") > 0
            )
        )
    finally:
        subprocess.run(["chattr", "-i", *map(str, frozen)], check=True)
    runs.append(await chat(platform, user, "All good again?"))
    for store in STORES:
        await until(lambda s=store: platform_lag(platform, s) == 0, timeout=90)

    env = platform.recorded_env()
    await check_postgres(env["APEX_POSTGRES_DSN"], runs)
    await check_redis(env["APEX_REDIS_URL"], user, runs)
    platform.stop()  # the embedded ClickHouse opens in one process at a time
    await check_clickhouse(chdb, runs)


def platform_lag(platform: Platform, store: str) -> float:
    with contextlib.suppress(httpx.HTTPError):
        return persistence_metric(platform, "apex_projection_lag_events", store)
    return -1


async def check_postgres(dsn: str, runs: list[dict[str, Any]]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for run in runs:
            ids = await conn.fetch("SELECT id FROM apex.events WHERE thread_id = $1", run["thread_id"])
            assert sorted(r["id"] for r in ids) == sorted(e["id"] for e in run["events"])
            row = await conn.fetchrow("SELECT status, tool_calls FROM apex.runs WHERE id = $1", run["run_id"])
            assert row["status"] == run["events"][-1]["data"].get("status", row["status"])
            assert row["status"] in TERMINAL_STATUS
            assert row["tool_calls"] == sum(e["type"] == "tool_executing" for e in run["events"])
            roles = await conn.fetch(
                "SELECT role FROM apex.messages WHERE thread_id = $1 ORDER BY seq", run["thread_id"]
            )
            assert [r["role"] for r in roles] == ["user", "assistant"]
        assert await conn.fetchval("SELECT count(*) FROM apex.runs") == len(runs)
    finally:
        await conn.close()


async def check_redis(url: str, user: User, runs: list[dict[str, Any]]) -> None:
    client = aioredis.from_url(url)
    try:
        for run in runs:
            status = await client.hget(f"apex:{user.tenant_id}:run:{run['run_id']}", "status")
            assert status is not None and status.decode() in TERMINAL_STATUS
            recent = await client.zrange(f"apex:{user.tenant_id}:thread:{run['thread_id']}:recent", 0, -1)
            expected = [e["id"] for e in run["events"]][-100:]
            assert [orjson.loads(member)["id"] for member in recent] == expected
    finally:
        await client.aclose()


_READ_EVENTS = """
import asyncio, sys, orjson
from pathlib import Path
from apex_persistence.analytics.port import ChdbStore

async def main() -> None:
    store = ChdbStore(Path(sys.argv[1]), "apex")
    try:
        rows = await store.select("SELECT thread_id, id FROM $db.events FINAL", {})
    finally:
        await store.close()
    sys.stdout.buffer.write(orjson.dumps(rows))

asyncio.run(main())
"""


async def check_clickhouse(chdb: Path, runs: list[dict[str, Any]]) -> None:
    # The embedded engine binds a process to one data folder, and this test process
    # may already hold another, so the check reads from a process of its own.
    read = subprocess.run(
        [sys.executable, "-c", _READ_EVENTS, str(chdb)], capture_output=True, check=True, timeout=120
    )
    ids: dict[str, list[str]] = {}
    for row in orjson.loads(read.stdout):
        ids.setdefault(row["thread_id"], []).append(row["id"])
    for run in runs:
        assert sorted(ids.get(run["thread_id"], [])) == sorted(e["id"] for e in run["events"])
