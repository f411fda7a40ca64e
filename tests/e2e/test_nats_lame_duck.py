"""A NATS node put in lame duck mode (``APEX_NATS_CLUSTER=3 apex up``), as the k8s preStop
does before a NATS pod stops: the node most services are connected to is signalled
(``nats-server --signal ldm=<pid>``) while runs are in flight, and more runs start while
it moves its clients and after. Every service's connection ends up on the other two
nodes; no publish failed (``apex_bus_publishes_total{outcome="failed"}`` stays 0 in every
service, and no ``publish_failed`` in the log); every run, started before, during or
after, completes once; every client, connected over /ws throughout, saw every event of
its thread once and in order, exactly what a replay shows afterwards.

Prints the time from the signal until every service was connected to another node, the
runs completed and the publishes stored, retried and failed meanwhile (the lame duck
figures of docs/deploy.md)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from apex_cli.config import SERVICE_PORTS, START_ORDER
from apex_cli.demo_data import generate
from apex_cli.natscluster import LAME_DUCK_DURATION_S, LAME_DUCK_GRACE_S, lame_duck
from apex_runtime import nats_servers
from tests.e2e.platform import Platform, User, platform_env
from tests.e2e.test_nats_cluster import NODES, QUESTIONS, Client, _check_client, _monitor, _run, _until

RUNS_BEFORE = 3  # in flight when the node is signalled
RUN_EVERY_S = 1.5  # one more run started this often while the node moves its clients
RUNS_AFTER = 2  # started once every service is on another node


@pytest.fixture(scope="module")
def ldm_platform() -> Iterator[tuple[Platform, list[User]]]:
    home = Path(tempfile.mkdtemp(prefix="apex-ldm-"))
    home.chmod(0o755)
    env = platform_env(home)
    env["APEX_NATS_CLUSTER"] = "3"
    env["APEX_MAX_RUNS_PER_USER"] = "20"
    platform = Platform(home, env)
    try:
        platform.start(timeout=240)
        users = [platform.register() for _ in range(2)]
        for user in users:  # runs with data: several tool calls each, long enough to be in flight
            platform.upload(user, list(generate(days=3, seed=len(user.email))))
        yield platform, users
    finally:
        platform.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_lame_duck_node_moves_every_service_without_a_failed_publish(
    ldm_platform: tuple[Platform, list[User]],
) -> None:
    platform, users = ldm_platform
    began = time.monotonic()
    assert len(nats_servers(platform.recorded_env()["APEX_NATS_URL"])) == 3
    placed = _service_connections(platform, NODES)
    assert sum(placed.values(), Counter()) == Counter(_names(placed)), "a service is not connected once"
    assert {name.split("-", 1)[0] for name in _names(placed)} == set(START_ORDER)
    victim = max(NODES, key=lambda node: sum(placed[node].values()))
    survivors = tuple(node for node in NODES if node != victim)
    moving = sorted(placed[victim])
    published = _publishes(platform)

    clients: list[Client] = []
    readers: list[asyncio.Task[None]] = []

    def start_run() -> None:
        client = Client(users[len(clients) % len(users)])
        clients.append(client)
        readers.append(asyncio.create_task(_run(platform, client, QUESTIONS[len(clients) % 3])))

    for _ in range(RUNS_BEFORE):
        start_run()
    await _until(lambda: all(c.run_id for c in clients), 60, "every message accepted")

    pid = platform.pid(victim)
    await asyncio.to_thread(lame_duck, pid)
    signalled, signalled_wall = time.monotonic(), time.time()
    in_flight = sum(not c.done.is_set() for c in clients)
    print(
        f"\n{victim} ({', '.join(moving)}) in lame duck mode with {in_flight} of {RUNS_BEFORE} runs in flight"
    )
    assert in_flight, "every run ended before the signal: nothing was in flight"

    arrived: dict[str, float] = {}  # service connection -> seconds after the signal it was elsewhere
    next_run = signalled + RUN_EVERY_S
    while len(arrived) < len(moving):
        now = time.monotonic()
        assert now - signalled < LAME_DUCK_DURATION_S + 10, f"still on {victim}: {set(moving) - set(arrived)}"
        elsewhere = _names(_service_connections(platform, survivors))
        arrived.update(
            {name: now - signalled for name in moving if name in elsewhere and name not in arrived}
        )
        if now >= next_run:
            start_run()
            next_run += RUN_EVERY_S
        await asyncio.sleep(0.1)
    during = len(clients) - RUNS_BEFORE
    moved = _service_connections(platform, survivors)
    assert sum(moved.values(), Counter()) == sum(placed.values(), Counter()), (
        f"every service connected once, to the other nodes: {moved}"
    )
    print(
        f"every service on {' and '.join(survivors)}: the first {min(arrived.values()):.2f} s, "
        f"the last {max(arrived.values()):.2f} s after the signal (grace {LAME_DUCK_GRACE_S} s)"
    )

    for _ in range(RUNS_AFTER):
        start_run()
    await asyncio.wait_for(asyncio.gather(*readers), 180)
    gateway = next(node for node in NODES for name in placed[node] if name.startswith("gateway-"))
    for i, client in enumerate(clients):
        try:
            await _check_client(platform, client)
        except AssertionError as exc:  # say which run, and where its missing events fell
            missed = await _missed(platform, client, signalled_wall)
            phase = "before" if i < RUNS_BEFORE else "during" if i < RUNS_BEFORE + during else "after"
            raise AssertionError(
                f"run {i} (started {phase} the signal; gateway on {gateway}, {victim} in lame duck): "
                f"events not seen live (seq, type, s after the signal): {missed}"
            ) from exc

    after = _publishes(platform)
    stored = after["stored"] - published["stored"]
    retried = after["retries"] - published["retries"]
    failed = after["failed"]
    print(
        f"{len(clients)} runs completed once each ({RUNS_BEFORE} before the signal, {during} while "
        f"the node moved its clients, {RUNS_AFTER} after); publishes meanwhile: {stored:.0f} stored, "
        f"{retried:.0f} attempts retried, {failed:.0f} failed"
    )
    assert failed == 0, f"{failed:.0f} publishes failed"
    assert stored > 0
    log = platform.log_path.read_text(errors="replace")
    assert "publish_failed" not in log, "a publish failure in the log"

    await asyncio.to_thread(platform.wait_restarted, victim, pid, LAME_DUCK_DURATION_S + 30)
    print(f"{victim} exited and was restarted by apex up; the test took {time.monotonic() - began:.0f} s")


def _service_connections(platform: Platform, nodes: tuple[str, ...]) -> dict[str, Counter[str]]:
    """Per node, the services' NATS connections (by connection name, ``<service>-<instance>``)."""
    out: dict[str, Counter[str]] = {}
    for node in nodes:
        try:
            page = _monitor(platform, node, "/connz?limit=1024")
        except OSError:  # a node that has left (the lame duck exits once its clients are gone)
            out[node] = Counter()
            continue
        names = [str(c.get("name") or "") for c in page.get("connections", [])]
        out[node] = Counter(n for n in names if n.split("-", 1)[0] in START_ORDER)
    return out


