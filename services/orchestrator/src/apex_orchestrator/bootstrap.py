"""Composition root of the orchestrator."""

from __future__ import annotations

import asyncio

from apex_contracts import ErrorCode
from apex_contracts.streams import KV_USER_RUNS, RUN_CANCEL_CONSUMER, RUN_START_CONSUMER, with_capacity
from apex_orchestrator.admission import UserSlots
from apex_orchestrator.driver import Admission, RunDriver
from apex_orchestrator.endings import RunEndings
from apex_orchestrator.handlers import build_router, poison_handler
from apex_orchestrator.metrics import orchestrator_metrics
from apex_orchestrator.settings import OrchestratorSettings
from apex_orchestrator.sweeper import Sweeper
from apex_runtime import ServiceHost, configure_logging, configure_tracing, poison_guard
from apex_runtime.consumers import heartbeat_every


async def main(stop: asyncio.Event, settings: OrchestratorSettings | None = None) -> None:
    settings = settings or OrchestratorSettings()
    configure_logging("orchestrator", settings.log_level, settings.log_format)
    tracing = configure_tracing("orchestrator", settings.otlp_endpoint)
    host = ServiceHost("orchestrator", settings, settings.orchestrator_port)
    bus = await host.connect()
    slots_breaker = host.health.breaker(
        "user_runs_kv", threshold=5, reset_after_s=2.0, code=ErrorCode.STORE_UNAVAILABLE
    )
    endings = RunEndings(
        bus, UserSlots(await bus.bucket(KV_USER_RUNS), slots_breaker), orchestrator_metrics()
    )
    driver = RunDriver(
        bus,
        settings.limits(),
        endings,
        Admission(endings.slots, settings.max_runs_per_user, settings.double_texting),
        keepalive_every_s=heartbeat_every(RUN_START_CONSUMER),
    )
    sweeper = Sweeper(
        bus,
        endings,
        stall_after_s=settings.stall_after_s,
        every_s=settings.sweep_every_s,
        lookback_s=settings.sweep_lookback_s,
    )
    host.health.add_probe("runs_in_flight", lambda: driver.runs_in_flight)
    host.health.add_probe("runs_open", lambda: sweeper.open_runs)
    host.health.add_probe("runs_swept", lambda: sweeper.swept)

    # run.start is held until the run ends: the consumer lets every replica the
    # autoscaler may run hold its full share of runs at once
    run_start = with_capacity(
        RUN_START_CONSUMER,
        per_replica=settings.orchestrator_max_runs,
        replicas=settings.orchestrator_max_replicas,
    )
    await bus.ensure_consumer(run_start)
    host.broker.add_middleware(
        poison_guard(
            bus.dead_letter,
            poison_handler(endings),
            [run_start, RUN_CANCEL_CONSUMER],
            backoff_s=settings.command_retry_backoff_s,
        )
    )
    host.include(build_router(driver, endings, settings.orchestrator_max_runs, run_start))
    await host.start()
    host.watch_consumers(run_start, RUN_CANCEL_CONSUMER)
    host.spawn(sweeper.run(stop), "sweeper")
    await stop.wait()
    await host.stop()
    tracing.flush()
