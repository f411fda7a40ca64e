"""The embedded engine's parameters are bound exactly as clickhouse-connect binds them for
a server, the fast way for lists of strings included."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.binding import format_bind_value
from hypothesis import given
from hypothesis import strategies as st

from apex_persistence.analytics.port import _bind

scalars = st.one_of(st.text(), st.integers(), st.none(), st.floats(allow_nan=False), st.booleans())


@given(st.lists(st.text(alphabet=st.sampled_from("ab'\\`\t\n é\r\"\x00"), max_size=8)))
def test_a_list_of_strings_binds_as_clickhouse_connect_binds_it(values: list[str]) -> None:
    assert _bind(values) == format_bind_value(values)


@given(st.one_of(scalars, st.lists(scalars, max_size=4)))
def test_anything_else_binds_as_clickhouse_connect_binds_it(value: Any) -> None:
    assert _bind(value) == str(format_bind_value(value))