async def _missed(platform: Platform, client: Client, wall: float) -> list[tuple[int, str, float]]:
    """The events of ``client``'s thread it did not see live, with when they were stored."""
    seen = {seq for _at, seq, _event in client.events}
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(
            f"{platform.gateway}/api/v1/threads/{client.thread_id}/events",
            params={"after_seq": 0, "limit": 5000},
            headers={"Authorization": f"Bearer {client.user.access_token}"},
        )
    return [
        (item["seq"], item["event"]["type"], round(_stored(item["event"]) - wall, 2))
        for item in answer.json()["events"]
        if item["seq"] not in seen
    ]


def _stored(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["occurred_at"]).timestamp()


def _names(placed: dict[str, Counter[str]]) -> set[str]:
    return {name for names in placed.values() for name in names}


def _publishes(platform: Platform) -> dict[str, float]:
    """Every service's publish counters (``/metrics``), summed: stored, failed, retries."""
    totals = {"stored": 0.0, "failed": 0.0, "retries": 0.0}
    for variable, _default in SERVICE_PORTS.values():
        text = httpx.get(f"http://127.0.0.1:{platform.env[variable]}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "apex_bus_publishes_total":
                    totals[sample.labels["outcome"]] += sample.value
                elif sample.name == "apex_bus_publish_retries_total":
                    totals["retries"] += sample.value
    return totals
