"""NATS operations counted over a real server: an instrumented process (the way `make
bench` starts the platform) counts what it sent and received by kind, and the server's
monitoring endpoint agrees on what was stored, delivered and acked."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from apex_cli.embedded import EmbeddedServer
from bench.natsops import INSTRUMENT, OpsCounter, client_snapshot, monitor_url

PROBE = """
import asyncio, sys, time
import nats

async def main() -> None:
    nc = await nats.connect(sys.argv[1], name="probe-1")
    js = nc.jetstream()
    await js.add_stream(name="APEX_EVT", subjects=["apex.evt.>"])
    for n in range(5):
        await js.publish("apex.evt.ten_1.usr_1.thr_1", b"{}", headers={"Nats-Msg-Id": f"e{n}"})
    sub = await js.pull_subscribe("apex.evt.>", durable="probe-projection")
    for msg in await sub.fetch(5, timeout=30):
        await msg.ack()
    await nc.flush()
    await asyncio.sleep(1.5)  # the counts are written every half second
    await nc.close()

asyncio.run(main())
"""


async def test_an_instrumented_process_counts_its_messages_by_kind(
    server_factory: Callable[[str], EmbeddedServer], tmp_path: Path
) -> None:
    nats = server_factory("nats")
    (tmp_path / "apex_probe.py").write_text(PROBE)
    ops_dir = tmp_path / "ops"
    ops_dir.mkdir()
    env = {
        **os.environ,
        "APEX_BENCH_OPS_DIR": str(ops_dir),
        "PYTHONPATH": os.pathsep.join([str(INSTRUMENT), str(tmp_path)]),
    }
    subprocess.run([sys.executable, "-m", "apex_probe", nats.url], env=env, check=True, timeout=60)

    counts = client_snapshot(ops_dir)
    assert counts["sent/probe/event_publish_js"] == 5
    assert counts["sent/probe/ack"] == 5
    assert counts["sent/probe/pull_request"] >= 1
    assert counts["received/probe/delivery_apex_evt"] == 5

    ops = OpsCounter(monitor_url(nats.data_dir / "nats.conf"), ops_dir)
    assert await ops.drained(timeout=30) < 30
    server = await ops.snapshot()
    assert server["stored/APEX_EVT"] == 5
    assert server["consumer/APEX_EVT/probe-projection/delivered"] == 5
    assert server["consumer/APEX_EVT/probe-projection/acked"] == 5
    assert server["sent/probe/ack"] == 5, "the snapshot holds the clients' counts too"
