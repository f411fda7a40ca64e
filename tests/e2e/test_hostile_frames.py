"""Generated input against the live gateway (issue 12): thousands of frames of every client
type with any JSON value in any field, arbitrary JSON, raw text and bytes, over one real
socket; then generated handshake inputs. Each frame is answered with its normal answer or
a typed ``error`` (never ``internal_error``), the socket alive after each (a ``ping`` probe
after every frame must come back); each handshake ends in ``session.ready`` or a close
with 4400 / 4401 / 4403 / 4429 and a known reason, never 1011 or an abnormal close."""

from __future__ import annotations

import json
import string
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from apex_contracts import ErrorCode
from apex_contracts.frames import CLIENT_FRAME_TYPES, parse_server_frame
from tests.e2e.platform import Platform, User

pytestmark = pytest.mark.timeout(600)
TALLY = {"frames": 0, "handshakes": 0}
QUIET = settings(
    deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True, derandomize=False
)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=60)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)


class LiveSocket:
    """One socket for a whole test; ``exchange`` sends a frame then a ping probe and
    returns every frame that came back up to the probe's pong."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        assert json.loads(self.ws.recv(timeout=30))["type"] == "session.ready"
        self.probes = 0

    def exchange(self, payload: str | bytes) -> list[dict[str, Any]]:
        self.probes += 1
        probe = f"probe-{self.probes}"
        self.ws.send(payload)
        self.ws.send(json.dumps({"type": "ping", "ref": probe}))
        TALLY["frames"] += 1
        answers = []
        while True:
            try:
                text = self.ws.recv(timeout=60)
            except ConnectionClosed as closed:
                raise AssertionError(f"the socket closed after {payload!r}: {closed.rcvd}") from None
            frame = parse_server_frame(text).model_dump(exclude_none=True)
            if frame["type"] == "pong" and frame.get("ref") == probe:
                return answers
            answers.append(frame)


def drawn_id(prefix: str) -> st.SearchStrategy[str]:
    """A well-formed id of nothing (hypothesis draws it: no randomness of our own)."""
    return st.integers(min_value=0, max_value=2**128 - 1).map(lambda n: f"{prefix}_{_crockford(n)}")


def _crockford(n: int) -> str:
    """26 Crockford base-32 digits, as a ULID's body (n < 2**128 keeps the first digit <= 7)."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(alphabet[(n >> (5 * i)) & 31] for i in reversed(range(26)))


def frames_of(user_thread: str, user_run: str, token: str) -> st.SearchStrategy[dict[str, Any]]:
    """Every client frame type, each field a plausible value or any JSON value."""
    ids = drawn_id("thr") | st.just(user_thread)
    plausible = {
        "ref": st.text(max_size=120),
        "client_msg_id": st.sampled_from(["fuzz-1", "fuzz-2"]),  # at most two runs, whatever is drawn
        "text": st.text(min_size=1, max_size=80),
        "thread_id": ids,
        "after_seq": st.integers(min_value=-5, max_value=10**6) | st.just("cursor"),
        "epoch": st.text(max_size=30),
        "seq": st.integers(min_value=-5, max_value=10**6),
        "run_id": drawn_id("run") | st.just(user_run),
        "token": st.just(token) | st.text(max_size=200),
    }
    field = {name: value | JSON for name, value in plausible.items()}
    # message.send never posts into the user's real thread: a run per example would be too many
    field_send = {**field, "thread_id": drawn_id("thr") | JSON}
    kinds = []
    for kind in sorted(CLIENT_FRAME_TYPES):
        fields = field_send if kind == "message.send" else field
        kinds.append(st.fixed_dictionaries({"type": st.just(kind)}, optional=fields))
    return st.one_of(*kinds)


def assert_typed(answers: list[dict[str, Any]]) -> None:
    for frame in answers:
        if frame["type"] == "error":
            assert frame["code"] in {c.value for c in ErrorCode}, frame
            assert frame["code"] != ErrorCode.INTERNAL_ERROR, frame


