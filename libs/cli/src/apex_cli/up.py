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
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psutil

from apex_cli.config import INFRA_URLS, SERVICE_PORTS, START_ORDER, Home
from apex_cli.embedded import (
    EmbeddedError,
    EmbeddedServer,
    PortTaken,
    _die_with_parent,
    free_port,
    nats_server,
    postgres_server,
    valkey_server,
)
from apex_cli.natsauth import ADMIN, NatsAuth
from apex_cli.natscluster import NatsCluster, nats_cluster

COLORS = ["36", "32", "35", "33", "34", "31", "96", "92", "95"]
Printer = Callable[[str, str], None]


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


class UpError(RuntimeError):
    """``apex up`` cannot start; the message says what and how to fix it."""


def _answers(url: str, default_port: int) -> bool:
    """True when the server (or, for a comma-separated list, any of them) accepts a
    connection."""
    for one in (part.strip() for part in url.split(",")):
        parsed = urlparse(one)
        host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
        try:
            with socket.create_connection((host, port), timeout=2.0):
                return True
        except OSError:
            continue
    return False


def nats_cluster_size() -> int:
    """``APEX_NATS_CLUSTER``: how many embedded NATS nodes ``apex up`` starts (1, 3 or 5;
    a JetStream cluster needs an odd number for a quorum)."""
    raw = os.environ.get("APEX_NATS_CLUSTER", "").strip() or "1"
    if raw not in ("1", "3", "5"):
        raise UpError(f"APEX_NATS_CLUSTER={raw}: use 1, 3 or 5 (JetStream needs a quorum)")
    return int(raw)


