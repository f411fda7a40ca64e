"""The pieces every bus service has, in one place: a FastStream broker sharing its NATS
connection with the ``Bus``, health and readiness, the ops HTTP port and the heartbeat.
A composition root builds a ``ServiceHost``, wires its handlers, starts and stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from faststream.nats import NatsBroker, NatsRouter
from faststream.nats.security import NatsCredentials, NatsSecurity

from apex_contracts import ErrorCode, Unavailable
from apex_contracts.streams import ConsumerSpec
from apex_runtime import gctune
from apex_runtime.bus import NatsBus, nats_servers
from apex_runtime.consumers import RunCancellations
from apex_runtime.lag import watch_consumer_lag
from apex_runtime.natsclient import mend_client
from apex_runtime.ops import Health, heartbeat_loop, ops_app, serve_http
from apex_runtime.port import Bus
from apex_runtime.settings import ServiceSettings

log = logging.getLogger(__name__)


def _security(settings: ServiceSettings) -> NatsSecurity | None:
    """``settings.nats_options()`` as FastStream takes them (its ``security``): the
    service's credentials and the TLS context that verifies the server."""
    options = settings.nats_options()
    if "user_credentials" in options:
        return NatsCredentials(options["user_credentials"], ssl_context=options.get("tls"))
    if "tls" in options:
        return NatsSecurity(ssl_context=options["tls"])
    return None


class ServiceHost:
    """``ops_port``: the ops endpoints on a port of their own (the service's app serves
    ``http_port``); ``bus_gates_readiness``: False keeps a process ready while NATS is
    away (auth answers its HTTP API without the bus)."""

    def __init__(
        self,
        service: str,
        settings: ServiceSettings,
        http_port: int,
        *,
        ops_port: int | None = None,
        bus_gates_readiness: bool = True,
    ) -> None:
        self.service = service
        self.settings = settings
        self.http_port = http_port
        self.ops_port = ops_port
        self._bus_gates = bus_gates_readiness
        self.health = Health(service, settings.instance_id, http_port)
        self.broker = NatsBroker(
            nats_servers(settings.nats_url),
            name=f"{service}-{settings.instance_id}",
            max_reconnect_attempts=-1,
            # faststream annotates int, but nats-py sleeps for it: half a second is meant
            reconnect_time_wait=0.5,  # type: ignore[arg-type]
            connect_timeout=3,
            log_level=logging.DEBUG,
            graceful_timeout=10.0,
            logger=logging.getLogger("apex.faststream"),
            security=_security(settings),
        )
        self._bus: Bus | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._http: Any = None
        self._servers: list[tuple[Any, asyncio.Task[Any]]] = []

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            raise RuntimeError("ServiceHost.connect() first")
        return self._bus

    async def connect(self) -> Bus:
        mend_client()
        try:
            await self.broker.connect()
        except (OSError, TimeoutError) as exc:
            raise Unavailable(
                f"Cannot reach NATS at {self.settings.nats_url}: {exc}",
                code=ErrorCode.BUS_UNAVAILABLE,
            ) from exc
        self._bus = NatsBus(
            self.broker.connection,
            replicas=self.settings.nats_replicas,
            stream_max_bytes=self.settings.nats_stream_max_bytes,
        )
        await self._bus.ensure_topology()
        self.health.add_check("nats", lambda: self.bus.connected, gates=self._bus_gates)
        return self._bus

    async def run_cancellations(self) -> RunCancellations:
        """Work of this process per run, interrupted by the ``apex.ctl.cancel.<run>``
        broadcast; its figures (``work_in_flight``, ``work_interrupted``) appear in the
        heartbeat and on /metrics."""
        cancels = RunCancellations()
        await cancels.listen(self.bus)
        self.health.add_probe("work_in_flight", lambda: cancels.in_flight)
        self.health.add_probe("work_interrupted", lambda: cancels.interrupted)
        return cancels

    def include(self, router: NatsRouter) -> None:
        self.broker.include_router(router)

    @property
    def stopping(self) -> asyncio.Event:
        """Set when ``stop`` begins: background work spawned with the host ends on it."""
        return self._stop

    async def start(self, http_app: Any = None, **http_options: Any) -> None:
        """Starts the broker, the HTTP server (``http_options`` go to uvicorn: the
        gateway's WebSocket limits), the ops server when ``ops_port`` and the heartbeat."""
        await self.broker.start()
        self._http, http_task = await serve_http(
            http_app or ops_app(self.health), self.settings.http_host, self.http_port, **http_options
        )
        self._servers.append((self._http, http_task))
        if self.ops_port is not None:
            self._servers.append(
                await serve_http(ops_app(self.health), self.settings.http_host, self.ops_port)
            )
        self._tasks.extend(task for _server, task in self._servers)
        self._tasks.append(asyncio.create_task(heartbeat_loop(self.bus, self.health, self._stop)))
        gctune.settle()  # what the service built to get here lives as long as it does
        log.info("%s ready on :%d", self.service, self.http_port)

    @property
    def bound_port(self) -> int:
        """The HTTP port the ops server listens on (the one the kernel chose for port 0)."""
        return int(self._http.servers[0].sockets[0].getsockname()[1])

    def watch_consumers(self, *consumers: ConsumerSpec) -> None:
        """Shows the backlog of these command consumers on /metrics and in the
        heartbeat (after ``start``)."""
        self.spawn(watch_consumer_lag(self.bus, self.health, consumers, self._stop), "consumer-lag")

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    async def stop_http(self, wait_s: float = 10.0) -> None:
        """Stops the service's HTTP server alone (the ops server and the bus stay up: the
        gateway, its sockets drained, flushes the last acks over the bus before ``stop``)."""
        if self._servers:
            server, http_task = self._servers[0]
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(http_task), wait_s)

    async def stop(self) -> None:
        self.health.stopping = True
        self._stop.set()
        await self.broker.stop()
        for server, _task in self._servers:
            server.should_exit = True
        for _server, http_task in self._servers:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(http_task), 10.0)
        for task in self._tasks:
            if not task.done():
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        log.info("%s stopped", self.service)
