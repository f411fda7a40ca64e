"""``combine`` (names routed once per distinct name) gives what the plain reading of its
rules gives, for generated rows: any mix of exact names, aliases, summed parts, unknown
columns, odd case and spacing, empty values and values that are not numbers."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from apex_ingest.parsing import (
    COLUMN_ALIASES,
    KNOWN_FIELDS,
    SUMMED_COLUMNS,
    _add,
    combine,
    settle,
    validate_pairs,
    validate_row,
)


def reference(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The naming rules as first written: every name resolved on every row."""
    out: dict[str, Any] = {}
    parts: dict[str, Any] = {}
    exact: set[str] = set()
    for name, value in pairs:
        if value in ("", None):
            continue
        key = name.strip().lower()
        if key in SUMMED_COLUMNS:
            target = SUMMED_COLUMNS[key]
            parts[target] = _add(parts.get(target, 0), value)
            continue
        target = COLUMN_ALIASES.get(key, key)
        if target not in KNOWN_FIELDS:
            continue
        if target not in out or (key == target and target not in exact):
            out[target] = value
        if key == target:
            exact.add(target)
    return settle(out, parts)


NAMES = sorted({*KNOWN_FIELDS, *COLUMN_ALIASES, *SUMMED_COLUMNS, "unknown", "extra_column"})
name = st.builds(
    lambda base, upper, pad: (" " * pad) + (base.upper() if upper else base) + (" " * pad),
    st.sampled_from(NAMES) | st.text(max_size=8),
    st.booleans(),
    st.integers(0, 1),
)
value = st.one_of(
    st.none(),
    st.just(""),
    st.integers(-5, 10_000),
    st.sampled_from(["12", "x", "auto", " Standard ", "batch", "flex", "2026-01-05"]),
    st.floats(allow_nan=False),
)


@given(st.lists(st.tuples(name, value), max_size=20))
def test_combine_matches_its_rules(pairs: list[tuple[str, Any]]) -> None:
    assert combine(pairs) == reference(pairs)


plain_value = value | st.sampled_from(["2026-01-05T10:00:00Z", "openai", "OK", "Gpt-4o ", 5, True, 10**9])


@given(
    st.dictionaries(name, value, max_size=20)
    | st.dictionaries(st.sampled_from(sorted(KNOWN_FIELDS)), plain_value)
)
def test_a_row_of_plain_names_reads_as_combine_reads_it(raw: dict[str, Any]) -> None:
    """``validate_row``'s shortcut for rows that name Apex's own fields gives the record
    (or the rejection) that the full reading gives."""
    assert validate_row(7, raw) == validate_pairs(7, list(raw.items()))
