"""The ``/ws`` handshake: read the handshake inputs into a typed ``Handshake`` (token from
header, subprotocol or ticket; origin), check the origin, accept, verify the token and
session, take a slot in the user's shared connection count, then hand over to the
connection. A refusal is a close with 4400 / 4401 / 4403 / 4429 and a reason code, never
1011: any value of any handshake input is one of those answers (property-tested)."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs

from pydantic import Field, ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from apex_contracts import ApexError, AuthFailed, ErrorCode, InvalidInput, new_id
from apex_contracts.envelope import Model
from apex_contracts.frames import (
    BEARER_SUBPROTOCOL_PREFIX,
    CLOSE_BAD_HANDSHAKE,
    CLOSE_FORBIDDEN,
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_MANY,
    CLOSE_UNAUTHORIZED,
    PROTOCOL,
    ErrorFrame,
)
from apex_gateway.services import GatewayServices
from apex_gateway.tokens import Principal
from apex_gateway.ws.connection import Connection

log = logging.getLogger(__name__)
TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_\-.=]+$")
TICKET_CHARS = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")


class Handshake(Model):
    """What a client brings to ``/ws``, each input checked before it is used."""

    token: str | None = Field(default=None, max_length=8192)
    ticket: str | None = Field(default=None, max_length=1000)
    origin: str | None = Field(default=None, max_length=2000)


def read_handshake(ws: WebSocket) -> Handshake:
    """Raises InvalidInput (4400) for inputs that cannot mean one thing: several
    tickets, tokens or Authorization headers, a ticket beside a token, a non-Bearer
    Authorization, an unreadable query."""
    try:
        query = parse_qs(ws.scope.get("query_string", b"").decode("ascii"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _malformed("The query string is not readable.") from exc
    tickets = query.get("ticket", [])
    authorizations = ws.headers.getlist("authorization")
    bearers = [
        p[len(BEARER_SUBPROTOCOL_PREFIX) :]
        for p in ws.scope.get("subprotocols", [])
        if p.startswith(BEARER_SUBPROTOCOL_PREFIX)
    ]
    if len(tickets) > 1 or len(authorizations) > 1 or len(bearers) > 1:
        raise _malformed("Send one ticket or one token, once.")
    tokens = bearers
    if authorizations:
        scheme, _, credentials = authorizations[0].strip().partition(" ")
        if scheme.lower() != "bearer":
            raise _malformed("Authorization must be 'Bearer <token>'.")
        tokens = [credentials.strip(), *bearers]
    if len(tokens) > 1 or (tokens and tickets):
        raise _malformed("Send one ticket or one token, not several.")
    origins = ws.headers.getlist("origin")
    if len(origins) > 1:
        raise _malformed("Send one Origin header.")
    try:
        return Handshake(
            token=tokens[0] if tokens else None,
            ticket=tickets[0] if tickets else None,
            origin=origins[0] if origins else None,
        )
    except ValidationError as exc:
        raise _malformed("A handshake input is too long.") from exc


def _malformed(message: str) -> InvalidInput:
    return InvalidInput(message, code=ErrorCode.INVALID_HANDSHAKE)


async def _principal(handshake: Handshake, services: GatewayServices) -> Principal:
    if handshake.ticket is not None:
        if not TICKET_CHARS.match(handshake.ticket):
            raise AuthFailed("The ticket is unknown, used or expired.", code=ErrorCode.TOKEN_INVALID)
        principal = await services.tickets.redeem(handshake.ticket)
        if await services.revocations.is_revoked(principal.session_id):
            raise AuthFailed("This session was signed out.", code=ErrorCode.SESSION_REVOKED)
        return principal
    token = handshake.token
    if token and not TOKEN_CHARS.match(token):
        raise AuthFailed("The access token is malformed.", code=ErrorCode.TOKEN_INVALID)
    return await services.verifier.verify(token)


async def websocket_endpoint(ws: WebSocket) -> None:
    services: GatewayServices = ws.app.state.services
    offered = ws.scope.get("subprotocols", [])
    await ws.accept(subprotocol=PROTOCOL if PROTOCOL in offered else None)
    if services.health.stopping:
        await _refuse(ws, services, CLOSE_SERVICE_RESTART, ErrorCode.SHUTTING_DOWN.value)
        return
    try:
        handshake = read_handshake(ws)
        if handshake.origin is not None and not _origin_allowed(handshake.origin, ws, services):
            await _refuse(ws, services, CLOSE_FORBIDDEN, ErrorCode.ORIGIN_NOT_ALLOWED.value)
            return
        principal = await _principal(handshake, services)
    except InvalidInput as exc:
        await _refuse(ws, services, CLOSE_BAD_HANDSHAKE, exc.code.value)
        return
    except AuthFailed as exc:
        await _refuse(ws, services, CLOSE_UNAUTHORIZED, exc.code.value)
        return
    conn = Connection(ws, principal, services)
    if not await services.limits.admit(principal.user_id, conn.member):
        await _refuse(ws, services, CLOSE_TOO_MANY, ErrorCode.TOO_MANY_CONNECTIONS.value)
        return
    services.connections.add(conn)
    services.metrics.connections.inc()
    services.metrics.connects.labels("accepted").inc()
    try:
        await conn.serve()
    except WebSocketDisconnect as exc:
        services.metrics.closes.labels(str(exc.code)).inc()
    except ApexError as exc:
        log.warning("connection %s ended by %s: %s", conn.id, exc.code, exc.message)
    except Exception:  # the one boundary where a defect must not vanish silently
        ref = new_id("evt")
        log.exception("connection %s failed (ref %s)", conn.id, ref)
        await _report_defect(ws, ref)
    finally:
        services.connections.remove(conn)
        services.metrics.connections.dec()
        await services.limits.release(principal.user_id, conn.member)


def _origin_allowed(origin: str, ws: WebSocket, services: GatewayServices) -> bool:
    """Listed origins, and the gateway's own origin (the page it serves), are allowed.
    A browser always sends the Host it connects to, so another site cannot pass as us."""
    if origin in services.settings.allowed_origins:
        return True
    host = ws.headers.get("host")
    return host is not None and origin in (f"http://{host}", f"https://{host}")


async def _refuse(ws: WebSocket, services: GatewayServices, code: int, reason: str) -> None:
    services.metrics.connects.labels(reason).inc()
    try:
        await ws.close(code=code, reason=reason)
    except RuntimeError:
        log.debug("socket already closed before refusal %s", reason)


async def _report_defect(ws: WebSocket, ref: str) -> None:
    frame = ErrorFrame(
        code=ErrorCode.INTERNAL_ERROR.value,
        message="Something went wrong on our side.",
        retryable=True,
        incident=ref,
    )
    try:
        await ws.send_text(frame.model_dump_json(exclude_none=True))
        await ws.close(code=1011, reason="internal_error")
    except (RuntimeError, WebSocketDisconnect):
        log.debug("could not report defect %s to the client", ref)
