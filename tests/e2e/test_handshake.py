"""Refused handshakes close with 4401 / 4403 and a reason, never 1011."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.platform import Platform
from tests.e2e.wsclient import open_socket, recv


async def _close_of(platform: Platform, token: str | None, **kwargs: object) -> tuple[int, str]:
    ws = await open_socket(platform.ws_url, token, **kwargs)
    with pytest.raises(ConnectionClosed) as closed:
        await recv(ws)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "token_missing"),
        ("garbage", "token_invalid"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "token_invalid"),
    ],
)
async def test_bad_tokens_close_with_4401(platform: Platform, token: str | None, reason: str) -> None:
    assert await _close_of(platform, token) == (4401, reason)


async def test_foreign_origin_closes_with_4403(platform: Platform) -> None:
    user = platform.register()
    code, reason = await _close_of(platform, user.access_token, origin="https://evil.example")  # type: ignore[arg-type]
    assert (code, reason) == (4403, "origin_not_allowed")


async def test_token_in_subprotocol_is_accepted(platform: Platform) -> None:
    from websockets.asyncio.client import connect

    user = platform.register()
    ws = await connect(platform.ws_url, subprotocols=["apex.v1", f"apex.bearer.{user.access_token}"])  # type: ignore[list-item]
    assert ws.subprotocol == "apex.v1"
    assert (await recv(ws))["type"] == "session.ready"
    await ws.close()
