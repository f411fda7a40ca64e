"""Operations: health, readiness, metrics and heartbeat; and ``python -m apex_auth`` as a
real process that serves, picks up a key rotated by ``rotate-keys`` and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable

import httpx
import orjson

from apex_auth import AuthSettings, rotate_keys
from apex_cli.embedded import EmbeddedServer, free_port
from apex_contracts import Heartbeat
from apex_contracts.auth import JWKS_PATH
from tests.integration.auth.auth_support import FAST_ARGON2, Auth, unique_email


async def test_health_readiness_metrics_and_heartbeat(auth: Auth) -> None:
    assert (await auth.http.get("/healthz")).json()["status"] == "alive"
    ready = await auth.http.get("/readyz")
    assert ready.status_code == 200
    # ready = this process answers; the stores are reported, never required
    assert ready.json()["checks"] == {}
    assert ready.json()["dependencies"] == {"postgres": True, "redis": True, "nats": True}

    openapi = (await auth.http.get("/openapi.json")).json()
    assert {"/auth/register", "/auth/login", "/auth/refresh", "/.well-known/jwks.json"} <= set(
        openapi["paths"]
    )

    await auth.register()
    metrics = (await auth.http.get("/metrics")).text
    assert 'apex_auth_registrations_total{outcome="success"}' in metrics
    assert "apex_auth_access_tokens_issued_total" in metrics

    beats: asyncio.Queue[Heartbeat] = asyncio.Queue()
    settings = auth.service.settings

    async def on_beat(msg: object) -> None:
        beats.put_nowait(Heartbeat.model_validate(orjson.loads(msg.data)))  # type: ignore[attr-defined]

    nc = auth.service.bus.nc
    sub = await nc.subscribe(f"apex.health.auth.{settings.instance_id}", cb=on_beat)
    try:
        beat = await asyncio.wait_for(beats.get(), timeout=5)
    finally:
        await sub.unsubscribe()
    assert (beat.service, beat.ready) == ("auth", True)


async def test_the_service_runs_as_a_process(
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
        **{f"APEX_{key.upper()}": str(value) for key, value in FAST_ARGON2.items()},
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
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await _wait_ready(http, process)
            body = {"email": unique_email(), "password": "correct horse battery", "tenant": "P"}
            assert (await http.post("/auth/register", json=body)).status_code == 201
            await rotate_keys(settings)
            assert len((await http.get(JWKS_PATH)).json()["keys"]) == 2
        process.send_signal(signal.SIGTERM)
        _, errors = await asyncio.wait_for(process.communicate(), 15)
        assert process.returncode == 0, errors.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _wait_ready(http: httpx.AsyncClient, process: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(40):
        while True:
            if process.returncode is not None:
                _, errors = await process.communicate()
                raise AssertionError(errors.decode())
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
