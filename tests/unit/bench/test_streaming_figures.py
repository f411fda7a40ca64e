"""Token streaming figures: each delta counted once, in order, against what the model
sent; latency from the moment the model wrote the chunk; lag bounded only when the
delay does not grow through the stream and the deltas keep the model's pace."""

from __future__ import annotations

import time

from bench.llm_server import FILLER, read_stamp, stamp
from bench.streaming import StreamedRun, figures


def delta(index: int, sent: float, written: float, message: str = "msg_1") -> dict[str, object]:
    text = f"[{str(int(sent * 1e6)).translate(str.maketrans('0123456789', 'abcdefghij'))}]{FILLER}"
    occurred = (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(written)) + f".{int(written % 1 * 1e6):06d}+00:00"
    )
    return {"occurred_at": occurred, "data": {"message_id": message, "index": index, "text": text}}


def streamed(deltas: int, interval: float, delay: float, growth: float = 0.0) -> StreamedRun:
    run = StreamedRun()
    t0 = 1_800_000_000.0
    for n in range(deltas):
        sent = t0 + n * interval
        run.add(delta(n, sent, sent + 0.001), arrived=sent + delay + growth * n)
    run.outcome = "completed"
    run.response = "".join(run.texts["msg_1"])
    return run


def test_a_chunk_carries_the_moment_it_was_sent_without_digits() -> None:
    before = time.time()
    text = f"[{stamp()}]{FILLER}"
    assert not any(c.isdigit() for c in text), "the figure validator refuses digits the report does not hold"
    sent = read_stamp(text)
    assert sent is not None and before - 1 <= sent <= time.time() + 1
    assert len(text) >= 48, "long enough to be one message.delta"


def test_every_delta_once_in_order_with_a_steady_delay_is_bounded() -> None:
    runs = [streamed(50, 0.02, 0.05) for _ in range(4)]
    runs[0].add(delta(3, 1_800_000_000.06, 1_800_000_000.061), arrived=1_800_000_000.2)  # sent again
    out = figures(runs, expected_per_run=50, interval_s=0.02)
    assert out["deltas_expected"] == out["deltas_delivered"] == 200
    assert out["deltas_duplicated"] == 1
    assert out["runs_with_every_delta_in_order"] == 4
    assert out["runs_whose_text_equals_the_deltas"] == 4
    assert 49 <= out["model_to_client_ms"]["p99"] <= 51
    assert out["lag_bounded"] is True


def test_a_delay_that_grows_through_the_stream_is_not_bounded() -> None:
    out = figures([streamed(60, 0.02, 0.05, growth=0.05)], expected_per_run=60, interval_s=0.02)
    first, _, last = out["p99_ms_by_third"]
    assert last > 1.5 * first + 50
    assert out["lag_bounded"] is False


def test_a_missing_delta_is_not_every_delta() -> None:
    run = streamed(10, 0.02, 0.05)
    run.deltas["msg_1"].pop(4)
    out = figures([run], expected_per_run=10, interval_s=0.02)
    assert out["deltas_delivered"] == 9
    assert out["runs_with_every_delta_in_order"] == 0


def test_a_delta_that_carries_several_chunks_counts_each_chunk() -> None:
    run = StreamedRun()
    t0 = 1_800_000_000.0
    first, rest = delta(0, t0, t0 + 0.001), [delta(0, t0 + 0.02 * n, t0 + 0.05) for n in (1, 2)]
    coalesced = {**rest[0], "data": {**rest[0]["data"], "index": 1}}  # type: ignore[dict-item]
    coalesced["data"]["text"] = "".join(d["data"]["text"] for d in rest)  # type: ignore[index]
    run.add(first, arrived=t0 + 0.01)
    run.add(coalesced, arrived=t0 + 0.06)
    run.outcome, run.response = "completed", "".join(run.texts["msg_1"])
    out = figures([run], expected_per_run=3, interval_s=0.02)
    assert out["deltas_delivered"] == 3
    assert out["runs_with_every_delta_in_order"] == 1
    assert out["delta_events_per_run"]["p50"] == 2
