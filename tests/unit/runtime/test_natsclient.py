"""The services' header reader reads every header block exactly as nats-py does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client

from apex_runtime import natsclient
from apex_runtime.natsclient import parse_header_lines, read_headers_fast

nats_py = natsclient._NATS_PY

DIRECT_GET = (
    b"Nats-Msg-Id: run_01J:1:t:7\r\nNats-Stream: APEX_EVT\r\nNats-Subject: apex.evt.t.u.thr\r\n"
    b"Nats-Sequence: 42\r\nNats-Time-Stamp: 2026-12-03T02:47:32.123456789Z\r\n"
    b"Nats-Num-Pending: 9\r\nNats-UpTo-Sequence: 99\r\n\r\n"
)

# pieces that put a block on either side of the fast path's edge
_PIECES = st.sampled_from(
    [
        b"Nats-Sequence",
        b"X",
        b":",
        b": ",
        b" ",
        b"\t",
        b"\r\n",
        b"\r",
        b"\n",
        b"42",
        b"a b",
        b"\xc3\xa9",
        b"\xff",
        b"",
    ]
)


def test_a_direct_get_block_is_read_as_nats_py_reads_it() -> None:
    assert parse_header_lines(DIRECT_GET) == nats_py(DIRECT_GET)
    assert parse_header_lines(DIRECT_GET)["Nats-Sequence"] == "42"


def test_once_installed_every_client_reads_headers_with_it() -> None:
    read_headers_fast()
    read_headers_fast()
    assert Client._parse_header_lines is parse_header_lines
    assert nats_py is not parse_header_lines  # what it falls back to is still nats-py's


@given(st.binary(max_size=300))
def test_any_bytes_are_read_as_nats_py_reads_them(raw: bytes) -> None:
    assert parse_header_lines(raw) == nats_py(raw)


@given(st.lists(_PIECES, max_size=40).map(b"".join))
def test_near_header_shapes_are_read_as_nats_py_reads_them(raw: bytes) -> None:
    assert parse_header_lines(raw) == nats_py(raw)


@given(
    st.lists(
        st.tuples(
            st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1),
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
        ),
        max_size=8,
    )
)
def test_well_formed_blocks_are_read_as_nats_py_reads_them(lines: list[tuple[str, str]]) -> None:
    raw = b"".join(f"{name}: {value}\r\n".encode() for name, value in lines) + b"\r\n"
    assert parse_header_lines(raw) == nats_py(raw)
