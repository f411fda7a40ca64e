"""The outbox joins only runs of consecutive frames of one group, within the group's count
and the byte budget, and never reorders, drops or repeats a frame (property-tested)."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from apex_contracts.frames import BATCH_BYTES
from apex_gateway.ws.outbox import Group, Outbox

GROUPS: list[Group | None] = [None, ("thr_a", 3), ("thr_b", 3), ("thr_a", 1), ("thr_c", 1000)]
FRAME = st.tuples(st.sampled_from(GROUPS), st.sampled_from([10, 1000, BATCH_BYTES // 2, BATCH_BYTES]))


def _drain(box: Outbox) -> list[tuple[Group | None, list[tuple[str, float | None]]]]:
    async def run() -> list[tuple[Group | None, list[tuple[str, float | None]]]]:
        out = []
        while len(box):
            out.append(await box.get_group())
        return out

    return asyncio.run(run())


@given(st.lists(FRAME, max_size=60))
def test_joined_frames_are_consecutive_runs_of_one_group_within_its_limits(
    frames: list[tuple[Group | None, int]],
) -> None:
    box = Outbox(1000)
    for n, (group, size) in enumerate(frames):
        assert box.put(f"{n:06d}".ljust(size, "x"), float(n), group)
    written = _drain(box)
    assert [at for _, taken in written for _, at in taken] == [float(n) for n in range(len(frames))]
    for group, taken in written:
        ids = [int(text[:6]) for text, _ in taken]
        assert all(frames[i][0] == group for i in ids)
        if len(taken) > 1:
            assert group is not None and len(taken) <= group[1]
            assert sum(len(text) for text, _ in taken[1:]) + len(taken[0][0]) <= BATCH_BYTES


@given(st.lists(FRAME, max_size=60))
def test_a_run_is_joined_whole_unless_a_limit_stops_it(frames: list[tuple[Group | None, int]]) -> None:
    box = Outbox(1000)
    for n, (group, size) in enumerate(frames):
        box.put(f"{n:06d}".ljust(size, "x"), None, group)
    written = _drain(box)
    for (group, taken), (next_group, following) in zip(written, written[1:], strict=False):
        if group is None or group != next_group:
            continue
        size = sum(len(text) for text, _ in taken)
        assert len(taken) == group[1] or size + len(following[0][0]) > BATCH_BYTES


async def test_joining_frees_room_for_a_waiting_replay() -> None:
    box = Outbox(3)
    for n in range(3):
        box.put(f"f{n}", None, ("thr_a", 10))
    assert not await box.room(0.01)
    waiting = asyncio.create_task(box.room(5))
    group, taken = await box.get_group()
    assert (group, [t for t, _ in taken]) == (("thr_a", 10), ["f0", "f1", "f2"])
    assert await waiting and len(box) == 0
