"""``/auth/*`` on the gateway, passed through to the auth service (``APEX_AUTH_URL``), so
the chat page talks to one origin: no CORS, one address to publish.

The proxy is deliberately narrow: only ``/auth/`` paths, small bodies, an allow-list of
headers each way, and the caller's address appended to ``X-Forwarded-For`` so the auth
service's per-address throttles still see the person, not the gateway (set
``APEX_AUTH_FORWARDED_HOPS`` on auth to the number of proxies in front of it). When auth
does not answer, the caller gets the usual error body with ``service_unavailable``."""

from __future__ import annotations

import logging

import httpx
from fastapi import APIRouter, Request, Response

from apex_contracts import ErrorCode, InvalidInput, NotFound, Unavailable

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024
REQUEST_HEADERS = ("content-type", "authorization", "accept", "user-agent")
RESPONSE_HEADERS = ("content-type", "cache-control", "www-authenticate", "retry-after")

router = APIRouter(include_in_schema=False)


class AuthProxy:
    # longer than auth's own store deadlines (Postgres command timeout 10 s), so a store
    # outage reaches the user as auth's store_unavailable, not as a proxy timeout
    def __init__(self, auth_url: str, http: httpx.AsyncClient, timeout_s: float = 15.0) -> None:
        self.base = auth_url.rstrip("/")
        self.http = http
        self.timeout_s = timeout_s

    async def forward(self, request: Request, path: str) -> Response:
        if any(part in ("", ".", "..") for part in path.split("/")):
            raise NotFound("No such auth endpoint.")  # never let a path climb out of /auth/
        body = await _body(request)
        headers = {name: value for name in REQUEST_HEADERS if (value := request.headers.get(name))}
        peer = request.client.host if request.client else None
        chain = [part for part in (request.headers.get("x-forwarded-for"), peer) if part]
        if chain:
            headers["x-forwarded-for"] = ", ".join(chain)
        try:
            answer = await self.http.request(
                request.method,
                f"{self.base}/auth/{path}",
                params=request.query_params,
                content=body,
                headers=headers,
                timeout=self.timeout_s,
            )
        except httpx.HTTPError as exc:
            log.warning("auth proxy: %s /auth/%s failed: %r", request.method, path, exc)
            raise Unavailable(
                "The sign-in service is not answering; try again shortly.", code=ErrorCode.SERVICE_UNAVAILABLE
            ) from exc
        kept = {name: value for name in RESPONSE_HEADERS if (value := answer.headers.get(name))}
        return Response(content=answer.content, status_code=answer.status_code, headers=kept)


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise InvalidInput("The request body is too large.", code=ErrorCode.PAYLOAD_TOO_LARGE)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise InvalidInput("The request body is too large.", code=ErrorCode.PAYLOAD_TOO_LARGE)
    return body


@router.api_route("/auth/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def auth_passthrough(path: str, request: Request) -> Response:
    proxy: AuthProxy = request.app.state.auth_proxy
    return await proxy.forward(request, path)
