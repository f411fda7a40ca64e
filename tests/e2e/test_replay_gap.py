"""A replay gap is named, never assumed away (a platform of its own: the test purges the
event stream and kills Postgres). Postgres is down while a thread gets more events (the
archive's projector stops following the log once it found the store gone), and
retention (a purge) drops them before the archive received them: then neither the stream
nor the archive holds them, while the archive still answers. A socket, the events endpoint and
SSE each give what the archive holds, then ``replay_incomplete`` with the range that is
gone (``gap_from`` to ``gap_to``), then what the stream holds: every event of the thread
is either delivered or inside a named gap."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from apex_contracts import Scope, Unavailable
from apex_runtime.bus import NatsBus
from tests.e2e.hostile import archived_seqs, publish_thinking, publish_thread, sse
from tests.e2e.platform import Platform, User, persistence_metric, platform_env
from tests.e2e.wsclient import open_socket, recv, send

FAILED_BATCHES = "apex_projection_failed_batches_total"


async def archived_when_back(platform: Platform, user: User, thread_id: str) -> list[int]:
    """The archive's sequences of the thread; none while Postgres is still down."""
    try:
        return await archived_seqs(platform, user, thread_id)
    except Unavailable:
        return []


@pytest.fixture(scope="module")
def gap_platform() -> Iterator[Platform]:
    home = Path(tempfile.mkdtemp(prefix="apex-gap-"))
    home.chmod(0o755)
    # a killed Postgres is restarted 10 s later: the test's events are published meanwhile
    platform = Platform(home, platform_env(home) | {"APEX_EMBEDDED_RESTART_S": "10"})
    platform.start(timeout=240)
    try:
        yield platform
    finally:
        platform.stop()


async def test_a_range_neither_the_stream_nor_the_archive_holds_is_named(gap_platform: Platform) -> None:
    platform = gap_platform
    user = platform.register()
    thread_id = await publish_thread(platform, user, 4)
    archived: list[int] = []
    deadline = time.monotonic() + 60
    while len(archived := await archived_seqs(platform, user, thread_id)) < 4:
        assert time.monotonic() < deadline, "the first events were never archived"
        await asyncio.sleep(0.3)

    nc = await nats.connect(platform.recorded_env()["APEX_NATS_URL"], **platform.nats_options())
    bus = NatsBus(nc)
    scope = Scope(tenant_id=user.tenant_id, user_id=user.user_id, thread_id=thread_id)
    failed = persistence_metric(platform, FAILED_BATCHES, "postgres")
    platform.kill("postgres")
    try:
        # the first event finds the store gone: from then on the projector holds that
        # batch and reads nothing more of the log until Postgres is back
        lost = [await publish_thinking(bus, scope, 100)]
        deadline = time.monotonic() + 30
        while persistence_metric(platform, FAILED_BATCHES, "postgres") <= failed:
            assert time.monotonic() < deadline, "the projector never found Postgres gone"
            await asyncio.sleep(0.1)
        lost += [await publish_thinking(bus, scope, 101 + n) for n in range(4)]
        await nc.jetstream().purge_stream("APEX_EVT", seq=lost[-1] + 1)  # retention takes them, unarchived
        kept = [await publish_thinking(bus, scope, 200 + n) for n in range(3)]
    finally:
        await nc.close()
    first_kept = lost[-1] + 1
    deadline = time.monotonic() + 60
    while kept[-1] not in await archived_when_back(platform, user, thread_id):
        assert time.monotonic() < deadline, "the archive did not catch up"
        await asyncio.sleep(0.3)
    # What the archive holds before the purge point (the batch the projector held through
    # the outage), and what it never got.
    archived = [seq for seq in await archived_seqs(platform, user, thread_id) if seq < lost[-1] + 1]
    lost = [seq for seq in lost if seq not in archived]
    assert lost, "retention took events the archive never received"

    # A socket: the archive's events, the gap where it falls, then the stream's events.
    ws = await open_socket(platform.ws_url, user.access_token)
    await recv(ws)
    await send(ws, {"type": "thread.subscribe", "thread_id": thread_id, "after_seq": 0})
    frames = [await recv(ws, 30) for _ in range(1 + len(archived) + 1 + len(kept))]
    await ws.close()
    assert frames[0]["type"] == "thread.subscribed"
    gaps = [f for f in frames if f["type"] == "error"]
    assert [g["code"] for g in gaps] == ["replay_incomplete"]
    gap = gaps[0]
    _check(archived, lost, kept, first_kept, gap["gap_from"], gap["gap_to"], gap["first_seq"])
    assert [f["seq"] for f in frames if f["type"] == "event"] == archived + kept
    assert frames.index(gap) == 1 + len(archived), "told where the gap falls, in seq order"

    # The events endpoint: the archive's page, then 410 at the gap, then the rest past it.
    page = _events(platform, user, thread_id, 0)
    assert page.status_code == 200 and [e["seq"] for e in page.json()["events"]] == archived
    assert page.json()["more"] is True
    refused = _events(platform, user, thread_id, archived[-1])
    assert refused.status_code == 410
    details = refused.json()["error"]["details"]
    assert refused.json()["error"]["code"] == "replay_incomplete"
    _check(archived, lost, kept, first_kept, details["gap_from"], details["gap_to"], details["first_seq"])
    rest = _events(platform, user, thread_id, details["gap_to"])
    assert [e["seq"] for e in rest.json()["events"]] == kept

    # SSE: the same, in one stream.
    told = await sse(platform, user, thread_id, len(archived) + 1 + len(kept))
    assert [e["event"] for e in told].count("error") == 1
    error = next(e for e in told if e["event"] == "error")
    _check(archived, lost, kept, first_kept, error["gap_from"], error["gap_to"], error["first_seq"])
    assert [e["seq"] for e in told if e["event"] != "error"] == archived + kept
    print(
        f"\nreplay gap named: seqs {gap['gap_from']} to {gap['gap_to']} (the stream keeps from {first_kept})"
    )


def _check(
    archived: list[int],
    lost: list[int],
    kept: list[int],
    first_kept: int,
    gap_from: int,
    gap_to: int,
    resume: int,
) -> None:
    """The named gap holds every lost event and nothing that was delivered; history resumes
    right after it."""
    assert (gap_to, resume) == (first_kept - 1, first_kept), (gap_from, gap_to, resume)
    assert all(gap_from <= seq <= gap_to for seq in lost)
    assert not [seq for seq in archived + kept if gap_from <= seq <= gap_to]


def _events(platform: Platform, user: User, thread_id: str, after_seq: int) -> httpx.Response:
    return platform.api(user, "GET", f"/api/v1/threads/{thread_id}/events?after_seq={after_seq}")
