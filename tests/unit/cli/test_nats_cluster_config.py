"""``APEX_NATS_CLUSTER``: what ``apex up`` would start, without starting it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from apex_cli.infra import UpError, nats_cluster_size
from apex_cli.natscluster import LAME_DUCK_DURATION_S, LAME_DUCK_GRACE_S, nats_cluster
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


def test_a_node_in_lame_duck_mode_moves_its_clients_within_a_test(tmp_path: Path) -> None:
    """nats-server refuses a lame duck duration under 30 s and a grace not below it; a short
    grace lets the lame duck test see every client move within seconds."""
    cluster = nats_cluster(tmp_path, 3)
    assert LAME_DUCK_DURATION_S >= 30 and 0 < LAME_DUCK_GRACE_S < LAME_DUCK_DURATION_S
    for node in cluster.nodes:
        config = (tmp_path / node.name / "nats.conf").read_text()
        assert f"lame_duck_duration: {LAME_DUCK_DURATION_S}s" in config
        assert f"lame_duck_grace_period: {LAME_DUCK_GRACE_S}s" in config
