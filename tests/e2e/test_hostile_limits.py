"""Hostile clients against the real platform (issue 12): a ping flood from a client that
never reads, a revocation whose broadcast one gateway never hears, the per-user cap across
two gateways, tokens that expire on open sockets and in-band refresh."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from apex_cli.embedded import free_port
from apex_client import ApexHttp, ApexSocket
from tests.e2e.hostile import (
    MAX_CONNECTIONS,
    REVOCATION_CHECK_S,
    SHORT_TTL_S,
    login,
    publish_thread,
    refresh,
    spawn_ready,
)
from tests.e2e.natsfilter import DroppingProxy
from tests.e2e.platform import Platform
from tests.e2e.wsclient import open_socket, recv, send

FLOOD_MAX = 300_000


async def closed_with(ws: Any, timeout: float = 60.0) -> tuple[int, str, list[dict[str, Any]]]:
    """Reads until the socket closes: (code, reason, frames read before)."""
    frames: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            frames.append(await recv(ws, timeout))
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason, frames


async def test_a_ping_flood_that_never_reads_is_closed_4408_and_resumes(hostile: Platform) -> None:
    user = hostile.register()
    thread_id = await publish_thread(hostile, user, 20)
    gateway = psutil.Process(hostile.pid("gateway"))
    ws = await open_socket(hostile.ws_url, user.access_token, max_queue=1)  # reads nothing on its own
    await recv(ws)
    await send(ws, {"type": "thread.subscribe", "thread_id": thread_id, "after_seq": 0})
    before = gateway.memory_info().rss
    ping = '{"type":"ping","ref":"' + "p" * 100 + '"}'
    sent = 0
    while sent < FLOOD_MAX:
        try:
            await asyncio.wait_for(ws.send(ping), 10)
        except TimeoutError:
            break  # the gateway stopped reading this socket
        sent += 1
    grown = gateway.memory_info().rss - before
    code, reason, frames = await closed_with(ws)
    assert (code, reason) == (4408, "slow_consumer")
    assert sent < FLOOD_MAX, "the gateway kept reading a client that never reads"
    assert grown < 5 * 1024 * 1024, f"gateway RSS grew by {grown // 1024} KiB"
    print(f"\nping flood: {sent} pings; gateway RSS {before // 1024} KiB -> +{grown // 1024} KiB")

    seen = [f["seq"] for f in frames if f["type"] == "event"]
    again = await open_socket(hostile.ws_url, user.access_token)
    await recv(again)
    await send(
        again, {"type": "thread.subscribe", "thread_id": thread_id, "after_seq": seen[-1] if seen else 0}
    )
    head = (await recv(again))["head_seq"]
    while not seen or seen[-1] < head:
        frame = await recv(again)
        if frame["type"] == "event":
            seen.append(frame["seq"])
    await again.close()
    assert len(seen) == 20 and seen == sorted(set(seen)), "resumed with nothing lost and nothing twice"


async def test_a_lost_revocation_broadcast_closes_within_the_recheck(
    hostile: Platform, second_gateway: tuple[str, DroppingProxy]
) -> None:
    url, proxy = second_gateway
    user = hostile.register()
    here = await open_socket(hostile.ws_url, user.access_token)
    there = await open_socket(url.replace("http", "ws", 1) + "/ws", user.access_token)
    await recv(here)
    await recv(there)
    dropped = proxy.dropped
    started = time.monotonic()
    response = httpx.post(
        f"{hostile.auth}/auth/logout", headers={"Authorization": f"Bearer {user.access_token}"}
    )
    assert response.status_code in (200, 204)
    assert (await closed_with(here))[:2] == (4401, "session_revoked")
    code, reason, _ = await closed_with(there)
    elapsed = time.monotonic() - started
    assert (code, reason) == (4401, "session_revoked")
    assert proxy.dropped > dropped, "the second gateway never heard the broadcast"
    assert elapsed < 30, f"closed after {elapsed:.1f} s (re-check every {REVOCATION_CHECK_S} s)"
    print(
        f"\nrevocation without its broadcast: closed after {elapsed:.1f} s (re-check {REVOCATION_CHECK_S} s)"
    )


async def test_two_gateways_share_the_per_user_cap(
    hostile: Platform, second_gateway: tuple[str, DroppingProxy]
) -> None:
    other = second_gateway[0].replace("http", "ws", 1) + "/ws"
    user = hostile.register()
    opened = []
    for url in [hostile.ws_url] * (MAX_CONNECTIONS - 1) + [other]:
        ws = await open_socket(url, user.access_token)
        assert (await recv(ws))["type"] == "session.ready"
        opened.append(ws)
    for url in (other, hostile.ws_url):
        refused = await open_socket(url, user.access_token)
        assert (await closed_with(refused))[:2] == (4429, "too_many_connections")
    await opened[0].close()
    deadline = time.monotonic() + 30
    while True:  # the slot is given back when the gateway has seen the close
        ws = await open_socket(other, user.access_token)
        try:
            assert (await recv(ws))["type"] == "session.ready"
            break
        except ConnectionClosed:
            assert time.monotonic() < deadline, "the freed slot never came back"
            await asyncio.sleep(0.2)
    for socket in [*opened[1:], ws]:
        await socket.close()


@pytest.fixture(scope="module")
def short_auth(hostile: Platform) -> Iterator[str]:
    """An auth replica minting 10 s access tokens (same keys, database and sessions)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = spawn_ready(
        hostile, "auth", f"{url}/readyz", APEX_AUTH_PORT=str(port), APEX_JWT_ACCESS_TTL_S=str(SHORT_TTL_S)
    )
    yield url
    proc.terminate()
    proc.wait(30)


