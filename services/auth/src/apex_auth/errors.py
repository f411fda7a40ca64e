"""How every failure is answered over HTTP: ``{"error": {code, message, retryable}}``
with the status the error catalogue gives its code, never an HTML page or a stack."""

from __future__ import annotations

import logging
import math
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from apex_auth.audit import NATS_ERRORS
from apex_auth.db import STORE_ERRORS
from apex_contracts import (
    ApexError,
    AuthFailed,
    ErrorCode,
    InternalError,
    InvalidInput,
    NotFound,
    RateLimited,
    Unavailable,
)

log = logging.getLogger(__name__)

_BY_STATUS = {401: AuthFailed, 404: NotFound}


def error_response(exc: ApexError, status: int | None = None) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_ms / 1000)))
    elif exc.details and isinstance(exc.details.get("retry_after_ms"), int):
        headers["Retry-After"] = str(max(1, math.ceil(exc.details["retry_after_ms"] / 1000)))
    if isinstance(exc, AuthFailed) and exc.code is not ErrorCode.INVALID_CREDENTIALS:
        headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{exc.code}"'
    body = {"error": exc.info().model_dump(exclude_none=True)}
    return JSONResponse(body, status_code=status or exc.status, headers=headers)


async def _apex(_: Request, exc: Exception) -> JSONResponse:
    return error_response(exc if isinstance(exc, ApexError) else InternalError())


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    fields = [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", ""))}
        for error in errors
    ]
    return error_response(InvalidInput(details={"fields": fields}))


async def _http(_: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    kind = _BY_STATUS.get(status)
    if kind is not None:
        return error_response(kind())
    return error_response(InvalidInput(str(getattr(exc, "detail", ""))), status=status)


async def _store(_: Request, exc: Exception) -> JSONResponse:
    log.warning("store unavailable: %r", exc)
    return error_response(Unavailable(code=ErrorCode.STORE_UNAVAILABLE))


async def _driver(request: Request, exc: Exception) -> JSONResponse:
    """A driver error is an outage when it cost the connection, a defect otherwise."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return await _store(request, exc)
    return await _defect(request, exc)


async def _bus(_: Request, exc: Exception) -> JSONResponse:
    log.warning("bus unavailable: %r", exc)
    return error_response(Unavailable(code=ErrorCode.BUS_UNAVAILABLE))


async def _defect(request: Request, exc: Exception) -> JSONResponse:
    ref = uuid.uuid4().hex[:12]
    log.error("defect on %s %s (ref %s)", request.method, request.url.path, ref, exc_info=exc)
    return error_response(InternalError(details={"ref": ref}))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApexError, _apex)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(RedisError, _store)
    app.add_exception_handler(DBAPIError, _driver)
    for store_error in STORE_ERRORS:
        app.add_exception_handler(store_error, _store)
    for bus_error in NATS_ERRORS:
        # a bare TimeoutError on a request is Postgres's (its command timeout): the bus is
        # never waited on in a request, so it stays store_unavailable
        if issubclass(bus_error, Exception) and bus_error is not TimeoutError:
            app.add_exception_handler(bus_error, _bus)
    app.add_exception_handler(Exception, _defect)
