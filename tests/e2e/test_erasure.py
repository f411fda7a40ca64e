"""Erasure closes the account, not just the history (``DELETE /api/v1/users/me`` on a
platform of its own): the user's open socket closes with 4401 ``session_revoked``, their
token and password stop working, their email can register again (a new user, whose
events are kept), their colleague's threads and another tenant's are untouched, and,
with the platform stopped, a scan of every store (every Postgres row of the ``auth`` and
``apex`` schemas, every Redis key and value, every message of every JetStream stream and
key-value bucket, every ClickHouse row) finds nothing of them: not their user id, email,
words, threads or runs, except the tombstones that keep them erased (which name the user
id only) and the ``data.erased`` audit entry. The scan prints what it read."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.platform import Platform, User, platform_env
from tests.e2e.scan import scan_platform
from tests.e2e.wsclient import open_socket, recv, send, until_terminal

PASSWORD = "correct horse battery staple"


async def _ask(platform: Platform, user: User, text: str, thread_id: str | None = None) -> dict[str, Any]:
    ws = await open_socket(platform.ws_url, user.access_token)
    try:
        await recv(ws)
        frame: dict[str, Any] = {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": text}
        if thread_id:
            frame["thread_id"] = thread_id
        await send(ws, frame)
        accepted = await recv(ws)
        assert accepted["type"] == "message.accepted", accepted
        await until_terminal(ws, accepted["run_id"], timeout=120)
        return accepted
    finally:
        await ws.close()


def _join(platform: Platform, admin: User) -> User:
    """A colleague of ``admin``'s tenant, through an invite."""
    email = f"colleague-{uuid.uuid4().hex[:8]}@example.com"
    invite = httpx.post(
        f"{platform.auth}/auth/invites",
        json={"email": email, "role": "member"},
        headers={"Authorization": f"Bearer {admin.access_token}"},
        timeout=10,
    )
    invite.raise_for_status()
    joined = httpx.post(
        f"{platform.auth}/auth/register",
        json={"email": email, "password": PASSWORD, "invite": invite.json()["invite_token"]},
        timeout=10,
    )
    joined.raise_for_status()
    body = joined.json()
    return User(
        email, PASSWORD, body["access_token"], body["refresh_token"], body["user_id"], body["tenant_id"]
    )


async def _erasure_done(dsn: str, user_id: str, timeout: float = 120) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while True:
            row = await conn.fetchrow(
                "SELECT purged_at, audited_at, event_id FROM apex.erasures WHERE target = $1",
                f"user:{user_id}",
            )
            if (
                row is not None
                and row["audited_at"]
                and row["purged_at"]
                and row["event_id"].endswith(":closed")
            ):
                return
            assert time.monotonic() < deadline, f"the erasure did not complete: {row}"
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


@pytest.mark.slow
@pytest.mark.timeout(480)
async def test_erasure_closes_the_account_and_leaves_nothing_of_the_user() -> None:
    home = Path(tempfile.mkdtemp(prefix="apex-erasure-"))
    home.chmod(0o755)
    platform = Platform(home, platform_env(home))
    platform.start(timeout=240)
    try:
        erased = platform.register(tenant=f"Acme {uuid.uuid4().hex[:6]}")
        colleague = _join(platform, erased)
        stranger = platform.register()
        secret = f"erase-me-{uuid.uuid4().hex[:10]}"
        mine = [await _ask(platform, erased, f"{secret}: where is my spend going?")]
        mine.append(await _ask(platform, erased, f"{secret}: and latency?", mine[0]["thread_id"]))
        kept = await _ask(platform, colleague, "colleague-keep-this: caching?")
        theirs = await _ask(platform, stranger, "stranger-keep-this: models?")

        socket = await open_socket(platform.ws_url, erased.access_token)
        await recv(socket)  # session.ready: a socket of the user, open while they erase themselves
        answer = platform.api(erased, "DELETE", "/api/v1/users/me")
        assert answer.status_code == 202 and answer.json()["account"] == "closed", answer.text
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(100):
                await recv(socket, timeout=10)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "session_revoked")

        assert platform.api(erased, "GET", "/api/v1/threads").status_code == 401
        login = httpx.post(
            f"{platform.auth}/auth/login", json={"email": erased.email, "password": PASSWORD}, timeout=10
        )
        assert login.status_code == 401
        await _erasure_done(platform.recorded_env()["APEX_POSTGRES_DSN"], erased.user_id)

        # The same email registers again: a new user, whose later events are kept.
        again = _reregister(platform, erased.email)
        assert again.user_id != erased.user_id
        fresh = await _ask(platform, again, "a fresh start after the erasure")
        listed = platform.api(again, "GET", "/api/v1/threads").json()["threads"]
        assert [t["id"] for t in listed] == [fresh["thread_id"]]
        for user, accepted in ((colleague, kept), (stranger, theirs)):
            events = platform.api(user, "GET", f"/api/v1/threads/{accepted['thread_id']}/events").json()[
                "events"
            ]
            assert [e["event"]["type"] for e in events][-1] == "run.completed"
    finally:
        platform.stop()

    needles = {
        "user id": erased.user_id,
        "email": erased.email,
        "words": secret,
        **{f"thread {i}": m["thread_id"] for i, m in enumerate(mine[:1])},
        **{f"run {i}": m["run_id"] for i, m in enumerate(mine)},
    }
    controls = {"colleague's words": "colleague-keep-this", "stranger's words": "stranger-keep-this"}
    scan = await scan_platform(home / ".apex", {**needles, **controls})
    print(
        f"\npost-erasure scan read: {sum(scan.read.values())} rows, keys and messages in {len(scan.read)} places"
    )
    for place, count in sorted(scan.read.items()):
        print(f"  {place}: {count}")
    # By design: the tombstones that keep the user erased name their id and runs, and the
    # data.erased audit entry names the id; the email now belongs to the new account.
    kept = {name: [h for h in hits if _by_design(h, again.user_id)] for name, hits in scan.hits.items()}
    left = {
        name: [h[:400] for h in hits if not _by_design(h, again.user_id)]
        for name, hits in scan.hits.items()
        if name in needles
    }
    left = {name: hits for name, hits in left.items() if hits}
    print(
        f"kept by design: {sum(len(v) for k, v in kept.items() if k in needles)} records (tombstones, data.erased, the new account)"
    )
    assert not left, f"left of the erased user: {left}"
    assert scan.hits.get("user id"), "the scan finds the tombstones: it reads what it claims to"
    for control in controls:  # and everyone else's data is where it was
        assert {hit.split(":")[0] for hit in scan.hits.get(control, [])} >= {
            'postgres "apex"."messages"',
            "redis",
            "stream APEX_EVT",
        }, control


def _reregister(platform: Platform, email: str) -> User:
    answer = httpx.post(
        f"{platform.auth}/auth/register",
        json={"email": email, "password": PASSWORD, "tenant": f"Again {uuid.uuid4().hex[:6]}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return User(
        email, PASSWORD, body["access_token"], body["refresh_token"], body["user_id"], body["tenant_id"]
    )


def _by_design(hit: str, new_account: str) -> bool:
    """A tombstone (which keeps the user erased: their id, the runs it names), the record of
    the erasure, or a record of the account registered again with the same email."""
    places = (
        'postgres "apex"."erasures"',
        "clickhouse apex.erased_users",
        "clickhouse apex.erased_threads",
    )
    return (
        hit.startswith(places)
        or (hit.startswith("redis") and (":erased = " in hit or ":erased_runs = " in hit))
        or "data.erased" in hit
        or "'Nats-Msg-Id': 'erasure:" in hit
        or new_account in hit
    )
