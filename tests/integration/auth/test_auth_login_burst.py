"""A burst of logins against a real auth process: 100 at once. Argon2 checks run in at
most ``APEX_AUTH_HASH_SLOTS`` at a time, each holding its 64 MiB; the process's memory
stays within its slots' worth (an unbounded pool would hold one 64 MiB block per
thread), and the logins that find no free slot in time get a typed, retryable 503
``auth_busy`` with Retry-After, never a crash or a hang."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

import httpx
import psutil

from apex_auth import AuthSettings
from apex_cli.embedded import EmbeddedServer, free_port
from tests.integration.auth.auth_support import unique_email

LOGINS = 100
SLOTS = 2
MIB = 1024 * 1024
ARGON2_MIB = 64


async def _sample_rss(pid: int, stop: asyncio.Event, peaks: list[int]) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        peaks.append(process.memory_info().rss)
        await asyncio.sleep(0.01)


async def test_a_burst_of_logins_keeps_memory_bounded_and_sheds_the_excess(
    auth_settings: Callable[..., AuthSettings], nats: EmbeddedServer
) -> None:
    settings = auth_settings()
    port = free_port()
    env = {
        **os.environ,
        "APEX_POSTGRES_DSN": settings.postgres_dsn,
        "APEX_REDIS_URL": settings.redis_url,
        "APEX_NATS_URL": nats.url,
        "APEX_AUTH_PORT": str(port),
        "APEX_ENV": "test",
        # the production parameters: 64 MiB per check
        "APEX_AUTH_ARGON2_MEMORY_KIB": str(ARGON2_MIB * 1024),
        "APEX_AUTH_ARGON2_TIME_COST": "3",
        "APEX_AUTH_HASH_SLOTS": str(SLOTS),
        "APEX_AUTH_HASH_WAIT_S": "0.5",
        "APEX_AUTH_LOGIN_ADDRESS_LIMIT": "100000",
        "APEX_AUTH_LOGIN_ACCOUNT_LIMIT": "100000",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "apex_auth",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            async with asyncio.timeout(60):
                while True:
                    assert process.returncode is None, (await process.communicate())[1].decode()
                    try:
                        if (await http.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.2)
            email, password = unique_email(), "correct horse battery staple"
            body = {"email": email, "password": password, "tenant": "Burst"}
            assert (await http.post("/auth/register", json=body)).status_code == 201
            baseline = psutil.Process(process.pid).memory_info().rss

            stop, peaks = asyncio.Event(), [baseline]
            sampler = asyncio.create_task(_sample_rss(process.pid, stop, peaks))
            answers = await asyncio.gather(
                *(
                    http.post("/auth/login", json={"email": email, "password": password})
                    for _ in range(LOGINS)
                )
            )
            stop.set()
            await sampler
            ready = await http.get("/readyz")
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()

    statuses = sorted({a.status_code for a in answers})
    assert set(statuses) <= {200, 503}, statuses
    ok = [a for a in answers if a.status_code == 200]
    busy = [a for a in answers if a.status_code == 503]
    assert ok, "some logins got through"
    assert busy, "the excess was shed"
    for answer in busy:
        assert answer.json()["error"]["code"] == "auth_busy"
        assert answer.json()["error"]["retryable"] is True
        assert int(answer.headers["Retry-After"]) >= 1
    # Peak memory: the process, plus at most SLOTS Argon2 blocks at a time (and slack for
    # the 100 requests themselves); 100 unbounded checks would need 6.4 GiB.
    grew = max(peaks) - baseline
    assert grew < (SLOTS + 2) * ARGON2_MIB * MIB, f"grew {grew / MIB:.0f} MiB for {SLOTS} slots"
    assert ready.status_code == 200, "still serving"