def _kill_leftover(pid_file: Path) -> None:
    """A pid file from an ``apex up`` that did not stop cleanly: end that process."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        if any(
            "apex" in part or "nats-server" in part or "postgres" in part or "valkey" in part
            for part in proc.cmdline()
        ):
            proc.terminate()
            proc.wait(10)
    pid_file.unlink(missing_ok=True)


class Infra:
    """The stores and the bus: configured URLs are checked, missing ones started here."""

    def __init__(self, home: Home, emit: Printer, *, restart_after_s: float = 1.0) -> None:
        self.home = home
        self.emit = emit
        self.restart_after_s = restart_after_s
        self.servers: dict[str, EmbeddedServer] = {}
        self._died_at: dict[str, float] = {}
        # set when the bus is ours (embedded): every service then gets its own user
        self.nats_auth: NatsAuth | None = None

    @staticmethod
    def _start_one(
        name: str, make: Callable[[int], EmbeddedServer], default_port: int, attempts: int = 3
    ) -> tuple[EmbeddedServer, int]:
        """The server on its default port when free, else on one the kernel picks; a port
        taken between the choice and the start is chosen again."""
        port = free_port(default_port)
        for _ in range(attempts - 1):
            try:
                return make(port).start(), port
            except PortTaken:
                port = free_port()
            except EmbeddedError as exc:
                raise UpError(f"embedded {name} failed to start: {exc}") from exc
        try:
            return make(port).start(), port
        except EmbeddedError as exc:
            raise UpError(f"embedded {name} failed to start: {exc}") from exc

    def _start_cluster(self, size: int, attempts: int = 3) -> NatsCluster:
        """``size`` NATS nodes as one JetStream cluster (pid files ``nats-<i>``), on the
        default port and the next ones where free; chosen again when one was taken."""
        for name in (f"nats-{i + 1}" for i in range(size)):
            _kill_leftover(self.home.pid_file(name))
        default = INFRA_URLS["nats"][1]
        preferred = [default + i for i in range(size)]
        for attempt in range(attempts):
            cluster = nats_cluster(
                self.home.root,
                size,
                ports=preferred if attempt == 0 else (),
                avoid=_service_ports(),
                auth=self._auth(),
            )
            try:
                return cluster.start()
            except EmbeddedError as exc:
                cluster.stop()
                if attempt == attempts - 1:
                    raise UpError(f"embedded NATS cluster failed to start: {exc}") from exc
        raise AssertionError("unreachable")

    def _auth(self) -> NatsAuth:
        """The embedded bus's credentials (made on the first start, then reused)."""
        if self.nats_auth is None:
            self.nats_auth = NatsAuth.ensure(self.home.root / "nats-auth")
        return self.nats_auth

    def service_env(self, service: str, env: dict[str, str]) -> dict[str, str]:
        """``env`` for ``service``'s process: on the embedded bus, its own NATS user."""
        if self.nats_auth is None:
            return env
        own = {"APEX_NATS_CREDS": str(self.nats_auth.creds_path(service))}
        if service == "auth":  # auth issues and revokes tenants' service accounts
            own |= {
                "APEX_NATS_ISSUER_FILE": str(self.nats_auth.issuer_path),
                "APEX_NATS_SYSTEM_CREDS": str(self.nats_auth.creds_path("system")),
            }
        return {**env, **own}

    def start(self) -> dict[str, str]:
        env: dict[str, str] = {}
        size = nats_cluster_size()
        if size > 1 and not os.environ.get("APEX_NATS_URL"):
            cluster = self._start_cluster(size)
            for node in cluster.nodes:
                self.servers[node.name] = node
                self.home.pid_file(node.name).write_text(str(node.pid))
            env["APEX_NATS_URL"] = cluster.url
            env["APEX_NATS_REPLICAS"] = os.environ.get("APEX_NATS_REPLICAS") or str(size)
            self.emit("apex", f"nats: embedded cluster of {size} at {cluster.url}, data in {self.home.root}")
        makers = {
            "nats": lambda port: nats_server(self.home.root / "nats", port, auth=self._auth()),
            "postgres": lambda port: postgres_server(self.home.root / "postgres", port),
            "redis": lambda port: valkey_server(self.home.root / "redis", port),
        }
        for name, (variable, default_port) in INFRA_URLS.items():
            if variable in env:
                continue
            configured = os.environ.get(variable)
            if configured:
                if not _answers(configured, default_port):
                    raise UpError(
                        f"{variable}={configured} does not answer. Start it, or unset "
                        f"{variable} to use an embedded {name}."
                    )
                env[variable] = configured
                self.emit("apex", f"{name}: using {configured}")
                continue
            _kill_leftover(self.home.pid_file(name))
            server, port = self._start_one(name, makers[name], default_port)
            self.servers[name] = server
            self.home.pid_file(name).write_text(str(server.pid))
            env[variable] = server.url
            moved = "" if port == default_port else f" (port {default_port} was taken)"
            self.emit("apex", f"{name}: embedded at {server.url}{moved}, data in {server.data_dir}")
        if self.nats_auth is not None:
            # what ``apex up`` records (and its tools, the tests, migrations use): the
            # administrator of the APEX account; each service gets its own (service_env)
            env["APEX_NATS_CREDS"] = str(self.nats_auth.creds_path(ADMIN))
            self.emit("apex", f"nats: authentication on, credentials in {self.nats_auth.root}")
        if not os.environ.get("APEX_CLICKHOUSE_URL"):
            env["APEX_CHDB_PATH"] = str(self.home.root / "chdb")
            self.emit(
                "apex", f"clickhouse: embedded engine (chdb) in persistence, data in {env['APEX_CHDB_PATH']}"
            )
        return env

    def revive(self) -> None:
        """Restarts an embedded server that exited, ``restart_after_s`` after it was
        seen dead (same port, same data: a NATS node rejoins its cluster and catches up)."""
        now = time.monotonic()
        for name, server in self.servers.items():
            if server.process is None or server.process.poll() is None:
                continue
            died = self._died_at.setdefault(name, now)
            if died == now:
                self.emit(
                    "apex",
                    f"{name} exited ({server.process.returncode}); restarting in {self.restart_after_s:.0f} s",
                )
            if now - died < self.restart_after_s:
                continue
            del self._died_at[name]
            try:
                server.start()
            except EmbeddedError as exc:
                self.emit("apex", f"{name} did not restart ({exc}); trying again")
                continue
            self.home.pid_file(name).write_text(str(server.pid))
            self.emit("apex", f"{name} restarted (pid {server.pid})")

    def stop(self) -> None:
        for name, server in reversed(list(self.servers.items())):
            server.stop()
            self.home.pid_file(name).unlink(missing_ok=True)


def _service_ports() -> set[int]:
    """The ports the services will listen on (configured, else their defaults): free now,
    not bound yet, so no embedded server may take them."""
    ports = set()
    for variable, default in SERVICE_PORTS.values():
        value = os.environ.get(variable, "")
        ports.add(int(value) if value.isdigit() else default)
    return ports


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
        _kill_leftover(home.pid_file(name))
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
