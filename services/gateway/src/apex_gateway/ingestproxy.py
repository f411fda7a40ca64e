"""Usage data in, passed through to the ingest service (``APEX_INGEST_URL``), which does
the work (issue 13): uploads (``POST /api/v1/usage``), OTLP traces (``POST
/api/v1/usage/otlp`` and the standard ``POST /v1/traces``) and the provider connectors
(``/api/v1/usage/connectors...``). The body streams through as it arrives (an upload of
any size is never held here), with the caller's token: ingest verifies it itself, so it
trusts no header the gateway adds. The answer comes back as ingest gave it. When ingest
does not answer, the caller gets the usual error body with ``service_unavailable``."""

from __future__ import annotations

import logging

import httpx
from fastapi import APIRouter, Request, Response

from apex_contracts import ErrorCode, Unavailable

log = logging.getLogger(__name__)
REQUEST_HEADERS = (
    "content-type",
    "content-encoding",
    "content-length",
    "authorization",
    "accept",
    "user-agent",
)
RESPONSE_HEADERS = ("content-type", "retry-after", "www-authenticate")
# an upload is read, checked and committed while it streams: minutes for the largest
TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=600.0, pool=10.0)

router = APIRouter(include_in_schema=False)


class IngestProxy:
    def __init__(self, ingest_url: str, http: httpx.AsyncClient) -> None:
        self.base = ingest_url.rstrip("/")
        self.http = http

    async def forward(self, request: Request, path: str) -> Response:
        headers = {name: value for name in REQUEST_HEADERS if (value := request.headers.get(name))}
        peer = request.client.host if request.client else None
        chain = [part for part in (request.headers.get("x-forwarded-for"), peer) if part]
        if chain:
            headers["x-forwarded-for"] = ", ".join(chain)
        outgoing = self.http.build_request(
            request.method,
            f"{self.base}{path}",
            params=request.query_params,
            content=request.stream() if request.method in ("POST", "PUT", "PATCH") else None,
            headers=headers,
            timeout=TIMEOUT,
        )
        try:
            answer = await self.http.send(outgoing)
        except httpx.HTTPError as exc:
            log.warning("ingest proxy: %s %s failed: %r", request.method, path, exc)
            raise Unavailable(
                "The ingest service is not answering; try again shortly.", code=ErrorCode.SERVICE_UNAVAILABLE
            ) from exc
        kept = {name: value for name in RESPONSE_HEADERS if (value := answer.headers.get(name))}
        return Response(content=answer.content, status_code=answer.status_code, headers=kept)


def _proxy(request: Request) -> IngestProxy:
    proxy: IngestProxy = request.app.state.ingest_proxy
    return proxy


@router.post("/api/v1/usage")
async def upload_usage(request: Request) -> Response:
    return await _proxy(request).forward(request, "/api/v1/usage")


@router.post("/api/v1/usage/otlp")
async def upload_otlp(request: Request) -> Response:
    return await _proxy(request).forward(request, "/api/v1/usage/otlp")


@router.post("/v1/traces")
async def otlp_traces(request: Request) -> Response:
    return await _proxy(request).forward(request, "/v1/traces")


@router.get("/api/v1/ingest/openapi.json")
async def ingest_openapi(request: Request) -> Response:
    """The ingest service's OpenAPI document: the upload, OTLP and connector endpoints."""
    return await _proxy(request).forward(request, "/api/v1/ingest/openapi.json")


@router.api_route("/api/v1/usage/connectors", methods=["GET"])
async def connectors(request: Request) -> Response:
    return await _proxy(request).forward(request, "/api/v1/usage/connectors")


@router.api_route("/api/v1/usage/connectors/{path:path}", methods=["GET", "PUT", "POST", "DELETE"])
async def connector(path: str, request: Request) -> Response:
    if any(part in ("", ".", "..") for part in path.split("/")):
        return Response(status_code=404)
    return await _proxy(request).forward(request, f"/api/v1/usage/connectors/{path}")
