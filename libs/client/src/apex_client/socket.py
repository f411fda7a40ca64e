"""An ``apex.v1`` WebSocket client that survives drops: it reconnects with exponential
backoff and full jitter (``apex_client.backoff``), resubscribes each thread after the last seq it saw, and acks what it
processed, so the stream it yields has every event once, in order. It asks for events in
batches (``max_batch``: a replay or a burst comes in ``events`` frames, acked once each)
and yields them one by one, as ``event`` frames. Given a token source
(``ApexHttp.fresh_token``), it hands the gateway a new access token before the current
one expires (``session.refresh``), so a socket open for hours is never closed for it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from apex_client.backoff import Backoff
from apex_client.http import refresh_at
from apex_contracts import ApexError, ErrorCode
from apex_contracts.frames import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, PROTOCOL, event_frames

TokenSource = Callable[[], Awaitable[str]]
FATAL_CLOSE = {CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN}


class ApexSocket:
    def __init__(
        self,
        url: str,
        token: TokenSource | str,
        *,
        ack: bool = True,
        max_backoff_s: float = 10.0,
        max_batch: int = 100,
    ) -> None:
        self.url = url
        self.max_batch = max_batch
        self._token = token
        self.ack = ack
        self.max_backoff_s = max_backoff_s
        self.backoff = Backoff(cap_s=max_backoff_s)
        self.threads: dict[str, int] = {}
        self.session: dict[str, Any] | None = None
        self.reconnects = 0
        self._ws: ClientConnection | None = None
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._connected = asyncio.Event()

    async def __aenter__(self) -> ApexSocket:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ApexError):
                await self._task

    async def send(self, frame: dict[str, Any]) -> None:
        """Sends now if connected; otherwise after the next reconnect."""
        if frame.get("type") == "thread.subscribe":
            self.threads.setdefault(frame["thread_id"], int(frame.get("after_seq") or 0))
        if frame.get("type") in ("thread.subscribe", "message.send"):
            frame = {"max_batch": self.max_batch, **frame}
        await self._connected.wait()
        assert self._ws is not None
        try:
            await self._ws.send(orjson.dumps(frame).decode())
        except ConnectionClosed:
            self._outbox.append(frame)

    async def frames(self) -> AsyncIterator[dict[str, Any]]:
        """Every server frame, events deduplicated by seq per thread."""
        while True:
            frame = await self._inbox.get()
            if frame.get("type") == "__fatal__":
                raise ApexError.from_info(frame["error"])
            yield frame

    async def _token_value(self) -> str:
        return self._token if isinstance(self._token, str) else await self._token()

    async def _run(self) -> None:
        while not self._closed:
            try:
                token = await self._token_value()
                async with websockets.connect(
                    self.url,
                    subprotocols=[Subprotocol(PROTOCOL)],
                    additional_headers={"Authorization": f"Bearer {token}"},
                    max_size=2**24,
                    open_timeout=10,
                ) as ws:
                    self._ws = ws
                    self.backoff.reset()
                    refresher = asyncio.create_task(self._keep_token_fresh(ws, token))
                    try:
                        await self._session(ws)
                    finally:
                        refresher.cancel()
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                expired = exc.rcvd is not None and exc.rcvd.reason == ErrorCode.TOKEN_EXPIRED.value
                if expired and not isinstance(self._token, str):
                    pass  # e.g. a machine that slept past expiry: the token source gives a fresh one
                elif code in FATAL_CLOSE:
                    reason = exc.rcvd.reason if exc.rcvd else "closed"
                    self._fatal(
                        ErrorCode.TOKEN_INVALID if code == CLOSE_UNAUTHORIZED else ErrorCode.FORBIDDEN, reason
                    )
                    return
            except (OSError, InvalidStatus, TimeoutError):
                pass
            self._connected.clear()
            self._ws = None
            if self._closed:
                return
            self.reconnects += 1
            await asyncio.sleep(self.backoff.next_delay())

    def _fatal(self, code: ErrorCode, reason: str) -> None:
        self._inbox.put_nowait(
            {
                "type": "__fatal__",
                "error": {
                    "code": reason or code.value,
                    "message": f"connection refused: {reason}",
                    "retryable": False,
                },
            }
        )

    async def _session(self, ws: ClientConnection) -> None:
        ready = orjson.loads(await ws.recv())
        if self.session is not None and ready.get("epoch") != self.session.get("epoch"):
            self.threads = dict.fromkeys(self.threads, 0)  # another stream incarnation: seqs restart
        self.session = ready
        self._inbox.put_nowait(ready)
        for thread_id, last in self.threads.items():
            await self._subscribe(ws, thread_id, last)
        pending, self._outbox = self._outbox, []
        for frame in pending:
            await ws.send(orjson.dumps(frame).decode())
        self._connected.set()
        pinger = asyncio.create_task(self._ping(ws, int(ready.get("heartbeat_ms", 20_000)) / 1000))
        try:
            async for raw in ws:
                await self._receive(ws, orjson.loads(raw))
        finally:
            pinger.cancel()

    async def _subscribe(self, ws: ClientConnection, thread_id: str, after_seq: int) -> None:
        frame = {
            "type": "thread.subscribe",
            "thread_id": thread_id,
            "after_seq": after_seq,
            "max_batch": self.max_batch,
        }
        if self.session is not None:
            frame["epoch"] = self.session.get("epoch")
        await ws.send(orjson.dumps(frame).decode())

    async def _receive(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind in ("event", "events"):
            fresh = [each for each in event_frames(frame) if self._fresh(each)]
            for each in fresh:
                self._inbox.put_nowait(each)
            if fresh and self.ack:
                last = fresh[-1]
                ack = {"type": "event.ack", "thread_id": last["thread_id"], "seq": last["seq"]}
                await ws.send(orjson.dumps(ack).decode())
            return
        if kind == "message.accepted":
            self.threads.setdefault(frame["thread_id"], 0)
        elif kind == "error" and frame.get("code") == "resync_required" and frame.get("thread_id"):
            thread = frame["thread_id"]
            await self._subscribe(ws, thread, self.threads.get(thread, 0))
        self._inbox.put_nowait(frame)

    def _fresh(self, frame: dict[str, Any]) -> bool:
        """True for an event not seen yet (its seq is past the thread's last)."""
        thread, seq = frame["thread_id"], frame["seq"]
        if seq <= self.threads.get(thread, 0):
            return False
        self.threads[thread] = seq
        return True

    async def _keep_token_fresh(self, ws: ClientConnection, token: str) -> None:
        """Before the socket's token expires, asks the token source for a new one and
        sends it in-band. A static token is never refreshed."""
        if isinstance(self._token, str):
            return
        with contextlib.suppress(ConnectionClosed):
            while (due := refresh_at(token)) is not None:
                await asyncio.sleep(max(1.0, due - time.time()))
                fresh = await self._token_value()
                if fresh != token:
                    await ws.send(orjson.dumps({"type": "session.refresh", "token": fresh}).decode())
                    token = fresh

    @staticmethod
    async def _ping(ws: ClientConnection, every_s: float) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(max(1.0, every_s / 2))
                await ws.send('{"type":"ping"}')
