"""Every HTTP error is ``{"error": {"code", "message", "retryable"}}`` with the status of its code."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from apex_contracts import ApexError, ErrorCode, new_id
from apex_contracts.errors import CATALOGUE

log = logging.getLogger(__name__)


class ErrorInfoBody(BaseModel):
    code: str
    message: str
    retryable: bool
    details: dict[str, Any] | None = None
    ref: str | None = None


class ErrorBody(BaseModel):
    """Every error answer of the HTTP API."""

    error: ErrorInfoBody


# The answers any route may give besides its own (declared on every router, so the
# OpenAPI document names them: tests/e2e/test_openapi_fuzz.py holds it to that).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "invalid_id and other malformed input"),
        (401, "token_missing, token_invalid, token_expired, session_revoked"),
        (403, "forbidden: the caller's role does not allow it"),
        (404, "not_found: does not exist for this caller"),
        (422, "invalid_request: a parameter or the body is not valid"),
        (429, "rate_limited"),
        (503, "a dependency is unavailable (retryable)"),
    )
}


def error_body(code: ErrorCode, message: str, retryable: bool, **extra: object) -> dict[str, object]:
    return {"error": {"code": code.value, "message": message, "retryable": retryable, **extra}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApexError)
    async def apex_error(_: Request, exc: ApexError) -> JSONResponse:
        headers = {}
        details = exc.details or {}
        if "retry_after_ms" in details:
            headers["Retry-After"] = str(max(1, int(details["retry_after_ms"]) // 1000))
        if exc.code in (
            ErrorCode.TOKEN_MISSING,
            ErrorCode.TOKEN_INVALID,
            ErrorCode.TOKEN_EXPIRED,
            ErrorCode.SESSION_REVOKED,
        ):
            headers["WWW-Authenticate"] = (
                f'Bearer error="invalid_token", error_description="{exc.code.value}"'
            )
        extra = {"details": details} if details else {}
        return JSONResponse(
            error_body(exc.code, exc.message, exc.retryable, **extra), status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return JSONResponse(error_body(ErrorCode.INVALID_REQUEST, message, False), status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {
            404: ErrorCode.NOT_FOUND,
            405: ErrorCode.INVALID_REQUEST,
            401: ErrorCode.TOKEN_MISSING,
            403: ErrorCode.FORBIDDEN,
        }.get(exc.status_code, ErrorCode.INVALID_REQUEST)
        return JSONResponse(
            error_body(code, str(exc.detail), CATALOGUE[code].retryable), status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def defect(_: Request, exc: Exception) -> JSONResponse:
        ref = new_id("evt")
        log.error("unhandled error (ref %s)", ref, exc_info=exc)
        return JSONResponse(
            error_body(ErrorCode.INTERNAL_ERROR, "Something went wrong on our side.", True, ref=ref),
            status_code=500,
        )
