"""What every process exposes to operators: ``/healthz``, ``/readyz``, ``/metrics`` and a
heartbeat on ``apex.health.<service>.<instance>``; and how a process runs and stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apex_contracts import Heartbeat, subjects
from apex_contracts.health import HEARTBEAT_INTERVAL_S
from apex_runtime import gctune, waitfor
from apex_runtime.breaker import CircuitBreaker
from apex_runtime.port import Bus
from apex_runtime.topology import TRANSIENT_NATS_ERRORS

log = logging.getLogger(__name__)
Check = Callable[[], Awaitable[bool] | bool]
Probe = Callable[[], float | int | str]

BREAKER_STATE = Gauge(
    "apex_circuit_breaker_open", "1 when the circuit breaker is open", ["service", "breaker"]
)
BREAKER_HALF_OPEN = Gauge(
    "apex_circuit_breaker_half_open",
    "1 while the breaker lets one trial call through",
    ["service", "breaker"],
)
BREAKER_OPENS = Gauge(
    "apex_circuit_breaker_opens",
    "how many times the breaker opened since the process started",
    ["service", "breaker"],
)
DETAIL = Gauge(
    "apex_service_detail",
    "a numeric detail of the service's heartbeat (runs in flight, ...)",
    ["service", "name"],
)
HEARTBEATS = Counter(
    "apex_heartbeats_sent_total",
    "heartbeats published on apex.health.<service>.<instance>, by outcome (sent, failed)",
    ["service", "outcome"],
)


class Health:
    """Liveness, readiness checks, circuit breakers and live figures (probes) of one
    process: what ``/readyz``, ``/metrics`` and the heartbeat report.

    Readiness means "this process can serve": only the checks added with ``gates=True``
    (the process's own bus connection, typically) decide it. A dependency that only some
    features need is added with ``gates=False``: ``/readyz`` reports it under
    ``dependencies`` while the process stays ready, and the features that need it answer
    with a typed error (``store_unavailable``, ``service_unavailable``...). One store or
    service down must never take every replica out of its load balancer."""

    def __init__(self, service: str, instance: str, http_port: int | None = None) -> None:
        self.service = service
        self.instance = instance
        self.http_port = http_port
        self.started_at = datetime.now(UTC)
        self.stopping = False
        self._checks: dict[str, Check] = {}
        self._dependencies: dict[str, Check] = {}
        self.breakers: dict[str, CircuitBreaker] = {}
        self.details: dict[str, float | int | str] = {}
        self._probes: dict[str, Probe] = {}

    def add_check(self, name: str, check: Check, *, gates: bool = True) -> None:
        """A readiness check; ``gates=False`` reports it without deciding readiness."""
        (self._checks if gates else self._dependencies)[name] = check

    def add_probe(self, name: str, probe: Probe) -> None:
        """A figure read whenever a heartbeat is sent or /metrics is scraped."""
        self._probes[name] = probe

    def current_details(self) -> dict[str, float | int | str]:
        return {**self.details, **{name: probe() for name, probe in self._probes.items()}}

    def export_metrics(self) -> None:
        """Copies breaker states and numeric details into the Prometheus gauges."""
        for name, breaker in self.breakers.items():
            state = breaker.state
            BREAKER_STATE.labels(self.service, name).set(1 if state == "open" else 0)
            BREAKER_HALF_OPEN.labels(self.service, name).set(1 if state == "half_open" else 0)
            BREAKER_OPENS.labels(self.service, name).set(breaker.opened_count)
        for name, value in self.current_details().items():
            if isinstance(value, int | float):
                DETAIL.labels(self.service, name).set(value)

    def breaker(self, name: str, **options: Any) -> CircuitBreaker:
        if name not in self.breakers:
            self.breakers[name] = CircuitBreaker(name, **options)
        return self.breakers[name]

    async def readiness(self) -> dict[str, bool]:
        """The checks that decide readiness."""
        return await _run_checks(self._checks)

    async def dependencies(self) -> dict[str, bool]:
        """The dependencies reported beside readiness (they do not decide it)."""
        return await _run_checks(self._dependencies)

    async def heartbeat(self) -> Heartbeat:
        checks = await self.readiness()
        self.export_metrics()
        return Heartbeat(
            service=self.service,
            instance=self.instance,
            started_at=self.started_at,
            status="stopping"
            if self.stopping
            else ("degraded" if any(b.state != "closed" for b in self.breakers.values()) else "ok"),
            ready=all(checks.values()) and not self.stopping,
            http_port=self.http_port,
            breakers={name: b.state for name, b in self.breakers.items()},
            details=self.current_details(),
        )


async def _run_checks(checks: dict[str, Check]) -> dict[str, bool]:
    results: dict[str, bool] = {}
    for name, check in checks.items():
        outcome = check()
        results[name] = bool(await outcome if isinstance(outcome, Awaitable) else outcome)
    return results


async def heartbeat_loop(bus: Bus, health: Health, stop: asyncio.Event) -> None:
    subject = subjects.health(health.service, health.instance)
    while not stop.is_set():
        beat = await health.heartbeat()
        try:
            await bus.broadcast(subject, beat.model_dump_json().encode())
        except TRANSIENT_NATS_ERRORS as exc:
            HEARTBEATS.labels(health.service, "failed").inc()
            log.warning("heartbeat not sent: %r", exc)
        else:
            HEARTBEATS.labels(health.service, "sent").inc()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEARTBEAT_INTERVAL_S)


def ops_routes(health: Health) -> list[Route]:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "alive", "service": health.service})

    async def readyz(_: Request) -> Response:
        checks = await health.readiness()
        ready = all(checks.values()) and not health.stopping
        return JSONResponse(
            {
                "ready": ready,
                "stopping": health.stopping,
                "checks": checks,
                "dependencies": await health.dependencies(),
                "breakers": {name: b.state for name, b in health.breakers.items()},
                "details": health.current_details(),
            },
            status_code=200 if ready else 503,
        )

    async def metrics(_: Request) -> Response:
        health.export_metrics()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]


def ops_app(health: Health) -> Starlette:
    return Starlette(routes=ops_routes(health))


async def serve_http(
    app: Any, host: str, port: int, **options: Any
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Runs uvicorn inside the current loop; returns the server and its task."""
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="off", **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name=f"http:{port}")
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"HTTP server on {host}:{port} stopped before it started")
        await asyncio.sleep(0.01)
    return server, task


def run_process(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Runs ``main(stop)`` on uvloop; SIGTERM and SIGINT set ``stop``. On Python 3.11
    ``asyncio.wait_for`` is first given 3.12's behaviour (``apex_runtime.waitfor``); the
    garbage collector is set for a service (``apex_runtime.gctune``)."""
    waitfor.install()
    gctune.tune()

    async def wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio works too
        asyncio.run(wrapper())
    else:
        uvloop.run(wrapper())
