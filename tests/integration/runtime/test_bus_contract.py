"""The bus port's contract: the same bodies run against ``MemoryBus`` and against a real
nats-server (``NatsBus``). Every test owns its subjects and keys (fresh ids), so the
real server is shared."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from apex_cli.embedded import EmbeddedServer
from apex_contracts import (
    ErrorCode,
    MessageCreated,
    MessageCreatedData,
    Scope,
    Unavailable,
    derive_id,
    new_id,
    subjects,
)
from apex_contracts.streams import APEX_DLQ, APEX_EVT, KV_LEASES
from apex_runtime import Bus, Notice, Stored, WrongRevision
from apex_runtime.bus import NatsBus
from apex_runtime.memory import MemoryBus


def _scope() -> Scope:
    return Scope(
        tenant_id=new_id("ten"), user_id=new_id("usr"), thread_id=new_id("thr"), run_id=new_id("run")
    )


def _event(scope: Scope, n: int) -> MessageCreated:
    return scope.make(
        MessageCreated,
        MessageCreatedData(
            message_id=derive_id("msg", scope.thread_id, str(n)), content=f"m{n}", client_msg_id=str(n)
        ),
        id=f"{scope.run_id}:{n}",
    )


def _subject(scope: Scope) -> str:
    return subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)


async def _eventually(check: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.01)


class BusContract:
    """The promises of ``apex_runtime.port.Bus``; a subclass provides the ``bus`` fixture."""

    async def test_publish_returns_the_seq_and_a_repeated_id_stores_nothing(self, bus: Bus) -> None:
        scope = _scope()
        first = await bus.publish_event(_event(scope, 1))
        second = await bus.publish_event(_event(scope, 2))
        again = await bus.publish_event(_event(scope, 1))
        assert second > first and again == first
        stored = [seq async for seq, _data in bus.read_subject(_subject(scope))]
        assert stored == [first, second]

    async def test_read_range_reads_in_order_after_a_seq_in_small_batches(self, bus: Bus) -> None:
        scope = _scope()
        seqs = [await bus.publish_event(_event(scope, n)) for n in range(5)]
        read = [stored async for stored in bus.read_range(_subject(scope), after_seq=seqs[0], batch=2)]
        assert [s.seq for s in read] == seqs[1:]
        assert {s.subject for s in read} == {_subject(scope)}
        assert [orjson.loads(s.data)["data"]["content"] for s in read] == ["m1", "m2", "m3", "m4"]
        upto = [s.seq async for s in bus.read_range(_subject(scope), after_seq=0, upto_seq=seqs[2])]
        assert upto == seqs[:3]
        wildcard = f"{subjects.EVT_PREFIX}.{scope.tenant_id}.*.*"
        assert [s.seq async for s in bus.read_range(wildcard)] == seqs

    async def test_last_seq_is_the_newest_on_the_subject_and_0_for_none(self, bus: Bus) -> None:
        scope = _scope()
        assert await bus.last_seq(_subject(scope)) == 0
        seqs = [await bus.publish_event(_event(scope, n)) for n in range(3)]
        assert await bus.last_seq(_subject(scope)) == seqs[-1]
        assert await bus.last_seq(_subject(scope), leader=True) == seqs[-1]
        assert await bus.head_seq() >= seqs[-1] >= await bus.first_seq()

    async def test_seq_before_a_moment(self, bus: Bus) -> None:
        scope = _scope()
        before = await bus.publish_event(_event(scope, 0))
        await asyncio.sleep(0.05)
        moment = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await bus.publish_event(_event(scope, 1))
        assert await bus.seq_before(moment, _subject(scope)) >= before
        assert (
            await bus.seq_before(datetime.now(UTC) + timedelta(hours=1), _subject(scope))
            == await bus.head_seq()
        )

    async def test_follow_hands_over_the_backlog_then_live_messages_once_in_order(self, bus: Bus) -> None:
        scope = _scope()
        seqs = [await bus.publish_event(_event(scope, n)) for n in range(3)]
        got: list[int] = []
        fresh: list[int] = []

        async def take(stored: Stored) -> None:
            got.append(stored.seq)

        async def take_new(stored: Stored) -> None:
            fresh.append(stored.seq)

        followed = await bus.follow(_subject(scope), take, after_seq=seqs[0])
        only_new = await bus.follow(_subject(scope), take_new)
        try:
            await _eventually(lambda: len(got) == 2)
            later = await bus.publish_event(_event(scope, 3))
            await _eventually(lambda: len(got) == 3 and len(fresh) == 1)
            assert got == [*seqs[1:], later] and fresh == [later]
        finally:
            await followed.stop()
            await only_new.stop()
        await bus.publish_event(_event(scope, 4))
        await asyncio.sleep(0.1)
        assert len(got) == 3

    async def test_broadcast_reaches_every_listener_and_one_per_queue_group(self, bus: Bus) -> None:
        subject = f"apex.ctl.contract.{new_id('run')}"
        heard: dict[str, list[bytes]] = {"a": [], "b": [], "q1": [], "q2": []}

        def hear(name: str):
            async def on(notice: Notice) -> None:
                heard[name].append(notice.data)

            return on

        subs = [
            await bus.listen(subject, hear("a")),
            await bus.listen("apex.ctl.contract.*", hear("b")),
            await bus.listen(subject, hear("q1"), queue="workers"),
            await bus.listen(subject, hear("q2"), queue="workers"),
        ]
        try:
            await bus.broadcast(subject, b"one")
            await bus.broadcast(subject, b"two")
            await _eventually(lambda: len(heard["a"]) == 2 and len(heard["q1"]) + len(heard["q2"]) == 2)
            assert heard["a"] == heard["b"] == [b"one", b"two"]
        finally:
            for sub in subs:
                await sub.stop()
        await bus.broadcast(subject, b"three")
        await asyncio.sleep(0.1)
        assert heard["a"] == [b"one", b"two"]

    async def test_a_stored_message_is_heard_on_its_subject(self, bus: Bus) -> None:
        scope = _scope()
        heard: list[bytes] = []

        async def on(notice: Notice) -> None:
            heard.append(notice.data)

        sub = await bus.listen(_subject(scope), on)
        try:
            await bus.publish_event(_event(scope, 1))
            await _eventually(lambda: len(heard) == 1)
        finally:
            await sub.stop()

    async def test_request_gets_the_reply_and_nobody_listening_is_unavailable(self, bus: Bus) -> None:
        subject = f"apex.q.contract.{new_id('run')}"

        async def answer(notice: Notice) -> None:
            await bus.broadcast(notice.reply, notice.data.upper())

        sub = await bus.listen(subject, answer)
        try:
            assert await bus.request(subject, b"ping", timeout=2.0) == b"PING"
        finally:
            await sub.stop()
        with pytest.raises(Unavailable) as nobody:
            await bus.request(f"apex.q.contract.{new_id('run')}", b"ping", timeout=1.0)
        assert nobody.value.code == ErrorCode.SERVICE_UNAVAILABLE

    async def test_kv_revisions(self, bus: Bus) -> None:
        kv = await bus.bucket(KV_LEASES)
        key = f"contract.{new_id('run')}"
        assert await kv.get(key) is None
        first = await kv.create(key, b"a")
        with pytest.raises(WrongRevision):
            await kv.create(key, b"b")
        second = await kv.update(key, b"b", last=first)
        with pytest.raises(WrongRevision):
            await kv.update(key, b"c", last=first)
        entry = await kv.get(key)
        assert entry is not None and (entry.value, entry.revision) == (b"b", second)
        assert key in await kv.keys()
        assert [e.key for e in await kv.entries(f"contract.{key.split('.')[1]}")] == [key]
        with pytest.raises(WrongRevision):
            await kv.delete(key, last=first)
        await kv.delete(key, last=second)
        assert await kv.get(key) is None
        assert key not in await kv.keys()
        await kv.create(key, b"again")  # a deleted key can be created again
        await kv.put(key, b"put")
        assert (await kv.get(key)).value == b"put"  # type: ignore[union-attr]
        await kv.purge(key)
        assert await kv.get(key) is None

    async def test_kv_purge_matching_a_pattern(self, bus: Bus) -> None:
        kv = await bus.bucket(KV_LEASES)
        prefix = f"contract.{new_id('usr')}"
        for key in (f"{prefix}.a", f"{prefix}.b", f"{prefix}x.c"):
            await kv.put(key, b"v")
        await kv.purge_matching(f"{prefix}.>")
        assert await kv.get(f"{prefix}.a") is None and await kv.get(f"{prefix}.b") is None
        assert await kv.get(f"{prefix}x.c") is not None

    async def test_stream_state_counts_what_is_stored(self, bus: Bus) -> None:
        scope = _scope()
        seq = await bus.publish_event(_event(scope, 1))
        state = await bus.stream_state(APEX_EVT.name)
        assert state.name == APEX_EVT.name and state.last_seq >= seq >= state.first_seq
        assert state.messages >= 1 and state.bytes > 0 and state.replicas >= 1

    async def test_purge_up_to_a_seq_and_delete_one_message(self, bus: Bus) -> None:
        scope = _scope()
        seqs = [await bus.publish_event(_event(scope, n)) for n in range(4)]
        await bus.purge(APEX_EVT.name, _subject(scope), keep_after=seqs[1])
        assert [s async for s, _ in bus.read_subject(_subject(scope))] == seqs[2:]
        assert await bus.delete_message(APEX_EVT.name, seqs[3]) is True
        assert await bus.delete_message(APEX_EVT.name, seqs[3]) is False
        assert [s async for s, _ in bus.read_subject(_subject(scope))] == [seqs[2]]

    async def test_owner_of_thread(self, bus: Bus) -> None:
        scope = _scope()
        assert await bus.owner_of_thread(scope.thread_id) is None
        await bus.publish_event(_event(scope, 1))
        assert await bus.owner_of_thread(scope.thread_id) == (scope.tenant_id, scope.user_id)

    async def test_dead_letter_goes_to_the_dead_letter_stream_once(self, bus: Bus) -> None:
        subject = subjects.dead_letter(f"{subjects.CMD_PREFIX}.contract.{new_id('run')}")
        headers = {"Nats-Msg-Id": f"dlq:{new_id('run')}", "Apex-Error-Code": "invalid_input"}
        seq = await bus.dead_letter(subject, b"poison", headers)
        assert await bus.dead_letter(subject, b"poison", headers) == seq
        assert [d async for _s, d in bus.read_subject(subject, stream=APEX_DLQ.name)] == [b"poison"]
        with pytest.raises(ValueError):
            await bus.dead_letter("apex.cmd.run.start", b"x", headers)

    async def test_watch_finds_a_stored_fact_and_one_still_to_come(self, bus: Bus) -> None:
        scope = _scope()
        await bus.publish_event(_event(scope, 1))
        async with bus.watch(_subject(scope)) as watch:
            found = await watch.wait_for(lambda m: m["data"]["content"] == "m1", timeout=2.0)
            assert found["data"]["content"] == "m1"
            later = asyncio.create_task(
                watch.wait_for(lambda m: m["data"]["content"] == "m2", timeout=5.0, scan_after_seq=None)
            )
            await asyncio.sleep(0.05)
            await bus.publish_event(_event(scope, 2))
            assert (await later)["data"]["content"] == "m2"

    async def test_the_stream_epoch_is_stable(self, bus: Bus) -> None:
        assert await bus.stream_epoch() == await bus.stream_epoch()
        assert (await bus.stream_epoch()).startswith(f"{APEX_EVT.name}@")


class TestMemoryBus(BusContract):
    @pytest.fixture
    async def bus(self) -> AsyncIterator[Bus]:
        bus = MemoryBus()
        yield bus
        await bus.close()


class TestNatsBus(BusContract):
    @pytest.fixture
    async def bus(self, nats: EmbeddedServer) -> AsyncIterator[Bus]:
        bus = await NatsBus.connect(nats.url, "bus-contract")
        bus.publish_retry_s = 2.0
        await bus.ensure_topology()
        yield bus
        await bus.close()
