"""A client for any OpenAI-compatible chat completions endpoint: tool calling, streamed
text (server-sent events), retries with exponential backoff (429, 5xx, timeouts, broken
connections; ``Retry-After`` honoured), a timeout per attempt, and a circuit breaker per
provider that refuses calls while the provider keeps failing.

Errors are typed: ``Unavailable(llm_unavailable)`` (the provider failed every attempt,
or its breaker is open), ``DeadlineExceeded(llm_timeout)`` and
``ApexError(llm_bad_response)`` (an answer that is not a chat completion, or a server
that refuses the request as invalid: never retried, so never an HTTP error loop).

The dialect is the one llama.cpp, vLLM, Ollama and LiteLLM's proxy all accept: an
assistant tool-call turn goes back with ``content`` an empty string, never null
(``llm.agents.assistant_turn``); a streamed tool call without an id gets one.

Each call is a ``chat <model>`` span (GenAI semantic conventions) covering its retries,
with the tokens used and, on failure, ``error.type`` = the error's code."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from opentelemetry.trace import SpanKind, Tracer

from apex_contracts import ApexError, DeadlineExceeded, ErrorCode, Unavailable
from apex_runtime import CircuitBreaker, CircuitOpen, tracing

_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
TextSink = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class LlmConfig:
    base_url: str
    model: str
    api_key: str | None = None
    max_tokens: int | None = None
    timeout_s: float = 20.0
    connect_timeout_s: float = 5.0
    max_attempts: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    breaker_threshold: int = 3
    breaker_reset_s: float = 30.0

    @property
    def provider(self) -> str:
        """The breaker's key: the endpoint's host (one provider, one breaker)."""
        return urlsplit(self.base_url).netloc or self.base_url


@dataclass
class ToolRequest:
    id: str
    name: str
    arguments: str


@dataclass
class Completion:
    text: str = ""
    tool_calls: list[ToolRequest] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    usage_reported: bool = False

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Breakers:
    """One circuit breaker per provider, shared by every step of the process."""

    def __init__(self, threshold: int, reset_after_s: float) -> None:
        self._threshold = threshold
        self._reset_after_s = reset_after_s
        self._breakers: dict[str, CircuitBreaker] = {}

    def use(self, provider: str, breaker: CircuitBreaker) -> None:
        self._breakers[provider] = breaker

    def of(self, provider: str) -> CircuitBreaker:
        if provider not in self._breakers:
            self._breakers[provider] = CircuitBreaker(
                f"language model at {provider}",
                threshold=self._threshold,
                reset_after_s=self._reset_after_s,
                code=ErrorCode.LLM_UNAVAILABLE,
            )
        return self._breakers[provider]


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after_s: float | None = None, timeout: bool = False) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s
        self.timeout = timeout


class ChatClient:
    def __init__(
        self,
        config: LlmConfig,
        http: httpx.AsyncClient,
        breakers: Breakers,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tracer: Tracer | None = None,
    ) -> None:
        self.config = config
        self._http = http
        self.breaker = breakers.of(config.provider)
        self._sleep = sleep
        self._tracer = tracer
        self.attempts = 0

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        on_text: TextSink | None = None,
        on_restart: Callable[[], Awaitable[None]] | None = None,
    ) -> Completion:
        """One chat completion, streamed; ``on_text`` gets each text chunk, ``on_restart``
        is called before a retry that follows partly streamed text."""
        host = urlsplit(self.config.base_url)
        attributes: dict[str, str | int] = {
            tracing.OPERATION: "chat",
            tracing.REQUEST_MODEL: self.config.model,
            # the API spoken: every OpenAI-compatible endpoint is called the same way
            tracing.PROVIDER: "openai",
            "server.address": host.hostname or self.config.provider,
        }
        if host.port:
            attributes["server.port"] = host.port
        with tracing.span(
            f"chat {self.config.model}", kind=SpanKind.CLIENT, attributes=attributes, using=self._tracer
        ) as current:
            completion = await self._complete(messages, tools, tool_choice, on_text, on_restart)
            current.set_attributes(
                {
                    tracing.INPUT_TOKENS: completion.prompt_tokens,
                    tracing.OUTPUT_TOKENS: completion.completion_tokens,
                    tracing.FINISH_REASONS: [completion.finish_reason or "unknown"],
                }
            )
            return completion

    async def _complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        tool_choice: Any,
        on_text: TextSink | None,
        on_restart: Callable[[], Awaitable[None]] | None,
    ) -> Completion:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.config.max_tokens:
            body["max_tokens"] = self.config.max_tokens
        if tools:
            body["tools"] = tools
            if tool_choice is not None:
                body["tool_choice"] = tool_choice
        last: _Retryable | None = None
        for attempt in range(self.config.max_attempts):
            self.breaker.check()  # raises CircuitOpen (llm_unavailable): the caller falls back
            sink = _Sink(on_text)
            try:
                self.attempts += 1
                completion = await self._attempt(body, sink.write)
            except _Retryable as exc:
                last = exc
                self.breaker.failure()
                if attempt + 1 < self.config.max_attempts and self.breaker.state == "closed":
                    if sink.streamed and on_restart is not None:
                        await on_restart()
                    await self._sleep(self._delay(attempt, exc.retry_after_s))
                    continue
                break
            self.breaker.success()
            return completion
        assert last is not None
        if self.breaker.state != "closed":
            raise CircuitOpen(
                f"{self.breaker.name} failed repeatedly ({last})", code=ErrorCode.LLM_UNAVAILABLE
            )
        if last.timeout:
            raise DeadlineExceeded(
                f"The language model did not answer in time ({last}).", code=ErrorCode.LLM_TIMEOUT
            )
        raise Unavailable(
            f"The language model failed every attempt ({last}).", code=ErrorCode.LLM_UNAVAILABLE
        )

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, self.config.max_backoff_s)
        base: float = min(self.config.backoff_s * 2**attempt, self.config.max_backoff_s)
        return base * random.uniform(0.8, 1.2)  # jitter, so retries of many steps spread out

    async def _attempt(self, body: dict[str, Any], sink: TextSink) -> Completion:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        timeout = httpx.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s)
        try:
            async with (
                asyncio.timeout(self.config.timeout_s),
                self._http.stream(
                    "POST", url, content=orjson.dumps(body), headers=headers, timeout=timeout
                ) as response,
            ):
                if response.status_code in _RETRY_STATUS:
                    text = (await response.aread()).decode(errors="replace")
                    if _refuses_request(text):
                        # the same request would fail the same way: not a provider outage
                        raise ApexError(
                            f"The language model's server refused the request: HTTP {response.status_code} "
                            f"{text[:300]}",
                            code=ErrorCode.LLM_BAD_RESPONSE,
                            retryable=False,
                        )
                    raise _Retryable(f"HTTP {response.status_code}", _retry_after(response))
                if response.status_code >= 400:
                    text = (await response.aread()).decode(errors="replace")[:300]
                    raise ApexError(
                        f"The language model refused the request: HTTP {response.status_code} {text}",
                        code=ErrorCode.LLM_BAD_RESPONSE,
                        retryable=False,
                    )
                if "json" in response.headers.get(
                    "content-type", ""
                ) and "event-stream" not in response.headers.get("content-type", ""):
                    completion = _from_json(orjson.loads(await response.aread()))
                    await sink(completion.text)
                else:
                    completion = await _from_stream(response, sink)
                if not completion.usage_reported:
                    _estimate_usage(completion, body)
                return completion
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _Retryable(f"no answer within {self.config.timeout_s:.0f} s", timeout=True) from exc
        except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
            raise _Retryable(f"connection failed: {exc!r}") from exc


class _Sink:
    """Passes streamed text on and remembers whether any was passed."""

    def __init__(self, on_text: TextSink | None) -> None:
        self._on_text = on_text
        self.streamed = False

    async def write(self, chunk: str) -> None:
        if chunk:
            self.streamed = True
            if self._on_text is not None:
                await self._on_text(chunk)


_REFUSAL = ("validation error", "must be a string", "literal_error", "invalid request", "unprocessable")


def _refuses_request(body: str) -> bool:
    """A 5xx answer that says the request itself is invalid (llama.cpp's server answers a
    schema error with 500): retrying it would only open the breaker."""
    lowered = body[:2000].lower()
    return any(word in lowered for word in _REFUSAL)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


async def _from_stream(response: httpx.Response, sink: TextSink) -> Completion:
    completion = Completion()
    calls: dict[int, ToolRequest] = {}
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            break
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ApexError(
                f"The language model streamed something that is not JSON: {payload[:80]!r}",
                code=ErrorCode.LLM_BAD_RESPONSE,
            ) from exc
        _usage(completion, chunk.get("usage"))
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                completion.text += delta["content"]
                await sink(delta["content"])
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(int(call.get("index", len(calls))), ToolRequest("", "", ""))
                slot.id = call.get("id") or slot.id
                function = call.get("function") or {}
                slot.name += function.get("name") or ""
                slot.arguments += function.get("arguments") or ""
            completion.finish_reason = choice.get("finish_reason") or completion.finish_reason
    for index, call in calls.items():
        call.id = call.id or f"call_{index}"  # some servers stream no id: the echo needs one
    completion.tool_calls = [calls[i] for i in sorted(calls)]
    return completion


def _from_json(body: dict[str, Any]) -> Completion:
    """A non-streamed answer (some compatible servers ignore ``stream``)."""
    try:
        message = body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ApexError(
            "The language model answered without a message.", code=ErrorCode.LLM_BAD_RESPONSE
        ) from exc
    completion = Completion(
        text=message.get("content") or "", finish_reason=body["choices"][0].get("finish_reason")
    )
    completion.tool_calls = [
        ToolRequest(
            c.get("id", ""),
            (c.get("function") or {}).get("name", ""),
            (c.get("function") or {}).get("arguments", ""),
        )
        for c in message.get("tool_calls") or []
    ]
    _usage(completion, body.get("usage"))
    return completion


def _usage(completion: Completion, usage: Any) -> None:
    if isinstance(usage, dict):
        completion.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion.completion_tokens = int(usage.get("completion_tokens") or 0)
        completion.usage_reported = True


_CHARS_PER_TOKEN = 4


def _estimate_usage(completion: Completion, body: dict[str, Any]) -> None:
    """Tokens of a server that reports no usage (llama.cpp's streams none), at about four
    characters a token, so the run's token budget still holds."""
    sent = len(orjson.dumps(body.get("messages"))) + len(orjson.dumps(body.get("tools") or []))
    said = len(completion.text) + sum(len(c.name) + len(c.arguments) for c in completion.tool_calls)
    completion.prompt_tokens = max(1, sent // _CHARS_PER_TOKEN)
    completion.completion_tokens = max(1, said // _CHARS_PER_TOKEN)
