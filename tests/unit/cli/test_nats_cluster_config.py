"""``APEX_NATS_CLUSTER``: what ``apex up`` would start, without starting it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from apex_cli.natscluster import nats_cluster
from apex_cli.up import UpError, nats_cluster_size
from apex_runtime import nats_servers


def test_three_nodes_route_to_each_other_on_their_own_ports(tmp_path: Path) -> None:
    cluster = nats_cluster(tmp_path, 3)
    assert [node.name for node in cluster.nodes] == ["nats-1", "nats-2", "nats-3"]
    configs = [(tmp_path / node.name / "nats.conf").read_text() for node in cluster.nodes]
    listens = [int(re.search(r"^  listen: 127\.0\.0\.1:(\d+)$", c, re.M)[1]) for c in configs]  # type: ignore[index]
    ports = [node.port for node in cluster.nodes] + [n.monitor_port for n in cluster.nodes] + listens
    assert len(set(ports)) == 9, "every client, monitoring and route port is its own"
    for i, config in enumerate(configs):
        assert f"server_name: nats-{i + 1}" in config and "sync_interval: always" in config
        assert f'store_dir: "{tmp_path / f"nats-{i + 1}" / "jetstream"}"' in config
        routes = re.findall(r"nats-route://127\.0\.0\.1:(\d+)", config)
        assert sorted(map(int, routes)) == sorted(p for j, p in enumerate(listens) if j != i)
    assert nats_servers(cluster.url) == [node.url for node in cluster.nodes]


def test_the_cluster_size_is_an_odd_quorum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APEX_NATS_CLUSTER", raising=False)
    assert nats_cluster_size() == 1
    monkeypatch.setenv("APEX_NATS_CLUSTER", "3")
    assert nats_cluster_size() == 3
    for wrong in ("2", "three", "0"):
        monkeypatch.setenv("APEX_NATS_CLUSTER", wrong)
        with pytest.raises(UpError, match="APEX_NATS_CLUSTER"):
            nats_cluster_size()


def test_a_server_list_is_split_on_commas() -> None:
    assert nats_servers("nats://a:4222") == ["nats://a:4222"]
    assert nats_servers(" nats://a:1, nats://b:2 ,") == ["nats://a:1", "nats://b:2"]
    with pytest.raises(ValueError, match="no server"):
        nats_servers(" , ")
