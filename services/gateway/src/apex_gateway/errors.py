"""Every HTTP error is ``{"error": {"code", "message", "retryable"}}`` with the status of its code."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from apex_contracts import ApexError, ErrorCode, new_id
from apex_contracts.errors import CATALOGUE

log = logging.getLogger(__name__)


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
