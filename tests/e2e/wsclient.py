"""A bare apex.v1 test client over a real WebSocket (no reconnect magic: tests see what
the server really sends)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from apex_contracts import TERMINAL


async def open_socket(url: str, token: str | None, **kwargs: Any) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await connect(url, subprotocols=["apex.v1"], additional_headers=headers, **kwargs)  # type: ignore[list-item]


async def recv(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[no-any-return]


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(frame).decode())


async def until_terminal(ws: ClientConnection, run_id: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every frame up to and including the run's terminal event."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            try:
                frame = await recv(ws, 10.0)
            except TimeoutError:
                # a slow run on a loaded machine: keep the socket from its idle timeout
                await send(ws, {"type": "ping"})
                continue
            frames.append(frame)
            if (
                frame.get("type") == "event"
                and frame["event"].get("run_id") == run_id
                and frame["event"]["type"] in TERMINAL
            ):
                return frames
