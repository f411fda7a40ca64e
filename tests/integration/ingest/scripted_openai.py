"""A scripted OpenAI-compatible chat completions server on loopback (non-streaming), for
clients no one here wrote: the ``openai`` package and its OpenTelemetry instrumentation.
Each request is answered with the next scripted ``Call`` (model, token counts with the
cached and reasoning details OpenAI reports, service tier)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from apex_runtime import serve_http


@dataclass(frozen=True)
class Call:
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    service_tier: str = "default"


class ScriptedOpenAI:
    def __init__(self, calls: list[Call]) -> None:
        self.calls = calls
        self.received: list[dict[str, object]] = []
        self._ids = itertools.count(1)

    def app(self) -> Starlette:
        async def completions(request: Request) -> JSONResponse:
            body = await request.json()
            self.received.append(body)
            call = self.calls[(len(self.received) - 1) % len(self.calls)]
            return JSONResponse(
                {
                    "id": f"chatcmpl-scripted-{next(self._ids)}",
                    "object": "chat.completion",
                    "created": 1767607200,
                    "model": call.model,
                    "service_tier": call.service_tier,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Scripted answer."},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": call.prompt_tokens,
                        "completion_tokens": call.completion_tokens,
                        "total_tokens": call.prompt_tokens + call.completion_tokens,
                        "prompt_tokens_details": {"cached_tokens": call.cached_tokens, "audio_tokens": 0},
                        "completion_tokens_details": {
                            "reasoning_tokens": call.reasoning_tokens,
                            "audio_tokens": 0,
                            "accepted_prediction_tokens": 0,
                            "rejected_prediction_tokens": 0,
                        },
                    },
                }
            )

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """Serves ``app`` on a free loopback port; yields its base URL."""
    server, task = await serve_http(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        for listener in server.servers:
            listener.close()
        server.should_exit = True
        await task
