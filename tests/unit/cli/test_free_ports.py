"""Ports chosen for the servers ``apex up`` and the tests start lie below the kernel's
ephemeral range, so an outgoing connection cannot take one before its server binds it."""

from __future__ import annotations

import socket
from pathlib import Path

from apex_cli import ports
from apex_cli.embedded import free_port, free_ports


def test_the_ephemeral_range_is_read_from_the_kernel_or_defaults(tmp_path: Path) -> None:
    source = tmp_path / "range"
    source.write_text("40000\t60999\n")
    assert ports.ephemeral_start(source) == 40000
    assert ports.ephemeral_start(tmp_path / "absent") == 32768
    source.write_text("nonsense")
    assert ports.ephemeral_start(source) == 32768


def test_chosen_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    chosen = free_ports(20)
    assert len(set(chosen)) == 20
    assert all(ports.LOWEST <= port < ports.ephemeral_start() for port in chosen)
    for port in chosen:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # each is free to bind


def test_a_listening_port_is_never_chosen_and_besides_are_avoided() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        taken = server.getsockname()[1]
        assert free_port(taken) != taken
        first = free_port()
        assert free_port(first, besides={first}) != first
