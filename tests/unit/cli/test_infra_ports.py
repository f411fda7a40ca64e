"""`apex up` starts an embedded server on another port when the one it chose is taken
before the server could start (two platforms starting at once race for 5432)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from apex_cli import embedded
from apex_cli.embedded import EmbeddedError, PortTaken, free_port
from apex_cli.infra import Infra, UpError


class Starter:
    def __init__(self, failures: list[EmbeddedError]) -> None:
        self.failures = failures
        self.ports: list[int] = []

    def __call__(self, port: int) -> Any:
        self.ports.append(port)
        starter = self

        class Server:
            def start(self) -> str:
                if starter.failures:
                    raise starter.failures.pop(0)
                return f"server on {port}"

        return Server()


def test_a_port_taken_before_the_start_is_chosen_again() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        make = Starter([PortTaken(f"postgres: port {taken} is already in use")])
        server, port = Infra._start_one("postgres", make, taken)
    assert port != taken and server == f"server on {port}"


def test_other_failures_and_a_port_taken_every_time_are_errors() -> None:
    with pytest.raises(UpError, match="initdb failed"):
        Infra._start_one("postgres", Starter([EmbeddedError("initdb failed")]), 0)
    with pytest.raises(UpError, match="already in use"):
        Infra._start_one("postgres", Starter([PortTaken("already in use")] * 3), 0)


def test_a_second_port_for_the_same_server_is_never_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel may hand a port out again as soon as the probe closes it: NATS once got
    the same port for clients and monitoring and could not start."""
    first = free_port()
    again = iter([first, first])

    class Probe(socket.socket):
        def getsockname(self) -> Any:
            chosen = next(again, None)
            return ("127.0.0.1", chosen) if chosen is not None else super().getsockname()

    monkeypatch.setattr(embedded.socket, "socket", Probe)
    assert free_port(besides={first}) != first
    assert free_port(first, besides={first}) != first


def test_a_port_promised_to_a_service_is_never_an_embedded_servers() -> None:
    """The harness (and an operator) chooses the services' ports before ``apex up`` starts
    the stores; a store that took one of them kept auth from binding for the whole run."""
    promised = free_port()
    make = Starter([PortTaken("taken")])
    server, port = Infra._start_one("postgres", make, promised, avoid={promised})
    assert promised not in make.ports and server == f"server on {port}"