@pytest.fixture(scope="module")
def fuzzed(hostile: Platform) -> tuple[User, str, str]:
    """A user with one real thread and run (so generated frames can hit real ones too)."""
    user = hostile.register()
    with connect(
        hostile.ws_url,
        subprotocols=["apex.v1"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {user.access_token}"},
    ) as ws:
        ws.recv(timeout=30)
        ws.send(json.dumps({"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": "spend?"}))
        while (accepted := json.loads(ws.recv(timeout=30)))["type"] != "message.accepted":
            pass
    return user, accepted["thread_id"], accepted["run_id"]


def test_any_frame_gets_a_typed_answer_and_the_socket_lives(
    hostile: Platform, fuzzed: tuple[User, str, str]
) -> None:
    user, thread_id, run_id = fuzzed
    with connect(
        hostile.ws_url,
        subprotocols=["apex.v1"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {user.access_token}"},
        max_size=2**24,
        ping_interval=None,  # the keepalive thread draws from `random` while hypothesis generates
    ) as ws:
        fuzz_one_socket(LiveSocket(ws), thread_id, run_id, user.access_token)
    print(f"\ngenerated frames sent over one live socket: {TALLY['frames']}")


def fuzz_one_socket(live: LiveSocket, thread_id: str, run_id: str, token: str) -> None:

    @settings(QUIET, max_examples=1400)
    @given(frames_of(thread_id, run_id, token))
    def typed_frames(frame: dict[str, Any]) -> None:
        assert_typed(live.exchange(json.dumps(frame)))

    @settings(QUIET, max_examples=500)
    @given(JSON)
    def any_json(value: Any) -> None:
        answers = live.exchange(json.dumps(value))
        assert_typed(answers)
        assert any(f["type"] == "error" for f in answers) or (
            isinstance(value, dict) and value.get("type") in CLIENT_FRAME_TYPES
        )

    @settings(QUIET, max_examples=300)
    @given(st.text(max_size=300) | st.binary(max_size=300))
    def raw(payload: str | bytes) -> None:
        assert_typed(live.exchange(payload))

    # the frames the issue was filed with, first
    for payload in ('{"type": []}', '{"type": {}}', '{"type": "ping", "ref": []}', "[]", "null", "1e999"):
        answers = live.exchange(payload)
        assert_typed(answers)
        assert [f["code"] for f in answers if f["type"] == "error"], payload
    typed_frames()
    any_json()
    raw()


TOKEN_CHARS = string.ascii_letters + string.digits + "-._~+/="
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E)
    | st.characters(min_codepoint=0xA0, max_codepoint=0xFF),
    max_size=120,
)
SUBPROTOCOL = st.text(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1, max_size=60)
REASONS = {
    c.value
    for c in (
        ErrorCode.TOKEN_MISSING,
        ErrorCode.TOKEN_INVALID,
        ErrorCode.TOKEN_EXPIRED,
        ErrorCode.SESSION_REVOKED,
        ErrorCode.ORIGIN_NOT_ALLOWED,
        ErrorCode.FORBIDDEN,
        ErrorCode.INVALID_HANDSHAKE,
        ErrorCode.TOO_MANY_CONNECTIONS,
    )
}


@st.composite
def handshakes(draw: st.DrawFn, token: str, origin: str) -> dict[str, Any]:
    credential = st.one_of(st.just(token), st.text(TOKEN_CHARS, max_size=80), HEADER_TEXT)
    headers: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(0, 2))):
        scheme = draw(st.sampled_from(["Bearer ", "bearer ", "Basic ", "", "Bearer  "]))
        headers.append(("Authorization", scheme + draw(credential)))
    if draw(st.booleans()):
        headers.append(("Origin", draw(st.just(origin) | HEADER_TEXT)))
    protocols = draw(
        st.lists(
            st.one_of(
                st.just("apex.v1"),
                st.builds(lambda t: "apex.bearer." + t, SUBPROTOCOL | st.just(token)),
                SUBPROTOCOL,
            ),
            max_size=3,
        )
    )
    query = ""
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(["ticket", "ticket", "x", "ticket[]"]))
        query += f"&{name}={quote(draw(st.text(max_size=60)), safe='')}"
    return {"headers": headers, "subprotocols": protocols, "query": query.lstrip("&")}


def test_any_handshake_input_gets_a_typed_refusal(hostile: Platform) -> None:
    user = hostile.register()

    @settings(QUIET, max_examples=400)
    @given(handshakes(user.access_token, hostile.gateway))
    def any_handshake(shake: dict[str, Any]) -> None:
        url = hostile.ws_url + (f"?{shake['query']}" if shake["query"] else "")
        TALLY["handshakes"] += 1
        try:
            with connect(
                url,
                subprotocols=shake["subprotocols"] or None,
                additional_headers=shake["headers"],
                ping_interval=None,
            ) as ws:
                try:
                    first = json.loads(ws.recv(timeout=30))
                except ConnectionClosed as closed:
                    assert closed.rcvd is not None, "closed without a close frame"
                    assert closed.rcvd.code in (4400, 4401, 4403, 4429), closed.rcvd
                    assert closed.rcvd.reason in REASONS, closed.rcvd
                    return
                assert first["type"] == "session.ready", first
        except InvalidHandshake as refused:  # refused as HTTP before the app (malformed upgrade)
            assert "500" not in str(refused), refused

    # the handshakes the issue was filed with, first
    for query, code in (("ticket=" + quote("éééé"), 4401), ("ticket=a&ticket=b", 4400), ("ticket=", 4401)):
        with connect(f"{hostile.ws_url}?{query}") as ws, pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code, (query, closed.value.rcvd)
    any_handshake()
    print(f"\ngenerated handshakes: {TALLY['handshakes']}")
