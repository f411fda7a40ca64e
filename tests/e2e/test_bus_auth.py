"""The bus of a running platform (``apex up``) is authenticated: a client without
credentials is refused, and each service's own user is refused by the NATS server
outside its subjects while the platform does its work (the golden path and the other
tests of this package run on the same platform, as those users)."""

from __future__ import annotations

import asyncio

import nats
import nats.errors
import pytest

from apex_contracts import subjects
from apex_contracts.streams import APEX_CMD, APEX_EVT
from apex_runtime.buspermissions import SERVICES
from tests.e2e.platform import Platform
from tests.natsprobe import anonymous_connect

OUT_OF_BOUNDS = {
    "gateway": subjects.CMD_TOOL_CALL,
    "auth": subjects.CMD_RUN_START,
    "orchestrator": subjects.CMD_TOOL_CALL,
    "agents": subjects.CMD_RUN_START,
    "tools": subjects.CMD_RUN_START,
    "persistence": subjects.CMD_AGENT_STEP,
    "ingest": subjects.CMD_RUN_START,
}


async def test_a_client_without_credentials_is_refused(platform: Platform) -> None:
    url = platform.recorded_env()["APEX_NATS_URL"]
    host, port = url.removeprefix("nats://").split(":")
    assert await anonymous_connect(host, int(port)) == b"-ERR 'Authorization Violation'"


@pytest.mark.parametrize("service", SERVICES)
async def test_each_service_is_refused_outside_its_subjects(platform: Platform, service: str) -> None:
    creds = platform.home / ".apex" / "nats-auth" / f"{service}.creds"
    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc).lower())  # nats-py lowercases the subject too

    url = platform.recorded_env()["APEX_NATS_URL"]
    nc = await nats.connect(url, user_credentials=str(creds), error_cb=on_error)
    admin = await nats.connect(url, **platform.nats_options())
    try:
        await nc.publish(OUT_OF_BOUNDS[service], b"{}")
        for stream in (APEX_EVT.name, APEX_CMD.name):
            with pytest.raises(nats.errors.TimeoutError):
                await nc.request(f"$JS.API.STREAM.DELETE.{stream}", b"", timeout=1.0)
        await asyncio.sleep(0.3)
        assert (await admin.jetstream().stream_info(APEX_EVT.name)).config.name == APEX_EVT.name
    finally:
        await nc.close()
        await admin.close()
    expected = [
        OUT_OF_BOUNDS[service],
        f"$JS.API.STREAM.DELETE.{APEX_EVT.name}",
        f"$JS.API.STREAM.DELETE.{APEX_CMD.name}",
    ]
    for subject in expected:
        assert any(f'publish to "{subject.lower()}"' in e for e in refused), (subject, refused)
