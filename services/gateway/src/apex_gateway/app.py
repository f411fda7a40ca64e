"""Composition root of the gateway: builds its ports and adapters, the FastAPI app, and
runs it until SIGTERM, then drains (sockets close with 1012 so clients resume elsewhere)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI
from pydantic import ValidationError

from apex_contracts import ErrorCode, price_table, subjects
from apex_contracts.auth import SessionRevoked
from apex_contracts.frames import CLOSE_UNAUTHORIZED
from apex_contracts.health import SERVICES
from apex_gateway import authproxy, dashboard, ingestproxy
from apex_gateway.accounts import AuthAccounts
from apex_gateway.api import admin, runs, service_accounts, threads, usage, users
from apex_gateway.busapi import GatewayBusApi
from apex_gateway.cursor_flusher import CursorFlusher, PersistedCursors
from apex_gateway.cursors import DeliveryCursors
from apex_gateway.drain import drain_paced
from apex_gateway.erasure import UserErasure
from apex_gateway.errors import ERROR_RESPONSES, install_error_handlers
from apex_gateway.history import ThreadLog
from apex_gateway.limits import UserLimits
from apex_gateway.messages import MessageService
from apex_gateway.metrics import GatewayMetrics
from apex_gateway.presence import ServiceDirectory
from apex_gateway.prices import TenantPriceStore
from apex_gateway.reads import ReadSide
from apex_gateway.services import GatewayServices
from apex_gateway.session_watch import watch_sessions
from apex_gateway.sessions import ConnectionRegistry, SessionRevocations
from apex_gateway.settings import GatewaySettings
from apex_gateway.thread_service import ThreadService
from apex_gateway.tickets import TicketBook
from apex_gateway.tokens import ExternalIssuer, KeySet, TokenVerifier
from apex_gateway.web import mount_web
from apex_gateway.ws.endpoint import websocket_endpoint
from apex_gateway.ws.feeds import ThreadFeeds
from apex_gateway.ws.subscription import SubscriptionPorts
from apex_runtime import (
    Bus,
    Health,
    Notice,
    ServiceHost,
    configure_logging,
    ops_routes,
)

log = logging.getLogger(__name__)
CURSOR_FLUSH_EVERY_S = 1.0
OTHER_SERVICES = tuple(s for s in SERVICES if s != "gateway")


def create_app(services: GatewayServices, http: httpx.AsyncClient | None = None) -> FastAPI:
    app = FastAPI(
        title="Apex gateway",
        version="0.1.0",
        description="HTTP API and the apex.v1 WebSocket of Apex.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.services = services
    install_error_handlers(app)
    for router in (
        threads.router,
        runs.router,
        usage.router,
        admin.router,
        users.router,
        service_accounts.router,
        dashboard.router,
        authproxy.router,
        ingestproxy.router,
    ):
        app.include_router(router, responses=ERROR_RESPONSES)
    # The chat page signs in through the gateway: /auth/* is passed on to the auth service.
    app.state.auth_proxy = authproxy.AuthProxy(services.settings.auth_url, http or httpx.AsyncClient())
    # Usage data in (uploads, OTLP, connectors) is the ingest service's work.
    app.state.ingest_proxy = ingestproxy.IngestProxy(
        services.settings.ingest_url, http or httpx.AsyncClient()
    )
    mount_web(app)
    if services.settings.gateway_ops_port is None:
        # no separate ops port (a laptop): probes and metrics on the public port
        for route in ops_routes(services.health):
            app.router.routes.append(route)
    app.add_api_websocket_route("/ws", websocket_endpoint)
    return app


async def build_services(
    settings: GatewaySettings, bus: Bus, http: httpx.AsyncClient, redis: aioredis.Redis, health: Health
) -> GatewayServices:
    """The gateway's services on ``bus``; ``health`` is the host's (its "nats" check set)."""
    revocations = SessionRevocations(redis, health.breaker("redis", threshold=3, reset_after_s=2.0))
    external = None
    if settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks_url:
        external = ExternalIssuer(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            keys=KeySet(settings.oidc_jwks_url, http, settings.jwks_min_refresh_s),
            tenant_claim=settings.oidc_tenant_claim,
            algorithms=tuple(settings.oidc_algorithms),
            operator_claim=settings.oidc_operator_claim,
            operator_value=settings.oidc_operator_value,
        )
    verifier = TokenVerifier(
        KeySet(settings.jwks_url, http, settings.jwks_min_refresh_s),
        revocations,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        external=external,
    )
    directory = ServiceDirectory()
    await directory.start(bus)
    # Ready means this process can serve: its own bus connection (the host's "nats"
    # check). The other services are reported, not required: without them history still
    # reads from the stream and new runs wait visibly (run.queued), rather than every
    # gateway leaving the load balancer.
    health.add_check("services", lambda: not directory.missing(OTHER_SERVICES), gates=False)
    health.add_probe("services_missing", lambda: " ".join(directory.missing(OTHER_SERVICES)))
    metrics = GatewayMetrics()
    connections = ConnectionRegistry()
    dashboard.publish_delivery_figures(health, metrics)
    archive = PersistedCursors(bus, health.breaker("cursor_store", threshold=3, reset_after_s=2.0))
    flusher = CursorFlusher(
        archive,
        failures=metrics.cursor_flush_failures,
        flushed=metrics.cursors_flushed,
        unflushed=metrics.cursors_unflushed,
        every_s=CURSOR_FLUSH_EVERY_S,
    )
    cursors = DeliveryCursors(
        redis,
        health.breaker("redis", threshold=3, reset_after_s=2.0),
        archive,
        flusher,
        metrics.cursor_restores,
    )
    accounts = AuthAccounts(settings.auth_url, http)
    prices = TenantPriceStore(bus)
    history = ThreadLog(bus)
    feeds = ThreadFeeds(bus.follow, partial(history.head, leader=True))
    return GatewayServices(
        settings=settings,
        verifier=verifier,
        revocations=revocations,
        connections=connections,
        messages=MessageService(bus, waiting=directory.absent),
        cursors=cursors,
        cursor_flusher=flusher,
        limits=_user_limits(settings, redis, health, metrics, connections),
        directory=directory,
        health=health,
        metrics=metrics,
        epoch=await bus.stream_epoch(),
        tickets=TicketBook(bus),
        feeds=feeds,
        accounts=accounts,
        history=history,
        threads=ThreadService(bus),
        reads=ReadSide(bus, prices),
        prices=prices,
        erasure=UserErasure(bus, cursors, accounts),
        subscriptions=SubscriptionPorts(
            history,
            feeds,
            metrics,
            ack_timeout_s=settings.ack_timeout_ms / 1000,
            max_unacked=settings.ws_send_queue,
        ),
    )


def _user_limits(
    settings: GatewaySettings,
    redis: aioredis.Redis,
    health: Health,
    metrics: GatewayMetrics,
    connections: ConnectionRegistry,
) -> UserLimits:
    return UserLimits(
        redis,
        health.breaker("redis", threshold=3, reset_after_s=2.0),
        max_connections=settings.ws_max_connections_per_user,
        rate_per_s=settings.ws_user_rate_per_s,
        burst=settings.ws_user_rate_burst,
        lease_s=settings.ws_connection_lease_s,
        local_connections=connections.count_for_user,
        degraded=metrics.shared_limits_degraded,
        shared_up=metrics.shared_limits_up,
    )


async def watch_revocations(services: GatewayServices, bus: Bus) -> None:
    """Closes every socket of a revoked session on this gateway, at once."""

    async def on_revoked(msg: Notice) -> None:
        try:
            revoked = SessionRevoked.model_validate_json(msg.data)
        except ValidationError:
            log.warning("ignoring a malformed revocation broadcast")
            return
        services.revocations.remember(revoked.session_id)
        for conn in services.connections.of_session(revoked.session_id):
            conn.end(CLOSE_UNAUTHORIZED, ErrorCode.SESSION_REVOKED.value)

    await bus.listen(subjects.CTL_SESSION_REVOKED, on_revoked)


async def resend_overdue(services: GatewayServices, stop: asyncio.Event) -> None:
    """One ticker for every socket: overdue unacked frames are sent again."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        now = time.monotonic()
        for conn in services.connections.all():
            conn.resend_due(now)


