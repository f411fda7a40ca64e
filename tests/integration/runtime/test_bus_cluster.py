"""The bus on a three-node JetStream cluster (``nats_cluster3``): the topology gets three
replicas, a client given every node's URL keeps publishing through the loss of a stream
leader without losing an acknowledged message, and the restarted node catches up."""

from __future__ import annotations

import asyncio
import time

import orjson

from apex_cli.natscluster import NatsCluster
from apex_contracts import (
    MessageCreated,
    MessageCreatedData,
    Scope,
    derive_id,
    new_id,
    subjects,
)
from apex_contracts.streams import APEX_EVT, KV_TOOL_LEDGER, STREAMS
from apex_runtime import Bus


def _message(scope: Scope, n: int) -> MessageCreated:
    return scope.make(
        MessageCreated,
        MessageCreatedData(
            message_id=derive_id("msg", scope.thread_id, str(n)), content=f"m{n}", client_msg_id=str(n)
        ),
        id=f"{scope.run_id}:{n}",
    )


async def test_topology_has_three_replicas_and_survives_the_leader(nats_cluster3: NatsCluster) -> None:
    bus = await Bus.connect(nats_cluster3.url, "cluster-test", replicas=3)
    try:
        await bus.ensure_topology()
        for spec in STREAMS:
            assert (await bus.js.stream_info(spec.name)).config.num_replicas == 3, spec.name
        assert (await bus.js.stream_info(f"KV_{KV_TOOL_LEDGER}")).config.num_replicas == 3

        scope = Scope(
            tenant_id=new_id("ten"), user_id=new_id("usr"), thread_id=new_id("thr"), run_id=new_id("run")
        )
        subject = subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)
        acked: dict[int, str] = {}
        killed = asyncio.Event()

        async def publish_all() -> None:
            for n in range(400):
                message = _message(scope, n)
                acked[await bus.publish(message, subject)] = message.id
                if n == 100:
                    killed.set()

        publisher = asyncio.create_task(publish_all())
        await killed.wait()
        leader = nats_cluster3.stream_leader(APEX_EVT.name)
        assert leader is not None
        leader.kill()
        started = time.monotonic()
        await asyncio.wait_for(publisher, 120)
        print(f"\n400 publishes through the loss of {leader.name} ({time.monotonic() - started:.1f} s)")

        new_leader = nats_cluster3.stream_leader(APEX_EVT.name)
        assert new_leader is not None and new_leader is not leader
        # read through the last acknowledged seq: a follower answering may lag by a moment
        stored = {
            seq: orjson.loads(data)["id"]
            async for seq, data in bus.read_subject(subject, through_seq=max(acked))
        }
        assert stored == acked, "an acknowledged message is missing, moved or doubled"

        leader.start()
        nats_cluster3.wait_healthy(60, [leader])
        deadline = time.monotonic() + 60
        while (detail := nats_cluster3.stream_detail(leader, APEX_EVT.name)) is None or detail["state"][
            "last_seq"
        ] < max(acked):
            assert time.monotonic() < deadline, f"{leader.name} did not catch up: {detail}"
            await asyncio.sleep(0.2)
        assert detail["state"]["messages"] == len(acked)
    finally:
        await bus.close()


async def test_a_read_goes_on_through_the_leaders_last_seq(nats_cluster3: NatsCluster) -> None:
    bus = await Bus.connect(nats_cluster3.url, "cluster-read", replicas=3)
    try:
        await bus.ensure_topology()
        scope = Scope(
            tenant_id=new_id("ten"), user_id=new_id("usr"), thread_id=new_id("thr"), run_id=new_id("run")
        )
        subject = subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)
        for n in range(50):
            last = await bus.publish(_message(scope, n), subject)
            head = await bus.last_seq(subject, leader=True)
            assert head == last
            read = [seq async for seq, _ in bus.read_subject(subject, through_seq=head)]
            assert read[-1] == head and len(read) == n + 1
    finally:
        await bus.close()
