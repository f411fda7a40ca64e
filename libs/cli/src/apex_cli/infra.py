"""The stores and the bus of ``apex up``: a configured URL is checked, a missing one is
started here (embedded NATS, one node or a cluster, in operator mode with a user per
service; PostgreSQL; Valkey), restarted when it dies, stopped last."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import psutil

from apex_cli.config import INFRA_URLS, SERVICE_PORTS, Home
from apex_cli.embedded import (
    EmbeddedError,
    EmbeddedServer,
    PortTaken,
    free_port,
    nats_server,
    valkey_server,
)
from apex_cli.embedded_postgres import postgres_server
from apex_cli.natsauth import ADMIN, NatsAuth
from apex_cli.natscluster import NatsCluster, nats_cluster

if TYPE_CHECKING:
    from apex_cli.natstls import TlsFiles

Printer = Callable[[str, str], None]


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


def nats_tls_wanted() -> bool:
    """``APEX_NATS_TLS`` (``apex up --nats-tls``): the embedded NATS takes TLS clients only,
    with a development CA made in ``.apex/nats-auth/tls/`` (kept across starts)."""
    return os.environ.get("APEX_NATS_TLS", "").strip().lower() in ("1", "true", "yes")


def nats_cluster_size() -> int:
    """``APEX_NATS_CLUSTER``: how many embedded NATS nodes ``apex up`` starts (1, 3 or 5;
    a JetStream cluster needs an odd number for a quorum)."""
    raw = os.environ.get("APEX_NATS_CLUSTER", "").strip() or "1"
    if raw not in ("1", "3", "5"):
        raise UpError(f"APEX_NATS_CLUSTER={raw}: use 1, 3 or 5 (JetStream needs a quorum)")
    return int(raw)


def kill_leftover(pid_file: Path) -> None:
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
        # set when the embedded bus speaks TLS (APEX_NATS_TLS): every client gets the CA
        self.nats_tls: TlsFiles | None = None

    @staticmethod
    def _start_one(
        name: str,
        make: Callable[[int], EmbeddedServer],
        default_port: int,
        attempts: int = 3,
        *,
        avoid: Collection[int] = (),
    ) -> tuple[EmbeddedServer, int]:
        """The server on its default port when free, else on another free one; never on
        one of ``avoid`` (ports promised to the services, not bound yet); a port taken
        between the choice and the start is chosen again."""
        port = free_port(default_port, besides=avoid)
        for _ in range(attempts - 1):
            try:
                return make(port).start(), port
            except PortTaken:
                port = free_port(besides=avoid)
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
            kill_leftover(self.home.pid_file(name))
        default = INFRA_URLS["nats"][1]
        preferred = [default + i for i in range(size)]
        for attempt in range(attempts):
            cluster = nats_cluster(
                self.home.root,
                size,
                ports=preferred if attempt == 0 else (),
                avoid=_service_ports(),
                auth=self._auth(),
                tls=self._tls(),
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

    def _tls(self) -> TlsFiles | None:
        """The development CA and the embedded bus's certificate, when TLS is wanted."""
        if self.nats_tls is None and nats_tls_wanted():
            from apex_cli.natstls import ensure_dev_tls

            self.nats_tls = ensure_dev_tls(self.home.root / "nats-auth" / "tls", ("localhost", "127.0.0.1"))
        return self.nats_tls

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
        promised = _service_ports()
        makers = {
            "nats": lambda port: nats_server(
                self.home.root / "nats",
                port,
                monitor_port=free_port(besides=promised | {port}),
                auth=self._auth(),
                tls=self._tls(),
            ),
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
            kill_leftover(self.home.pid_file(name))
            server, port = self._start_one(name, makers[name], default_port, avoid=promised)
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
        if self.nats_tls is not None:
            env["APEX_NATS_CA"] = str(self.nats_tls.ca)  # every service and tool verifies the server
            self.emit("apex", f"nats: TLS only, development CA {self.nats_tls.ca}")
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
