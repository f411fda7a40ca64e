"""Keeps every open socket within its right, whatever broadcast this gateway missed:

- a socket whose access token expired (``exp`` plus the verifier's leeway) and was not
  refreshed in-band (``session.refresh``) is closed with 4401 ``token_expired``; checked
  every second;
- every ``ws_revocation_check_s`` the sessions of all open sockets are looked up in the
  revocation set (Redis, one MGET per 1,000 sessions): a sign-out whose broadcast
  (``apex.ctl.session.revoked``, core NATS, at most once) never reached this gateway
  closes its sockets with 4401 ``session_revoked`` within that interval;
- every third of ``ws_connection_lease_s`` the leases of this gateway's sockets in the
  shared per-user connection count are renewed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from apex_contracts import ErrorCode
from apex_contracts.frames import CLOSE_UNAUTHORIZED
from apex_gateway.services import GatewayServices
from apex_gateway.sessions import REDIS_ERRORS

log = logging.getLogger(__name__)
TICK_S = 1.0


async def watch_sessions(services: GatewayServices, stop: asyncio.Event) -> None:
    settings = services.settings
    next_revocation_check = time.monotonic() + settings.ws_revocation_check_s
    next_renewal = time.monotonic() + settings.ws_connection_lease_s / 3
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_S)
        close_expired(services, time.time())
        now = time.monotonic()
        if now >= next_revocation_check:
            next_revocation_check = now + settings.ws_revocation_check_s
            await close_revoked(services)
        if now >= next_renewal:
            next_renewal = now + settings.ws_connection_lease_s / 3
            await services.limits.renew(
                (conn.principal.user_id, conn.member) for conn in services.connections.all()
            )


def close_expired(services: GatewayServices, now_epoch_s: float) -> int:
    leeway = services.verifier.leeway_s
    expired = [c for c in services.connections.all() if c.principal.expires_at + leeway < now_epoch_s]
    for conn in expired:
        conn.end(CLOSE_UNAUTHORIZED, ErrorCode.TOKEN_EXPIRED.value)
    return len(expired)


async def close_revoked(services: GatewayServices) -> int:
    conns = services.connections.all()
    if not conns:
        return 0
    sessions = sorted({c.principal.session_id for c in conns})
    try:
        revoked = await services.revocations.revoked_among(sessions)
    except (*REDIS_ERRORS,) as exc:
        services.metrics.revocation_checks.labels("redis_unavailable").inc()
        log.warning("revocation re-check skipped, Redis does not answer (%r); broadcasts still apply", exc)
        return 0
    services.metrics.revocation_checks.labels("checked").inc()
    closed = 0
    for conn in conns:
        if conn.principal.session_id in revoked:
            conn.end(CLOSE_UNAUTHORIZED, ErrorCode.SESSION_REVOKED.value)
            closed += 1
    if closed:
        log.info("closed %d sockets of revoked sessions found by the re-check", closed)
    return closed
