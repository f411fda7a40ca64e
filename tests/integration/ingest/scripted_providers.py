"""Scripted providers' usage APIs on loopback, answering in the shapes their documentation
gives, paging included:

- OpenAI ``GET /v1/organization/usage/completions`` (admin key as a Bearer token):
  ``{object: "page", data: [{object: "bucket", start_time, end_time, results: [{object:
  "organization.usage.completions.result", input_tokens, output_tokens,
  input_cached_tokens, num_model_requests, project_id, model, batch, service_tier...}]}],
  has_more, next_page}``;
- Anthropic ``GET /v1/organizations/usage_report/messages`` (``x-api-key``,
  ``anthropic-version``): ``{data: [{starting_at, ending_at, results: [{uncached_input_tokens,
  cache_creation: {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens},
  cache_read_input_tokens, output_tokens, server_tool_use, model, workspace_id,
  service_tier, ...}]}], has_more, next_page}``.

Daily buckets from the request's window, at most ``page_size`` per page (a next_page
cursor for the rest). A test scripts failures (status and headers, answered in turn),
a delay per request, and reads what was asked and how many requests ran at once."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class ScriptedUsage:
    key: str
    page_size: int = 2
    delay_s: float = 0.0
    usage: dict[datetime, list[dict[str, Any]]] = field(default_factory=dict)  # day -> results
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    asked: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    most_at_once: int = 0

    async def _guard(self, request: Request, key: str | None) -> JSONResponse | None:
        self.asked.append({k: request.query_params.getlist(k) for k in request.query_params})
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        if self.failures:
            status, headers = self.failures.pop(0)
            return JSONResponse(
                {"error": {"type": "scripted", "message": "scripted"}}, status, headers=headers
            )
        if key != self.key:
            return JSONResponse({"error": {"type": "authentication_error", "message": "invalid key"}}, 401)
        return None

    def _days(self, start: datetime, end: datetime, page: str | None) -> tuple[list[datetime], str | None]:
        first = datetime.fromisoformat(base64.b64decode(page).decode()) if page else day(start)
        days = []
        current = first
        while current < end and len(days) < self.page_size:
            days.append(current)
            current += timedelta(days=1)
        cursor = base64.b64encode(current.isoformat().encode()).decode() if current < end else None
        return days, cursor


class ScriptedOpenAIUsage(ScriptedUsage):
    def app(self) -> Starlette:
        async def completions(request: Request) -> JSONResponse:
            auth = request.headers.get("authorization", "")
            refused = await self._guard(
                request, auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
            )
            if refused is not None:
                return refused
            start = datetime.fromtimestamp(int(request.query_params["start_time"]), UTC)
            end = datetime.fromtimestamp(int(request.query_params["end_time"]), UTC)
            days, cursor = self._days(start, end, request.query_params.get("page"))
            data = [
                {
                    "object": "bucket",
                    "start_time": int(d.timestamp()),
                    "end_time": int((d + timedelta(days=1)).timestamp()),
                    "results": [
                        {"object": "organization.usage.completions.result", **r}
                        for r in self.usage.get(d, [])
                    ],
                }
                for d in days
            ]
            return JSONResponse(
                {"object": "page", "data": data, "has_more": cursor is not None, "next_page": cursor}
            )

        return Starlette(routes=[Route("/v1/organization/usage/completions", completions)])


class ScriptedAnthropicUsage(ScriptedUsage):
    def app(self) -> Starlette:
        async def messages(request: Request) -> JSONResponse:
            if request.headers.get("anthropic-version") != "2023-06-01":
                return JSONResponse({"error": {"type": "invalid_request_error"}}, 400)
            refused = await self._guard(request, request.headers.get("x-api-key"))
            if refused is not None:
                return refused
            start = datetime.fromisoformat(request.query_params["starting_at"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(request.query_params["ending_at"].replace("Z", "+00:00"))
            days, cursor = self._days(start, end, request.query_params.get("page"))
            data = [
                {
                    "starting_at": d.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "ending_at": (d + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "results": self.usage.get(d, []),
                }
                for d in days
            ]
            return JSONResponse({"data": data, "has_more": cursor is not None, "next_page": cursor})

        return Starlette(routes=[Route("/v1/organizations/usage_report/messages", messages)])