async def test_expired_tokens_close_and_in_band_refresh_keeps_sockets_open(
    hostile: Platform, short_auth: str
) -> None:
    user, other = hostile.register(), hostile.register()
    expiring, refreshed = login(short_auth, user), login(short_auth, user)
    plain = await open_socket(hostile.ws_url, expiring["access_token"])
    kept = await open_socket(hostile.ws_url, refreshed["access_token"])
    ready = await recv(plain)
    await recv(kept)
    first_expiry = ready["limits"]["expires_at"]

    await send(kept, {"type": "session.refresh", "token": expiring["access_token"], "ref": "wrong"})
    wrong = await recv(kept)
    assert (wrong["type"], wrong["code"], wrong["ref"]) == ("error", "token_invalid", "wrong")
    await asyncio.sleep(SHORT_TTL_S / 2)
    fresh = refresh(short_auth, refreshed["refresh_token"])
    await send(kept, {"type": "session.refresh", "token": fresh["access_token"], "ref": "r1"})
    answer = await recv(kept)
    assert answer["type"] == "session.refreshed" and answer["expires_at"] > first_expiry

    async with ApexHttp(short_auth, hostile.gateway) as http:
        await http.login(other.email, other.password)
        async with ApexSocket(hostile.ws_url, http.fresh_token) as client:
            code, reason, _ = await closed_with(plain, timeout=SHORT_TTL_S * 4)
            assert (code, reason) == (4401, "token_expired")
            assert time.time() >= first_expiry
            await send(kept, {"type": "ping", "ref": "still-here"})  # same first expiry, refreshed: open
            assert (await recv(kept))["ref"] == "still-here"
            fresh = refresh(short_auth, fresh["refresh_token"])
            await send(kept, {"type": "session.refresh", "token": fresh["access_token"]})
            assert (await recv(kept))["type"] == "session.refreshed"
            await asyncio.sleep(SHORT_TTL_S * 0.6)  # the client's first token is past expiry and leeway
            await client.send({"type": "ping", "ref": "client-here"})
            async for frame in client.frames():
                if frame.get("ref") == "client-here":
                    break
            assert client.reconnects == 0
    await kept.close()
