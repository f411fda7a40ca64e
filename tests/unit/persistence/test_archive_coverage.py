"""The archive's record of what it received: delivered seqs as ranges."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from apex_persistence.postgres.coverage import runs


def test_consecutive_seqs_are_one_range() -> None:
    assert runs([5, 3, 4, 9, 10, 12, 3]) == [(3, 5), (9, 10), (12, 12)]
    assert runs([]) == []


@given(st.sets(st.integers(min_value=1, max_value=500), max_size=80))
def test_ranges_cover_exactly_the_seqs_and_never_touch(seqs: set[int]) -> None:
    ranges = runs(seqs)
    assert {s for lo, hi in ranges for s in range(lo, hi + 1)} == seqs
    assert all(a[1] + 1 < b[0] for a, b in zip(ranges, ranges[1:], strict=False))
