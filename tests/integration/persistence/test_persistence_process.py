"""The service as a process: ``python -m apex_persistence migrate [--down base]`` and
``python -m apex_persistence`` (ready, metrics with the lag gauge, ``projections rebuild``
against it, clean stop on SIGTERM)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sqlalchemy import text

from apex_cli.embedded import free_port
from apex_persistence.postgres.db import Database, make_engine
from apex_persistence.postgres.migrate import current_revision
from apex_runtime import Bus
from tests.integration.persistence.test_persistence_migrations import HEAD


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APEX_")}
    return env | {"APEX_CHDB_PATH": str(tmp_path / "chdb"), "APEX_LOG_FORMAT": "text"} | values


async def _run(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "apex_persistence",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, output.decode(errors="replace")


async def test_migrate_up_and_down(pg_dsn: str, tmp_path: Path) -> None:
    env = _env(tmp_path, APEX_POSTGRES_DSN=pg_dsn)
    code, output = await _run(env, "migrate")
    assert code == 0, output
    assert await current_revision(pg_dsn) == HEAD
    assert (tmp_path / "chdb").is_dir()
    code, output = await _run(env, "migrate", "--down", "base")
    assert code == 0, output
    assert await current_revision(pg_dsn) is None


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


async def test_serve_is_ready_rebuilds_on_request_and_stops_on_sigterm(
    server_factory: Any,
    pg_dsn: str,
    redis_url: str,
    tmp_path: Path,
    eventually: Any,
    story: Any,
) -> None:
    port = free_port()
    nats_url = server_factory("nats").url
    env = _env(
        tmp_path,
        APEX_NATS_URL=nats_url,
        APEX_POSTGRES_DSN=pg_dsn,
        APEX_REDIS_URL=redis_url,
        APEX_PERSISTENCE_PORT=str(port),
    )
    code, output = await _run(env, "projections", "rebuild")
    assert (code, output.strip()) == (1, "no persistence instance answered")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "apex_persistence",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def ready() -> bool:
            assert process.returncode is None, "the service exited before it was ready"
            return (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz"))[0] == 200

        async def lag_exported() -> bool:
            metrics = (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics"))[1]
            return 'apex_projection_lag_events{store="postgres"}' in metrics

        await eventually(ready, timeout=40.0, every=0.2)
        await eventually(lag_exported, timeout=10.0, every=0.2)
        bus = await Bus.connect(nats_url, "process-test")
        try:
            await story.publish(bus, story.run() + story.run())
        finally:
            await bus.close()

        code, output = await _run(env, "projections", "rebuild")
        assert code == 0, output
        for store in ("postgres", "redis", "clickhouse"):
            assert f"{store:<11} rebuilt and swapped in: " in output, output
        async with Database(make_engine(pg_dsn, pool_size=1)).writer() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM apex.runs")) == 2
        process.send_signal(signal.SIGTERM)
        _, errors = await asyncio.wait_for(process.communicate(), 20)
        assert process.returncode == 0, errors.decode(errors="replace")[-2000:]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
