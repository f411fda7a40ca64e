"""Free TCP ports for the servers a process starts itself.

A port the kernel gives for ``bind(0)`` comes from its ephemeral range, the range it
also takes outgoing connections' source ports from: between choosing such a port and the
server binding it, any new connection on the machine may take it, and the server fails
with "address already in use". So ports are chosen below that range, at random, each
checked free by binding it; the kernel's choice is the fallback."""

from __future__ import annotations

import random
import socket
from collections.abc import Collection
from pathlib import Path
from typing import Final

EPHEMERAL_RANGE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST: Final = 10_000
_TRIES: Final = 64


def ephemeral_start(source: Path = EPHEMERAL_RANGE) -> int:
    """The first port of the kernel's ephemeral range (32768, Linux's default, when unknown)."""
    try:
        return int(source.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def bound(host: str, port: int) -> socket.socket | None:
    """A socket bound to ``port`` (0: the kernel's choice), or None when it is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    return sock


def bind_unused(host: str = "127.0.0.1", besides: Collection[int] = ()) -> socket.socket | None:
    """A socket bound to a free port below the ephemeral range and not in ``besides``;
    None when none was found in a few tries."""
    top = ephemeral_start()
    if top <= LOWEST + _TRIES:
        return None
    for _ in range(_TRIES):
        port = random.randrange(LOWEST, top)
        if port in besides:
            continue
        if (sock := bound(host, port)) is not None:
            return sock
    return None
