"""A scripted OpenAI-compatible streaming server on loopback for the token-streaming
benchmark (its own process, so the clients' work does not pace it): real HTTP/1.1 with
keep-alive and server-sent event streams, like tests/integration/agents/scripted_llm.py.

- triage (the request offers ``classify_question``): classifies the question as ``cost``;
- data helper (other tools offered): answers without tool calls (the plan's calls run);
- writer (no tools): waits until ``--streams`` writers have asked (or ``--barrier-s``
  passed since the first), so that the streams run at the same time, then streams
  ``--deltas`` text chunks, one every ``--interval-ms``, on an absolute schedule.

Each chunk is long enough to be published as one ``message.delta`` (the agents coalesce
below 48 characters) and starts with the moment it was written to the socket, in
microseconds, spelled in letters (``[bcdhaj...]``): the report's figure validator refuses
digits the report does not hold, and the client measures model-to-screen latency from it.

``GET /stats`` answers how many writers were released together, in JSON.

``python -m bench.llm_server --port P --streams N --deltas K [--interval-ms 20]``"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from typing import Any

import orjson

LETTERS = str.maketrans("0123456789", "abcdefghij")
FILLER = " spend concentrates in a few models and workloads."


def stamp() -> str:
    return str(time.time_ns() // 1000).translate(LETTERS)


def read_stamp(text: str) -> float | None:
    """The moment (seconds since the epoch) a chunk was sent, from its text."""
    start = text.find("[")
    end = text.find("]", start)
    if start < 0 or end < 0:
        return None
    digits = text[start + 1 : end].translate(str.maketrans("abcdefghij", "0123456789"))
    return int(digits) / 1e6 if digits.isdigit() else None


def read_stamps(text: str) -> list[float]:
    """The moments the chunks a text is made of were sent (a delta may carry several:
    the agent coalesces what arrives while the log stores the previous one)."""
    found = []
    for digits in re.findall(r"\[([a-j]+)\]", text):
        found.append(int(digits.translate(str.maketrans("abcdefghij", "0123456789"))) / 1e6)
    return found


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return orjson.dumps(body)


class Script:
    def __init__(self, streams: int, deltas: int, interval_s: float, barrier_s: float) -> None:
        self.streams = streams
        self.deltas = deltas
        self.interval_s = interval_s
        self.barrier_s = barrier_s
        self.waiting: list[asyncio.Future[None]] = []
        self.released: list[int] = []
        self.requests: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.waiting:
            self.released.append(len(self.waiting))
        for future in self.waiting:
            if not future.done():
                future.set_result(None)
        self.waiting = []

    async def barrier(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        if len(self.waiting) >= self.streams:
            self._release()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.barrier_s, self._release)
        await future

    async def answer(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        names = {t["function"]["name"] for t in request.get("tools") or []}
        role = "triage" if "classify_question" in names else "data_helper" if names else "writer"
        self.requests[role] = self.requests.get(role, 0) + 1
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        await _send(writer, _chunk({"role": "assistant", "content": ""}))
        if role == "triage":
            call = {
                "index": 0,
                "id": "c1",
                "type": "function",
                "function": {"name": "classify_question", "arguments": '{"intent": "cost"}'},
            }
            await _send(writer, _chunk({"tool_calls": [call]}))
            await _send(writer, _chunk({}, "tool_calls"))
        elif role == "data_helper":
            await _send(writer, _chunk({"content": "done"}))
            await _send(writer, _chunk({}, "stop"))
        else:
            await self.barrier()
            started = time.monotonic()
            for n in range(self.deltas):
                delay = started + n * self.interval_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await _send(writer, _chunk({"content": f"[{stamp()}]{FILLER}"}))
            await _send(writer, _chunk({}, "stop"))
        await _send(
            writer, orjson.dumps({"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 20}})
        )
        await _send(writer, b"[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not reader.at_eof():
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if lines[0].startswith("GET /stats"):
                    stats = orjson.dumps({"released_together": self.released, "requests": self.requests})
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(stats)}\r\n\r\n".encode()
                        + stats
                    )
                    await writer.drain()
                    continue
                await self.answer(orjson.loads(body) if body else {}, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


async def _send(writer: asyncio.StreamWriter, event: bytes) -> None:
    data = b"data: " + event + b"\n\n"
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


async def main(args: argparse.Namespace) -> None:
    script = Script(args.streams, args.deltas, args.interval_ms / 1000, args.barrier_s)
    server = await asyncio.start_server(script.serve, "127.0.0.1", args.port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.llm_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--deltas", type=int, default=250)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--barrier-s", type=float, default=30.0)
    try:
        import uvloop

        uvloop.run(main(parser.parse_args()))
    except ImportError:
        asyncio.run(main(parser.parse_args()))
