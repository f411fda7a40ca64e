"""``apex_runtime.waitfor.wait_for`` (3.12's ``asyncio.wait_for``, installed on 3.11):
a cancellation of the waiting task is never dropped, whatever lands in the same turn of
the loop; results, timeouts and the zero timeout behave as documented. Interleavings of
reply, cancellation and the awaited kind are generated."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apex_runtime.waitfor import stock_wait_for, wait_for


def _at_turn(turn: int, action: Callable[[], Any]) -> None:
    """Runs ``action`` ``turn`` turns of the loop from now (0: the next callback slot)."""
    loop = asyncio.get_running_loop()
    if turn == 0:
        loop.call_soon(action)
    else:
        loop.call_soon(_at_turn, turn - 1, action)


async def _interleave(
    waiter: Any, reply_turn: int | None, cancel_turn: int | None, kind: str
) -> tuple[bool, Any]:
    """A task waits (``waiter``) for a reply stored at ``reply_turn`` and is cancelled at
    ``cancel_turn``; returns (whether ``cancel`` was accepted, the task's outcome)."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[int] = loop.create_future()

    async def through_a_coroutine() -> int:
        return await reply

    async def caller() -> int:
        awaited = reply if kind == "future" else through_a_coroutine()
        value: int = await waiter(awaited, 5)
        return value

    task = asyncio.ensure_future(caller())
    await asyncio.sleep(0)  # the task is waiting
    accepted: list[bool] = []
    if reply_turn is not None:
        _at_turn(reply_turn, lambda: reply.set_result(7))
    if cancel_turn is not None:
        _at_turn(cancel_turn, lambda: accepted.append(task.cancel()))
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done, "the task neither ended nor was cancelled"
    outcome: Any = "cancelled" if task.cancelled() else task.result()
    return bool(accepted and accepted[0]), outcome


@settings(max_examples=300, deadline=None)
@given(
    reply_turn=st.none() | st.integers(0, 4),
    cancel_turn=st.none() | st.integers(0, 4),
    kind=st.sampled_from(["future", "coroutine"]),
)
def test_a_cancellation_the_task_accepted_is_never_dropped(
    reply_turn: int | None, cancel_turn: int | None, kind: str
) -> None:
    if reply_turn is None and cancel_turn is None:
        reply_turn = 0  # something must end the wait
    accepted, outcome = asyncio.run(_interleave(wait_for, reply_turn, cancel_turn, kind))
    if accepted:
        assert outcome == "cancelled"
    else:
        assert outcome == 7


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="CPython 3.12 keeps the cancellation")
async def test_the_interpreters_own_drops_it_when_reply_and_cancellation_share_a_turn() -> None:
    accepted, outcome = await _interleave(stock_wait_for, 0, 0, "future")
    assert accepted and outcome == 7  # what gh-86296 is; the property above rules it out


async def test_a_result_in_time_is_returned() -> None:
    assert await wait_for(asyncio.sleep(0, result="done"), 1) == "done"
    assert await wait_for(asyncio.sleep(0, result="done"), None) == "done"


async def test_a_timeout_cancels_what_it_waited_for() -> None:
    slow = asyncio.ensure_future(asyncio.sleep(10))
    with pytest.raises(TimeoutError):
        await wait_for(slow, 0.01)
    assert slow.cancelled()


async def test_a_zero_timeout_returns_what_is_done_and_never_starts_the_rest() -> None:
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    done.set_result(3)
    assert await wait_for(done, 0) == 3
    started: list[bool] = []

    async def work() -> None:
        started.append(True)

    with pytest.raises(TimeoutError):
        await wait_for(work(), 0)
    assert not started


async def test_the_test_session_runs_with_it_installed() -> None:
    assert asyncio.wait_for is wait_for or sys.version_info >= (3, 12)
