"""A scripted OpenAI-compatible chat completions server on loopback: real HTTP/1.1 with
keep-alive, server-sent event streams, status codes and stalls. Each request is handed
to the test's ``script``, which answers with one of the replies below."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Stream:
    """A streamed completion: text chunks and/or tool calls, then usage. With ``hold``, the
    stream stops after ``hold_after`` text chunks until the test sets it (a model caught
    mid-answer)."""

    text: list[str] = field(default_factory=list)
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, arguments)
    prompt_tokens: int = 100
    completion_tokens: int = 20
    hold: asyncio.Event | None = None
    hold_after: int = 0


@dataclass
class Status:
    code: int
    retry_after_s: float | None = None
    message: str = "scripted"


@dataclass
class Stall:
    """Accepts the request and never answers (the client's timeout must fire)."""

    seconds: float = 30.0


Reply = Stream | Status | Stall
Script = Callable[[dict[str, Any]], Awaitable[Reply] | Reply]


class ScriptedLLM:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self._server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/v1"

    async def __aenter__(self) -> ScriptedLLM:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                reply = self.script(request)
                if asyncio.iscoroutine(reply):
                    reply = await reply
                await _write(writer, reply)  # type: ignore[arg-type]
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return None
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    request: dict[str, Any] = orjson.loads(body) if body else {}
    request["_path"] = lines[0].split(" ")[1]
    request["_auth"] = headers.get("authorization")
    return request


async def _write(writer: asyncio.StreamWriter, reply: Reply) -> None:
    if isinstance(reply, Stall):
        await asyncio.sleep(reply.seconds)
        return
    if isinstance(reply, Status):
        extra = f"Retry-After: {reply.retry_after_s}\r\n" if reply.retry_after_s is not None else ""
        body = orjson.dumps({"error": {"message": reply.message, "code": reply.code}})
        writer.write(
            f"HTTP/1.1 {reply.code} Scripted\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        return
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    for n, event in enumerate(_events(reply)):
        if reply.hold is not None and n == reply.hold_after + 1:  # the role chunk comes first
            await reply.hold.wait()
        data = b"data: " + event + b"\n\n"
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


def _events(reply: Stream) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return orjson.dumps(
            {
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": text}) for text in reply.text]
    for index, (call_id, name, arguments) in enumerate(reply.tool_calls):
        half = len(arguments) // 2  # arguments arrive in pieces, as real servers send them
        out.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": arguments[:half]},
                        }
                    ]
                }
            )
        )
        out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]}))
    out.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
    out.append(
        orjson.dumps(
            {
                "choices": [],
                "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens},
            }
        )
    )
    out.append(b"[DONE]")
    return out


def role(request: dict[str, Any]) -> str:
    """Which agent is asking: triage (the classify tool), data helper (analysis tools) or writer."""
    names = {t["function"]["name"] for t in request.get("tools") or []}
    if "classify_question" in names:
        return "triage"
    return "data_helper" if names else "writer"


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m.get("role") == "tool"]
