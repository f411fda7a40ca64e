"""A connection's acks are stored behind its frames (``ws/acks.py``): asking never waits,
acks of a thread coalesce to the furthest, every thread's cursor ends at the furthest ack
asked for whatever the interleaving of acks and writes, a refused or broken write is
answered with the ack's ref, and ``settled``/``close`` wait for what was asked."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apex_contracts import ApexError, ErrorCode, Unavailable
from apex_gateway.ws.acks import CursorWrites


class Store:
    """Cursors as ``Cursors.advance`` keeps them (never backwards); each write takes
    ``turns`` loop turns, or waits for ``gate`` when one is set."""

    def __init__(self, turns: int = 0) -> None:
        self.cursors: dict[str, int] = {}
        self.writes: list[tuple[str, int]] = []
        self.turns = turns
        self.gate: asyncio.Event | None = None
        self.fail: dict[str, BaseException] = {}

    async def advance(self, thread_id: str, seq: int) -> int:
        self.writes.append((thread_id, seq))
        if self.gate is not None:
            await self.gate.wait()
        for _ in range(self.turns):
            await asyncio.sleep(0)
        if thread_id in self.fail:
            raise self.fail[thread_id]
        self.cursors[thread_id] = max(self.cursors.get(thread_id, 0), seq)
        return self.cursors[thread_id]


def refusals() -> tuple[list[tuple[ApexError, str | None]], object]:
    got: list[tuple[ApexError, str | None]] = []
    return got, lambda exc, ref: got.append((exc, ref))


def gated() -> tuple[Store, list[tuple[ApexError, str | None]], CursorWrites]:
    """A store whose writes wait for ``store.gate``, and the writer over it."""
    store = Store()
    store.gate = asyncio.Event()
    got, refused = refusals()
    return store, got, CursorWrites(store.advance, refused)  # type: ignore[arg-type]


async def test_asking_never_waits_for_the_write() -> None:
    store, got, acks = gated()
    acks.ask("thr_a", 5)
    await asyncio.sleep(0)
    assert acks.pending("thr_a") and acks.pending() and not acks.pending("thr_b")
    acks.ask("thr_a", 9)
    acks.ask("thr_a", 7)  # behind the furthest asked: nothing more to store
    acks.ask("thr_a", 4)
    store.gate.set()
    await acks.settled()
    assert store.cursors == {"thr_a": 9}
    assert store.writes == [("thr_a", 5), ("thr_a", 9)]
    assert got == []


async def test_a_refused_write_is_answered_with_the_acks_ref_and_the_rest_go_on() -> None:
    store = Store()
    store.fail = {
        "thr_a": Unavailable("Redis is away", code=ErrorCode.STORE_UNAVAILABLE),
        "thr_b": KeyError("bug"),
    }
    got, refused = refusals()
    acks = CursorWrites(store.advance, refused)  # type: ignore[arg-type]
    acks.ask("thr_a", 3, "r1")
    acks.ask("thr_b", 4, "r2")
    acks.ask("thr_c", 5, "r3")
    await acks.settled()
    assert store.cursors == {"thr_c": 5}
    assert [(exc.code, ref) for exc, ref in got] == [
        (ErrorCode.STORE_UNAVAILABLE, "r1"),
        (ErrorCode.INTERNAL_ERROR, "r2"),
    ]
    assert got[1][0].details and got[1][0].details["incident"].startswith("evt_")


async def test_close_stores_what_was_asked_then_gives_up_on_a_write_that_hangs() -> None:
    store = Store(turns=3)
    got, refused = refusals()
    acks = CursorWrites(store.advance, refused)  # type: ignore[arg-type]
    acks.ask("thr_a", 2)
    acks.ask("thr_b", 3)
    await acks.close(5.0)
    assert store.cursors == {"thr_a": 2, "thr_b": 3}

    stuck = Store()
    stuck.gate = asyncio.Event()  # never set
    acks = CursorWrites(stuck.advance, refused)  # type: ignore[arg-type]
    acks.ask("thr_a", 2)
    await acks.close(0.05)
    assert stuck.cursors == {}


async def test_settled_for_one_thread_does_not_wait_for_later_threads() -> None:
    store, _, acks = gated()
    acks.ask("thr_a", 1)
    waiter = asyncio.ensure_future(acks.settled("thr_a"))
    await asyncio.sleep(0)
    assert not waiter.done()
    store.gate.set()
    acks.ask("thr_b", 1)
    await asyncio.wait_for(waiter, 1)
    await acks.settled()


_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("ack"), st.sampled_from(["thr_a", "thr_b", "thr_c"]), st.integers(0, 50)),
        st.tuples(st.just("turn"), st.just(""), st.integers(1, 4)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(_STEPS, st.integers(0, 3))
def test_every_cursor_ends_at_the_furthest_ack_whatever_the_interleaving(
    steps: list[tuple[str, str, int]], turns: int
) -> None:
    async def scenario() -> None:
        store = Store(turns)
        got, refused = refusals()
        acks = CursorWrites(store.advance, refused)  # type: ignore[arg-type]
        furthest: dict[str, int] = {}
        for kind, thread_id, n in steps:
            if kind == "ack":
                acks.ask(thread_id, n)
                furthest[thread_id] = max(furthest.get(thread_id, -1), n)
            else:
                for _ in range(n):
                    await asyncio.sleep(0)
        await acks.settled()
        assert not acks.pending()
        assert store.cursors == furthest
        for thread_id in furthest:  # never a write behind one already made for the thread
            written = [seq for t, seq in store.writes if t == thread_id]
            assert written == sorted(written)
        assert got == []

    asyncio.run(scenario())


@pytest.mark.parametrize("thread_id", [None, "thr_a"])
async def test_settled_with_nothing_asked_returns_at_once(thread_id: str | None) -> None:
    acks = CursorWrites(Store().advance, lambda exc, ref: None)
    await asyncio.wait_for(acks.settled(thread_id), 1)


async def test_a_new_threads_cursor_is_started_before_its_first_ack() -> None:
    store = Store()
    order: list[str] = []

    async def start(thread_id: str) -> None:
        order.append(f"start {thread_id}")

    async def advance(thread_id: str, seq: int) -> int:
        order.append(f"ack {thread_id} {seq}")
        return await store.advance(thread_id, seq)

    acks = CursorWrites(advance, lambda exc, ref: None, start)
    acks.fresh("thr_a")
    acks.ask("thr_a", 3)
    acks.fresh("thr_b")
    await acks.settled()
    await asyncio.sleep(0)
    assert order == ["start thr_a", "start thr_b", "ack thr_a 3"]
