"""Composition root of the ingest service: settings -> bus, leases, the usage committer,
token verification, the connectors and their schedule, and the HTTP API (with
``/healthz``, ``/readyz``, ``/metrics``) on one ``ServiceHost``. Nothing is built at
import time; tests build the same service in process with their own settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI

from apex_contracts.streams import KV_CONNECTORS, KV_LEASES
from apex_ingest.api import connectors as connectors_api
from apex_ingest.api import usage as usage_api
from apex_ingest.busapi import IngestBusApi
from apex_ingest.commit import UsageCommitter
from apex_ingest.connectors.sealing import Sealer
from apex_ingest.connectors.service import Connectors
from apex_ingest.connectors.store import ConnectorStore
from apex_ingest.connectors.sync import Sync
from apex_ingest.deps import IngestServices
from apex_ingest.errors import install_error_handlers
from apex_ingest.metrics import ingest_metrics
from apex_ingest.settings import IngestSettings
from apex_runtime import ServiceHost, configure_logging, ops_routes
from apex_runtime.leases import Leases
from apex_runtime.revocations import SessionRevocations
from apex_runtime.tokens import ExternalIssuer, KeySet, TokenVerifier

log = logging.getLogger(__name__)
SERVICE = "ingest"


def create_app(services: IngestServices) -> FastAPI:
    app = FastAPI(
        title="Apex ingest",
        version="0.1.0",
        description="Usage data in: uploads, OTLP traces, provider connectors.",
        openapi_url="/api/v1/ingest/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(usage_api.router)
    app.include_router(connectors_api.router)
    for route in ops_routes(services.health):
        app.router.routes.append(route)
    return app


class IngestService:
    def __init__(self, settings: IngestSettings, *, clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))
        self.host = ServiceHost(SERVICE, settings, settings.ingest_port)
        self.http = httpx.AsyncClient(timeout=settings.connector_timeout_s)
        self.redis = aioredis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.services: IngestServices | None = None
        self._stop = asyncio.Event()
        self._schedule: asyncio.Task[None] | None = None
        self._bus_api: IngestBusApi | None = None

    def _verifier(self) -> TokenVerifier:
        settings = self.settings
        revocations = SessionRevocations(
            self.redis, self.host.health.breaker("redis", threshold=3, reset_after_s=2.0)
        )
        self._revocations = revocations
        external = None
        if settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks_url:
            external = ExternalIssuer(
                issuer=settings.oidc_issuer,
                audience=settings.oidc_audience,
                keys=KeySet(settings.oidc_jwks_url, self.http, settings.jwks_min_refresh_s),
                tenant_claim=settings.oidc_tenant_claim,
                algorithms=tuple(settings.oidc_algorithms),
            )
        return TokenVerifier(
            KeySet(settings.jwks_url, self.http, settings.jwks_min_refresh_s),
            revocations,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            external=external,
        )

    async def start(self) -> None:
        settings = self.settings
        bus = await self.host.connect()
        leases = Leases(await bus.bucket(KV_LEASES), f"{SERVICE}-{settings.instance_id}")
        committer = UsageCommitter(bus, leases)
        metrics = ingest_metrics()
        sync = Sync(
            committer,
            self.http,
            metrics,
            settle_s=settings.connector_settle_s,
            batch_rows=settings.ingest_batch_rows,
            instance=settings.instance_id,
            clock=self.clock,
        )
        connectors = Connectors(
            ConnectorStore(await bus.bucket(KV_CONNECTORS)),
            Sealer(
                settings.connector_key.get_secret_value() if settings.connector_key else None,
                [k.get_secret_value() for k in settings.connector_old_keys],
            ),
            leases,
            sync,
            self.http,
            allowed_hosts=settings.connector_allowed_hosts,
            poll_s=settings.connector_poll_s,
            clock=self.clock,
        )
        verifier = self._verifier()
        await self._revocations.listen(bus)
        self.services = IngestServices(settings, verifier, committer, connectors, self.host.health, metrics)
        await self.host.start(http_app=create_app(self.services))
        # service accounts' usage.ingest requests (docs/bus-api.md)
        self._bus_api = IngestBusApi(bus, committer, metrics, batch_rows=settings.ingest_batch_rows)
        await self._bus_api.start()
        self._schedule = asyncio.create_task(connectors.run(self._stop), name="connector-schedule")

    async def wait(self, stop: asyncio.Event) -> None:
        """Returns when ``stop`` is set; raises the error of a schedule that died of a
        defect, so the process exits and its supervisor restarts it."""
        assert self._schedule is not None, "start() runs before wait()"
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([stopped, self._schedule], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if (
            self._schedule.done()
            and not self._schedule.cancelled()
            and self._schedule.exception() is not None
        ):
            log.critical("the connector schedule died: %r", self._schedule.exception())
            self._schedule.result()

    async def stop(self) -> None:
        self._stop.set()
        if self._bus_api is not None:
            await self._bus_api.stop()
        if self._schedule is not None:
            await asyncio.wait([self._schedule], timeout=10.0)
            self._schedule.cancel()
            await asyncio.gather(self._schedule, return_exceptions=True)
        # ServiceHost.stop cancels uvicorn before it closes its listening socket: close it first
        for listener in getattr(getattr(self.host, "_http", None), "servers", None) or ():
            listener.close()
        await self.host.stop()
        await self.http.aclose()
        await self.redis.aclose()


async def main(stop: asyncio.Event, settings: IngestSettings | None = None) -> None:
    settings = settings or IngestSettings()
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    service = IngestService(settings)
    await service.start()
    try:
        await service.wait(stop)
    finally:
        await service.stop()
