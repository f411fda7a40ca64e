import pytest
from hypothesis import given
from hypothesis import strategies as st

from apex_contracts import InvalidId, derive_id, is_id, new_id, validate_id
from apex_contracts.ids import PREFIXES


@pytest.mark.parametrize("prefix", sorted(PREFIXES))
def test_new_ids_are_valid_and_distinct(prefix: str) -> None:
    a, b = new_id(prefix), new_id(prefix)
    assert a != b
    assert is_id(a, prefix) and validate_id(a, prefix) == a


def test_new_ids_sort_by_time() -> None:
    ids = [new_id("run") for _ in range(50)]
    assert [i[:14] for i in ids] == sorted(i[:14] for i in ids)


@given(st.lists(st.text(max_size=20), max_size=4))
def test_derived_ids_are_deterministic_and_valid(parts: list[str]) -> None:
    first = derive_id("call", *parts)
    assert first == derive_id("call", *parts)
    assert is_id(first, "call")


def test_derived_ids_differ_by_parts() -> None:
    assert derive_id("call", "a", "b") != derive_id("call", "ab")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "thr_",
        "thr_01ARZ3NDEKTSV4RRFFQ69G5FA",  # 25 chars
        "thr_01ARZ3NDEKTSV4RRFFQ69G5FAVV",  # 27 chars
        "thr_01ARZ3NDEKTSV4RRFFQ69G5FAI",  # I is not Crockford
        "thr_81ARZ3NDEKTSV4RRFFQ69G5FAV",  # overflows 128 bits
        "run_01ARZ3NDEKTSV4RRFFQ69G5FAV",  # wrong prefix
        "thr.01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "thr_01ARZ3NDEKTSV4RRFFQ69G5FA*",
        "apex.evt.>",
        None,
        42,
    ],
)
def test_malformed_ids_are_refused(value: object) -> None:
    assert not is_id(value, "thr")
    with pytest.raises(InvalidId):
        validate_id(value, "thr")


def test_unknown_prefix_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown id prefix"):
        new_id("xyz")
