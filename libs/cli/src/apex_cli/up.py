"""``apex up``: the whole platform on one machine, one process per service.

Embedded NATS, PostgreSQL and Valkey start for every URL that is not configured (data
under ``.apex/``); migrations run; then each service runs as ``python -m apex_<name>``
with its log lines prefixed. A process that dies is restarted with backoff; Ctrl-C or
SIGTERM stops everything, services first."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable

import httpx

from apex_cli.config import SERVICE_PORTS, START_ORDER, Home
from apex_cli.embedded import _die_with_parent
from apex_cli.infra import Infra, Printer, UpError, kill_leftover

COLORS = ["36", "32", "35", "33", "34", "31", "96", "92", "95"]


def make_printer(names: list[str]) -> Printer:
    width = max(len(n) for n in names) + 1
    tty = sys.stdout.isatty()
    colors = {name: COLORS[i % len(COLORS)] for i, name in enumerate(names)}

    def emit(name: str, line: str) -> None:
        prefix = f"{name:<{width}}|"
        if tty:
            prefix = f"\x1b[{colors.get(name, '0')}m{prefix}\x1b[0m"
        sys.stdout.write(f"{prefix} {line}\n")
        sys.stdout.flush()

    return emit


class ServiceProcess:
    """One service process, restarted with backoff whenever it exits."""

    def __init__(self, name: str, env: dict[str, str], home: Home, emit: Printer) -> None:
        self.name = name
        self.env = env
        self.home = home
        self.emit = emit
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0

    async def supervise(self, stop: asyncio.Event) -> None:
        backoff = 1.0
        while not stop.is_set():
            started = time.monotonic()
            await self._start()
            code = await self._wait(stop)
            if stop.is_set():
                return
            self.restarts += 1
            if time.monotonic() - started > 60:
                backoff = 1.0
            self.emit("apex", f"{self.name} exited with {code}; restarting in {backoff:.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 30.0)

    async def _start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"apex_{self.name}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            preexec_fn=_die_with_parent,
        )
        self.home.pid_file(self.name).write_text(str(self.proc.pid))

    async def _wait(self, stop: asyncio.Event) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.emit(self.name, raw.decode(errors="replace").rstrip())
        return await self.proc.wait()

    async def terminate(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self.home.pid_file(self.name).unlink(missing_ok=True)


async def migrate(env: dict[str, str], emit: Printer) -> None:
    for service in ("auth", "persistence"):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"apex_{service}",
            "migrate",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        output, _ = await proc.communicate()
        for line in output.decode(errors="replace").splitlines():
            emit(f"{service}", line)
        if proc.returncode != 0:
            raise UpError(f"migrations of {service} failed (exit {proc.returncode}); see the lines above")
        emit("apex", f"{service}: migrations applied")


def service_env(base: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **base}
    env.setdefault("APEX_LOG_FORMAT", "text")
    env.setdefault("PYTHONUNBUFFERED", "1")
    for name, (variable, default) in SERVICE_PORTS.items():
        env.setdefault(variable, str(default))
        del name
    env.setdefault("APEX_AUTH_URL", f"http://127.0.0.1:{env['APEX_AUTH_PORT']}")
    env.setdefault("APEX_INGEST_URL", f"http://127.0.0.1:{env['APEX_INGEST_PORT']}")
    return env


def readiness_urls(env: dict[str, str]) -> list[str]:
    """Every service's /readyz: a gateway is ready on its own (readiness means "this
    process can serve"), so the platform is ready when all of them are."""
    return [f"http://127.0.0.1:{env[variable]}/readyz" for variable, _ in SERVICE_PORTS.values()]


async def wait_ready(gateway: str, services: list[ServiceProcess], timeout: float) -> float | None:
    started = time.monotonic()
    urls = readiness_urls(services[0].env) if services else [f"{gateway}/readyz"]
    async with httpx.AsyncClient() as http:
        while time.monotonic() - started < timeout:
            with contextlib.suppress(httpx.HTTPError):
                answers = await asyncio.gather(*(http.get(url, timeout=2.0) for url in urls))
                if all(answer.status_code == 200 for answer in answers):
                    return time.monotonic() - started
            await asyncio.sleep(0.2)
    return None


async def run_up(home: Home, stop: asyncio.Event, *, ready_timeout: float = 120.0) -> int:
    t0 = time.monotonic()
    emit = make_printer(["apex", *START_ORDER])
    home.prepare()
    infra = Infra(home, emit, restart_after_s=float(os.environ.get("APEX_EMBEDDED_RESTART_S") or 1.0))
    try:
        env = service_env(infra.start())
        home.write_env({k: v for k, v in env.items() if k.startswith("APEX_")})
        await migrate(env, emit)
    except UpError as exc:
        emit("apex", f"error: {exc}")
        infra.stop()
        return 1
    services = [ServiceProcess(name, infra.service_env(name, env), home, emit) for name in START_ORDER]
    for name in START_ORDER:
        kill_leftover(home.pid_file(name))
    tasks = [asyncio.create_task(s.supervise(stop)) for s in services]
    gateway = f"http://127.0.0.1:{env['APEX_GATEWAY_PORT']}"
    ready_in = await _race(wait_ready(gateway, services, ready_timeout), stop)
    if ready_in is not None:
        emit(
            "apex",
            f"Apex is ready at {gateway} ({time.monotonic() - t0:.1f} s after start). Ctrl-C stops it.",
        )
    elif not stop.is_set():
        emit("apex", f"warning: {gateway}/readyz is not ready after {ready_timeout:.0f} s; still trying")
    while not stop.is_set():
        infra.revive()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    emit("apex", "stopping services")
    await asyncio.gather(*(s.terminate() for s in reversed(services)))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    infra.stop()
    emit("apex", "stopped")
    return 0


async def _race(coro: Awaitable[float | None], stop: asyncio.Event) -> float | None:
    main = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for task in (main, stopper):
        if task not in done:
            task.cancel()
    return main.result() if main in done else None
