"""Embedded NATS nodes as one JetStream cluster on loopback (``APEX_NATS_CLUSTER=3`` in
``apex up``, the ``nats_cluster3`` test fixture): routes between the nodes, a data folder
and a client, route and monitoring port each; ``NatsCluster`` starts them, waits for
JetStream, names a stream's leader, reads a node's view of a stream and puts a node in
lame duck mode."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apex_cli.embedded import (
    EmbeddedError,
    EmbeddedServer,
    free_port,
    free_ports,
    nats_binary,
    port_open,
)
from apex_cli.natstls import TlsFiles, server_tls_block

# Lame duck mode (``nats-server --signal ldm``): the node stops accepting clients, waits
# the grace period, then closes its clients over the rest of the duration (at most one a
# second), and exits. 30 s is the least nats-server accepts; a short grace, since locally
# no rolling restart puts several nodes in lame duck at once (k8s/nats/config.yaml: 10 s).
LAME_DUCK_DURATION_S = 30
LAME_DUCK_GRACE_S = 2

if TYPE_CHECKING:
    from apex_cli.natsauth import NatsAuth


def nats_cluster(
    root: Path,
    size: int = 3,
    *,
    ports: Sequence[int] = (),
    name: str = "apex",
    avoid: Collection[int] = (),
    auth: NatsAuth | None = None,
    tls: TlsFiles | None = None,
) -> NatsCluster:
    """``size`` NATS servers forming one JetStream cluster on loopback: node ``i`` (from 1)
    is named ``nats-<i>`` (its JetStream ``server_name``), keeps its data in
    ``root/nats-<i>`` and routes to every other node. ``ports`` are the client ports to
    prefer (another free one where taken); no port of ``avoid`` is used (ports promised
    to other processes that have not bound them yet); ``auth``: operator mode, as in
    ``embedded.nats_server``; ``tls``: clients over TLS and routes with mutual TLS. Nothing
    is started."""
    if size < 1:
        raise EmbeddedError("a NATS cluster needs at least one node")
    wanted = list(ports) + [0] * (size - len(ports))
    spare = iter([p for p in free_ports(4 * size + len(avoid)) if p not in avoid])
    taken: set[int] = set(avoid)
    clients = []
    for port in wanted[:size]:
        chosen = free_port(port) if port else next(spare)
        while chosen in taken:
            chosen = next(spare)
        taken.add(chosen)
        clients.append(chosen)
    routes = [p for p in spare if p not in taken][: 2 * size]
    if len(routes) < 2 * size:
        raise EmbeddedError("not enough free ports for the NATS cluster's routes and monitoring")
    cluster_ports, monitor_ports = routes[:size], routes[size:]
    nodes = []
    for i in range(size):
        node = f"nats-{i + 1}"
        data_dir = root / node
        data_dir.mkdir(parents=True, exist_ok=True)
        others = ", ".join(f"nats-route://127.0.0.1:{p}" for j, p in enumerate(cluster_ports) if j != i)
        config = data_dir / "nats.conf"
        config.write_text(
            f"""server_name: {node}
listen: 127.0.0.1:{clients[i]}
http: 127.0.0.1:{monitor_ports[i]}
max_payload: 8MB
lame_duck_duration: {LAME_DUCK_DURATION_S}s
lame_duck_grace_period: {LAME_DUCK_GRACE_S}s
jetstream {{
  store_dir: "{data_dir / "jetstream"}"
  sync_interval: always
  max_file_store: 20GB
}}
cluster {{
  name: {name}
  listen: 127.0.0.1:{cluster_ports[i]}
  routes: [{others}]
  connect_retries: 120
{_indent(server_tls_block(tls, routes=True)) if tls else ""}}}
"""
            + (auth.server_config(data_dir / "jwt") if auth else "")
            + (server_tls_block(tls) if tls else "")
        )
        nodes.append(
            EmbeddedServer(
                name=node,
                port=clients[i],
                data_dir=data_dir,
                url=f"{'tls' if tls else 'nats'}://127.0.0.1:{clients[i]}",
                argv=[nats_binary(), "-c", str(config)],
                ready=_ports_open(clients[i], monitor_ports[i]),
                monitor_port=monitor_ports[i],
            )
        )
    return NatsCluster(nodes)


def _indent(block: str) -> str:
    return "".join(f"  {line}\n" for line in block.splitlines())


def lame_duck(pid: int | Path) -> None:
    """Puts the nats-server of ``pid`` (or of the pid file at that path) in lame duck mode,
    as the k8s preStop does (``nats-server --signal ldm=<pid>``); returns at once, the
    node moves its clients and exits on its own."""
    subprocess.run([nats_binary(), "--signal", f"ldm={pid}"], check=True, capture_output=True, timeout=10)


def _ports_open(*ports: int) -> Callable[[EmbeddedServer], bool]:
    return lambda _server: all(port_open(port) for port in ports)


@dataclass
class NatsCluster:
    """Embedded NATS nodes that form one JetStream cluster. Clients connect with ``url``
    (every node's URL, comma-separated: ``apex_runtime.bus.nats_servers`` splits it)."""

    nodes: list[EmbeddedServer]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> EmbeddedServer:
        """The node whose ``server_name`` is ``name`` (as JetStream reports a leader)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def start(self, timeout: float = 60.0) -> NatsCluster:
        """Starts every node that is not running, then waits until JetStream answers on
        each (a meta leader is elected and every node is current)."""
        for node in self.nodes:
            node.start()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 60.0, nodes: Sequence[EmbeddedServer] | None = None) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(nodes or self.nodes)
        while waiting:
            waiting = [node for node in waiting if not node.healthy()]
            if not waiting:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"{n.name}:\n{n._tail(8)}" for n in waiting)
                raise EmbeddedError(f"NATS cluster not healthy after {timeout:.0f} s:\n{tails}")
            time.sleep(0.2)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def lame_duck(self, node: EmbeddedServer) -> None:
        """Puts ``node`` in lame duck mode (see ``lame_duck``)."""
        if node.pid is None:
            raise EmbeddedError(f"{node.name} is not running")
        lame_duck(node.pid)

    def monitor(self, node: EmbeddedServer, path: str) -> dict[str, Any]:
        """A JSON page of ``node``'s monitoring endpoint (``/jsz?streams=true``, ``/connz``)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{node.monitor_port}{path}", timeout=5) as answer:
            page: dict[str, Any] = json.loads(answer.read())
            return page

    def stream_detail(self, node: EmbeddedServer, stream: str) -> dict[str, Any] | None:
        """``node``'s own view of ``stream`` (state, cluster, leader), None when it has none."""
        page = self.monitor(node, "/jsz?streams=true&consumers=false")
        detail: dict[str, Any]
        for account in page.get("account_details", []):
            for detail in account.get("stream_detail", []):
                if detail.get("name") == stream:
                    return detail
        return None

    def stream_leader(self, stream: str) -> EmbeddedServer | None:
        """The node that leads ``stream`` now, as a running node reports it."""
        for node in self.nodes:
            if node.pid is None:
                continue
            try:
                detail = self.stream_detail(node, stream)
            except OSError:
                continue
            leader = ((detail or {}).get("cluster") or {}).get("leader")
            if leader:
                return self.node(leader)
        return None
