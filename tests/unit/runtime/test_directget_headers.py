"""A direct get's answer is read from its header block without parsing it whole; the
seq, subject and status read so are the ones nats-py's parser gives, for any block."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from apex_runtime import directget, natsclient

nats_py = natsclient._NATS_PY

_NAMES = st.sampled_from(
    [b"Nats-Sequence", b"Nats-Subject", b"Nats-Stream", b"Nats-Msg-Id", b"X-Nats-Sequence"]
)
_VALUES = st.one_of(
    st.integers(min_value=0, max_value=2**64 - 1).map(lambda n: str(n).encode()),
    st.from_regex(rb"\A[!-~]{1,20}\Z"),
    st.sampled_from([b"apex.evt.t.u.thr_1", b"12 34", b"-5"]),
)
_BLOCKS = st.lists(st.tuples(_NAMES, _VALUES), max_size=8)


def _block(lines: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(name + b": " + value + b"\r\n" for name, value in lines) + b"\r\n"


@given(_BLOCKS)
def test_seq_and_subject_are_nats_pys(lines: list[tuple[bytes, bytes]]) -> None:
    block = _block(lines)
    parsed = nats_py(block)
    stored = directget._stored(b"NATS/1.0\r\n" + block, b"data")
    seq, subject = parsed.get("Nats-Sequence"), parsed.get("Nats-Subject")
    if seq is None or not seq.isdigit() or not subject:
        assert stored is None
    else:
        assert stored is not None
        assert (stored.seq, stored.subject, stored.data) == (int(seq), subject, b"data")


@given(st.sampled_from([b"204 EOB", b"404 No Messages", b"408 Request Timeout", b"503"]), _BLOCKS)
def test_a_status_line_is_read_as_its_code(status: bytes, lines: list[tuple[bytes, bytes]]) -> None:
    header = b"NATS/1.0 " + status + b"\r\n" + _block(lines)
    assert directget._status(header) == status[:3].decode()
    assert directget._status(b"NATS/1.0\r\n" + _block(lines)) is None
    assert directget._status(None) is None
