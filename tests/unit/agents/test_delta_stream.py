"""Streamed text while the log is slow: the model is never held up, and the text that
arrives while one delta is being stored goes out in the next (in order, none lost)."""

from __future__ import annotations

import asyncio

import pytest

from apex_agents.context import DeltaStream


class SlowLog:
    """A StepContext stand-in whose deltas take ``write_s`` to be stored."""

    def __init__(self, write_s: float, fail_at: int | None = None) -> None:
        self.write_s = write_s
        self.fail_at = fail_at
        self.open = asyncio.Event()  # a write is stored only once this is set
        self.open.set()
        self.deltas: list[tuple[int, str]] = []
        self.command = type("C", (), {"run_id": "run_x", "data": type("D", (), {"step": 1})()})()
        self.attempt = 1

    async def publish_delta(self, message: int, index: int, message_id: str, text: str) -> None:
        await self.open.wait()
        await asyncio.sleep(self.write_s)
        if index == self.fail_at:
            raise RuntimeError("the log refused the delta")
        self.deltas.append((index, text))


async def test_text_arriving_during_a_write_joins_the_next_delta() -> None:
    log = SlowLog(write_s=0.01)
    stream = DeltaStream(log, 0, min_chars=1, max_wait_s=0.0)  # type: ignore[arg-type]
    log.open.clear()  # the log stores nothing until the model has written half its text
    chunks = [f"c{n};" for n in range(20)]
    async with asyncio.timeout(5):  # a writer held up by the log would wait here for good
        for chunk in chunks[:10]:
            await stream.write(chunk)  # returns while the first delta waits: the model goes on
            await asyncio.sleep(0.001)
    assert log.deltas == [], "the model wrote on while the log held every delta"
    log.open.set()
    for chunk in chunks[10:]:
        await stream.write(chunk)
        await asyncio.sleep(0.005)
    await stream.flush()
    assert [index for index, _ in log.deltas] == list(range(len(log.deltas)))
    assert "".join(text for _, text in log.deltas) == "".join(chunks) == stream.text
    assert 2 <= len(log.deltas) < len(chunks), "a slow log makes fewer, larger deltas"


async def test_a_quick_log_gets_a_delta_per_chunk() -> None:
    log = SlowLog(write_s=0.0)
    stream = DeltaStream(log, 0, min_chars=1, max_wait_s=0.0)  # type: ignore[arg-type]
    for n in range(5):
        await stream.write(f"c{n}")
        await asyncio.sleep(0.01)
    await stream.flush()
    assert [text for _, text in log.deltas] == [f"c{n}" for n in range(5)]


async def test_a_failed_write_reaches_the_writer() -> None:
    log = SlowLog(write_s=0.01, fail_at=0)
    stream = DeltaStream(log, 0, min_chars=1, max_wait_s=0.0)  # type: ignore[arg-type]
    await stream.write("a")
    with pytest.raises(RuntimeError, match="refused"):
        await stream.flush()


async def test_text_that_arrived_during_a_write_goes_out_without_waiting_for_more() -> None:
    log = SlowLog(write_s=0.05)
    stream = DeltaStream(log, 0, min_chars=1, max_wait_s=0.0)  # type: ignore[arg-type]
    await stream.write("first ")
    await stream.write("second")  # arrives while the first is being stored; then the model pauses
    await asyncio.sleep(0.2)
    assert [text for _, text in log.deltas] == ["first ", "second"]
