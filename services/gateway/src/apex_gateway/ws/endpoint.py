"""The ``/ws`` handshake: find the token (header, subprotocol or ticket), check the
origin, accept, verify the token and session, then hand over to the connection. A refusal
is a close with 4401 / 4403 and a reason code, never 1011."""

from __future__ import annotations

import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from apex_contracts import ApexError, AuthFailed, ErrorCode, new_id
from apex_contracts.frames import (
    BEARER_SUBPROTOCOL_PREFIX,
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


def _bearer(ws: WebSocket) -> str | None:
    header = ws.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    for protocol in ws.scope.get("subprotocols", []):
        if protocol.startswith(BEARER_SUBPROTOCOL_PREFIX):
            return protocol[len(BEARER_SUBPROTOCOL_PREFIX) :] or None
    return None


async def _principal(ws: WebSocket, services: GatewayServices) -> Principal:
    ticket = ws.query_params.get("ticket")
    if ticket is not None:
        principal = await services.tickets.redeem(ticket)
        if await services.revocations.is_revoked(principal.session_id):
            raise AuthFailed("This session was signed out.", code=ErrorCode.SESSION_REVOKED)
        return principal
    return await services.verifier.verify(_bearer(ws))


async def websocket_endpoint(ws: WebSocket) -> None:
    services: GatewayServices = ws.app.state.services
    offered = ws.scope.get("subprotocols", [])
    await ws.accept(subprotocol=PROTOCOL if PROTOCOL in offered else None)
    if services.health.stopping:
        await _refuse(ws, services, CLOSE_SERVICE_RESTART, ErrorCode.SHUTTING_DOWN.value)
        return
    origin = ws.headers.get("origin")
    if origin is not None and not _origin_allowed(origin, ws, services):
        await _refuse(ws, services, CLOSE_FORBIDDEN, ErrorCode.ORIGIN_NOT_ALLOWED.value)
        return
    try:
        principal = await _principal(ws, services)
    except AuthFailed as exc:
        await _refuse(ws, services, CLOSE_UNAUTHORIZED, exc.code.value)
        return
    if (
        services.connections.count_for_user(principal.user_id)
        >= services.settings.ws_max_connections_per_user
    ):
        await _refuse(ws, services, CLOSE_TOO_MANY, ErrorCode.TOO_MANY_CONNECTIONS.value)
        return
    conn = Connection(ws, principal, services)
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
        ref=ref,
    )
    try:
        await ws.send_text(frame.model_dump_json(exclude_none=True))
        await ws.close(code=1011, reason="internal_error")
    except (RuntimeError, WebSocketDisconnect):
        log.debug("could not report defect %s to the client", ref)