async def main(stop: asyncio.Event, settings: GatewaySettings | None = None) -> None:
    settings = settings or GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_format)
    # The shared host: its NATS connection (the bus), health, heartbeat, the HTTP server
    # and the ops port (when set; else create_app serves probes on the public port).
    host = ServiceHost("gateway", settings, settings.gateway_port, ops_port=settings.gateway_ops_port)
    bus = await host.connect()
    # A connect storm waits briefly for a pooled connection instead of failing
    # (redis-py's default pool raises once it is exhausted).
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=256, timeout=1.0, socket_timeout=1.0, socket_connect_timeout=1.0
    )
    redis = aioredis.Redis(connection_pool=pool)
    async with httpx.AsyncClient() as http:
        services = await build_services(settings, bus, http, redis, host.health)
        await watch_revocations(services, bus)
        bus_api = GatewayBusApi(bus, services.messages)  # service accounts' requests (docs/bus-api.md)
        await bus_api.start()
        await asyncio.to_thread(price_table.load)  # before the first price asked, not in it
        await host.start(
            create_app(services, http),
            ws_max_size=settings.ws_max_frame_bytes,
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
            ws_per_message_deflate=False,
        )
        ticks_stop = asyncio.Event()
        resends = host.spawn(resend_overdue(services, ticks_stop), "resend-overdue")
        sessions = host.spawn(watch_sessions(services, ticks_stop), "watch-sessions")
        # Stopped after the server, so the acks of the drained sockets are flushed too.
        flush_stop = asyncio.Event()
        flushes = asyncio.create_task(services.cursor_flusher.run(flush_stop))
        log.info("gateway ready on %s:%d", settings.http_host, settings.gateway_port)
        await stop.wait()
        try:
            await bus_api.stop()
            await drain(services, settings.gateway_drain_s)
            ticks_stop.set()
            await host.stop_http(15.0)
        finally:
            # whatever the server did, the last acks reach persistence before the bus closes
            ticks_stop.set()
            await resends
            await sessions
            flush_stop.set()
            await flushes
            await host.stop()  # the bus (NATS), the heartbeat, then the ops port
    await redis.aclose()
    await pool.aclose()


async def drain(services: GatewayServices, window_s: float = 0.0) -> None:
    """Stops accepting (readiness false), then ends every socket (close 1012) and every
    SSE stream (a final ``shutting_down``), evenly over ``window_s``, so clients resume on
    the other gateways without arriving all at once."""
    services.health.stopping = True
    services.streams.stopping = True
    conns = services.connections.all()

    def end_stream(end: asyncio.Event) -> Callable[[], Awaitable[None]]:
        async def close() -> None:
            end.set()

        return close

    closers = [c.drain for c in conns] + [end_stream(end) for end in services.streams.all()]
    ended = await drain_paced(closers, window_s)
    log.info(
        "drained %d connections and %d event streams over %.1f s", len(conns), ended - len(conns), window_s
    )
