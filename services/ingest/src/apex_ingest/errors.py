"""Every HTTP error is ``{"error": {"code", "message", "retryable"}}`` with the status of
its code; an OTLP export sent as protobuf is answered with a ``google.rpc.Status`` in
protobuf instead, as OTLP/HTTP clients expect."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from apex_contracts import ApexError, ErrorCode, new_id
from apex_contracts.errors import CATALOGUE
from apex_ingest import otlp

log = logging.getLogger(__name__)
OTLP_PATHS = ("/v1/traces", "/api/v1/usage/otlp")
_AUTH_CODES = (
    ErrorCode.TOKEN_MISSING,
    ErrorCode.TOKEN_INVALID,
    ErrorCode.TOKEN_EXPIRED,
    ErrorCode.SESSION_REVOKED,
)


def error_body(code: ErrorCode, message: str, retryable: bool, **extra: object) -> dict[str, Any]:
    return {"error": {"code": code.value, "message": message, "retryable": retryable, **extra}}


def wants_protobuf(request: Request) -> bool:
    return request.url.path in OTLP_PATHS and "protobuf" in request.headers.get("content-type", "")


def respond(
    request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    if wants_protobuf(request):
        content, media = otlp.error_response("protobuf", status, body)
        return Response(content, status_code=status, media_type=media, headers=headers)
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApexError)
    async def apex_error(request: Request, exc: ApexError) -> Response:
        headers = {}
        details = exc.details or {}
        if "retry_after_ms" in details:
            headers["Retry-After"] = str(max(1, int(details["retry_after_ms"]) // 1000))
        if exc.code in _AUTH_CODES:
            headers["WWW-Authenticate"] = (
                f'Bearer error="invalid_token", error_description="{exc.code.value}"'
            )
        extra = {"details": details} if details else {}
        return respond(
            request, exc.status, error_body(exc.code, exc.message, exc.retryable, **extra), headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return respond(request, 422, error_body(ErrorCode.INVALID_REQUEST, message, False))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = {
            404: ErrorCode.NOT_FOUND,
            405: ErrorCode.INVALID_REQUEST,
            401: ErrorCode.TOKEN_MISSING,
            403: ErrorCode.FORBIDDEN,
        }.get(exc.status_code, ErrorCode.INVALID_REQUEST)
        body = error_body(code, str(exc.detail), CATALOGUE[code].retryable)
        return respond(request, exc.status_code, body)

    @app.exception_handler(Exception)
    async def defect(request: Request, exc: Exception) -> Response:
        ref = new_id("evt")
        log.error("unhandled error (ref %s)", ref, exc_info=exc)
        body = error_body(ErrorCode.INTERNAL_ERROR, "Something went wrong on our side.", True, ref=ref)
        return respond(request, 500, body)
