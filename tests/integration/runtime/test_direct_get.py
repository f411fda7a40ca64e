"""Batched direct gets on a real server: read as the read loop reads them
(``raw_subscription``), the next batch asked for while one is handed over, nothing left
subscribed when a reader stops early, and an answer that does not say where its message
is stored failing the read instead of the connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats as nats_py
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from apex_cli.embedded import EmbeddedServer
from apex_contracts import Unavailable
from apex_runtime.directget import DirectGet
from apex_runtime.natsclient import raw_subscription

STREAM = "DIRECT_GET_TEST"


@pytest.fixture
async def nc(nats: EmbeddedServer) -> AsyncIterator[Client]:
    client = await nats_py.connect(nats.url)
    js = client.jetstream()
    await js.add_stream(name=STREAM, subjects=["dg.>"], allow_direct=True)
    yield client
    await js.delete_stream(STREAM)
    await client.close()


def _subscriptions(nc: Client) -> int:
    return len(nc._subs)


async def test_a_read_of_many_batches_is_every_message_in_order(nc: Client) -> None:
    js = nc.jetstream()
    mine = [(await js.publish(f"dg.{'a' if n % 3 else 'b'}", f"m{n}".encode())) for n in range(250)]
    expected = [(ack.seq, f"m{n}".encode()) for n, ack in enumerate(mine) if n % 3]
    before = _subscriptions(nc)
    read = [(s.seq, s.data) async for s in DirectGet(nc, retry_s=lambda: 2.0).read(STREAM, "dg.a", batch=7)]
    assert read == expected
    assert _subscriptions(nc) == before


@pytest.mark.parametrize("stop_after", [5, 10, 15, 35])
async def test_a_reader_that_stops_early_leaves_nothing_subscribed(nc: Client, stop_after: int) -> None:
    js = nc.jetstream()
    for n in range(40):
        await js.publish("dg.a", f"m{n}".encode())
    before = _subscriptions(nc)
    reader = DirectGet(nc, retry_s=lambda: 2.0).read(STREAM, "dg.a", batch=10)
    taken = []
    async for stored in reader:  # the second batch is asked for once the first is in
        taken.append(stored.data)
        if len(taken) == stop_after:
            break
        await asyncio.sleep(0)  # the batch asked for ahead may be under way, or in
    await reader.aclose()
    assert taken == [f"m{n}".encode() for n in range(stop_after)]
    assert _subscriptions(nc) == before
    assert not nc.__dict__.get("_apex_raw_handlers")
    # the connection reads on
    assert [s.data async for s in DirectGet(nc, retry_s=lambda: 2.0).read(STREAM, "dg.a", upto_seq=2)] == [
        b"m0",
        b"m1",
    ]


async def test_raw_messages_skip_nats_py_and_other_subscriptions_do_not(nc: Client) -> None:
    raw: list[tuple[bytes, bytes | None]] = []
    parsed: list[Msg] = []
    all_in = asyncio.Event()

    def arrived() -> None:
        if len(raw) == 2 and len(parsed) == 1:
            all_in.set()

    def keep_raw(data: bytes, headers: bytes | None) -> None:
        raw.append((data, headers))
        arrived()

    async def keep(msg: Msg) -> None:
        parsed.append(msg)
        arrived()

    await nc.subscribe("dg.parsed", cb=keep)
    in_msgs = nc.stats["in_msgs"]
    async with raw_subscription(nc, "dg.raw", keep_raw):
        await nc.publish("dg.raw", b"one", headers={"X-Apex": "1"})
        await nc.publish("dg.raw", b"two")
        await nc.publish("dg.parsed", b"three", headers={"X-Apex": "3"})
        await nc.flush()
        await asyncio.wait_for(all_in.wait(), 5)
    assert raw[0][0] == b"one" and raw[0][1] is not None and b"X-Apex: 1" in raw[0][1]
    assert raw[1] == (b"two", None)
    assert parsed[0].data == b"three" and parsed[0].headers == {"X-Apex": "3"}
    assert nc.stats["in_msgs"] - in_msgs == 3
    await nc.publish("dg.raw", b"after")  # unsubscribed: nobody gets it
    await nc.flush()
    assert len(raw) == 2


async def test_an_answer_without_its_sequence_fails_the_read_not_the_connection(nc: Client) -> None:
    async def impostor(msg: Msg) -> None:  # answers like a direct get, without Nats-Sequence
        await nc.publish(msg.reply, b"x", headers={"Nats-Subject": "dg.a"})

    await nc.subscribe("$JS.API.DIRECT.GET.IMPOSTOR", cb=impostor)
    with pytest.raises(Unavailable, match="without a sequence"):
        _ = [s async for s in DirectGet(nc, retry_s=lambda: 1.0).read("IMPOSTOR", "dg.a")]
    reply = await nc.request("$JS.API.STREAM.INFO." + STREAM, b"", timeout=5)
    assert b'"config"' in reply.data
