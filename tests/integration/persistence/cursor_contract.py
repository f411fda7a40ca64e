"""The contract of a delivery cursor (the highest seq a user acknowledged on a thread),
written once and run against each implementation by subclassing ``CursorContract``:
persistence's ``CursorStore`` on Postgres (``test_persistence_cursors.py``) and the
gateway's ``DeliveryCursors`` on Redis with that store as its archive
(``tests/integration/gateway/test_delivery_cursors.py``).

A subclass provides the ``cursors`` fixture, a ``CursorsUnderTest``. The properties:

- a cursor never acknowledged reads 0;
- a cursor only moves forward: acks repeated, late or in any order leave the highest;
- each (tenant, user, thread) has its own cursor; another tenant naming the same user
  and thread sees and changes nothing of it;
- a cursor made durable is read back after the fast copy is lost (Redis restarted
  without persistence, a key evicted), and an ack after the loss never moves it back.
"""

from __future__ import annotations

import random
from typing import Protocol

import pytest

from apex_contracts import new_id

CursorId = tuple[str, str, str]  # tenant, user, thread


def cursor_id(tenant_id: str | None = None, user_id: str | None = None) -> CursorId:
    return (tenant_id or new_id("ten"), user_id or new_id("usr"), new_id("thr"))


class CursorsUnderTest(Protocol):
    async def advance(self, cursor: CursorId, seq: int) -> int:
        """Acknowledges ``seq``; returns the cursor after it."""
        ...

    async def get(self, cursor: CursorId) -> int:
        """The cursor, 0 when none was ever acknowledged."""
        ...

    async def persist(self) -> None:
        """Makes the acks so far durable (a flush); nothing where each ack already is."""
        ...

    async def lose_fast_copy(self) -> None:
        """Loses what is not durable (Redis's keys); nothing where there is no such copy."""
        ...


class CursorContract:
    """Subclass per implementation and define the ``cursors`` fixture."""

    @pytest.fixture
    def cursors(self) -> CursorsUnderTest:
        raise NotImplementedError("a CursorContract subclass defines the cursors fixture")

    async def test_a_cursor_never_acknowledged_reads_zero(self, cursors: CursorsUnderTest) -> None:
        assert await cursors.get(cursor_id()) == 0

    async def test_a_cursor_only_moves_forward(self, cursors: CursorsUnderTest) -> None:
        cursor = cursor_id()
        assert await cursors.advance(cursor, 7) == 7
        assert await cursors.advance(cursor, 5) == 7  # a late ack
        assert await cursors.advance(cursor, 7) == 7  # the same ack again
        assert await cursors.advance(cursor, 12) == 12
        assert await cursors.get(cursor) == 12

    async def test_acks_in_any_order_leave_the_highest(self, cursors: CursorsUnderTest) -> None:
        cursor = cursor_id()
        acks = [seq for seq in range(1, 40) for _ in range(2)]
        random.Random(5).shuffle(acks)
        for seq in acks:
            await cursors.advance(cursor, seq)
        assert await cursors.get(cursor) == 39

    async def test_each_thread_user_and_tenant_has_its_own_cursor(self, cursors: CursorsUnderTest) -> None:
        tenant, user, thread = cursor_id()
        other_thread = (tenant, user, new_id("thr"))
        other_user = (tenant, new_id("usr"), thread)
        other_tenant = (new_id("ten"), user, thread)
        await cursors.advance((tenant, user, thread), 10)
        await cursors.advance(other_thread, 3)
        assert await cursors.get(other_user) == 0
        assert await cursors.get(other_tenant) == 0
        await cursors.advance(other_tenant, 99)
        assert await cursors.get((tenant, user, thread)) == 10
        assert await cursors.get(other_thread) == 3

    async def test_a_durable_cursor_is_read_back_after_the_fast_copy_is_lost(
        self, cursors: CursorsUnderTest
    ) -> None:
        cursor, other = cursor_id(), cursor_id()
        await cursors.advance(cursor, 9)
        await cursors.advance(other, 4)
        await cursors.persist()
        await cursors.lose_fast_copy()
        assert await cursors.get(cursor) == 9
        assert await cursors.advance(other, 2) == 4  # an ack after the loss: never back
        assert await cursors.advance(cursor, 11) == 11
        await cursors.persist()
        await cursors.lose_fast_copy()
        assert (await cursors.get(cursor), await cursors.get(other)) == (11, 4)
