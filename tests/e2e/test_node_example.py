"""The Node example (examples/node, nats.js from npm) against the running platform: with
only a service account's credentials it starts a run, follows its thread with an ordered
consumer, disconnects halfway, resumes from the next seq on a new connection and ends
at ``run.completed``; what it saw is the thread's events exactly (no gap, no duplicate)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import nats
import orjson
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from apex_contracts.streams import APEX_EVT
from tests.e2e.platform import REPO, Platform

EXAMPLE = REPO / "examples" / "node"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def _installed() -> Path:
    """The example's dependencies, installed from its lock file (npm ci) when missing."""
    if not (EXAMPLE / "node_modules" / "nats" / "package.json").exists():
        npm = shutil.which("npm")
        assert npm is not None, "node without npm: install npm to run the example"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, check=True, timeout=300)
    return EXAMPLE / "follow-run.mjs"


async def _thread_seqs(platform: Platform, subject: str, count: int) -> list[int]:
    """The thread's first ``count`` stream seqs, read as the administrator."""
    nc = await nats.connect(platform.recorded_env()["APEX_NATS_URL"], **platform.nats_options())
    try:
        sub = await nc.jetstream().subscribe(
            subject,
            stream=APEX_EVT.name,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        return [(await sub.next_msg(timeout=10)).metadata.sequence.stream for _ in range(count)]
    finally:
        await nc.close()


async def test_the_node_example_runs_follows_and_resumes(platform: Platform) -> None:
    script = await asyncio.to_thread(_installed)
    admin = platform.register()
    created = platform.api(admin, "POST", "/api/v1/service-accounts", json={"name": "node example"})
    assert created.status_code == 201, created.text
    account = created.json()
    creds = platform.home / f"{account['id']}.creds"
    creds.write_text(account["creds"])
    env = {
        **os.environ,
        "APEX_NATS_URL": account["nats_url"],
        "APEX_NATS_CREDS": str(creds),
        "APEX_TENANT_ID": account["tenant_id"],
        "APEX_USER_ID": account["user_id"],
        "APEX_RESUME_AFTER": "3",
    }
    done = await asyncio.to_thread(
        subprocess.run, [str(NODE), str(script)], cwd=EXAMPLE, env=env, capture_output=True, timeout=180
    )
    assert done.returncode == 0, (done.stdout.decode()[-3000:], done.stderr.decode()[-3000:])
    lines = [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]
    summary, events = lines[-1], lines[:-1]
    assert summary["terminal"] == "run.completed"
    assert [e["connection"] for e in events[:3]] == [1, 1, 1] and events[3]["connection"] == 2
    assert summary["resumed_at"] == events[2]["seq"] + 1
    seqs = [e["seq"] for e in events]
    subject = f"apex.evt.{account['tenant_id']}.{account['user_id']}.{summary['thread_id']}"
    assert seqs == await _thread_seqs(platform, subject, len(seqs)), (
        "every event of the thread, once, in order"
    )
    assert events[0]["type"] == "message.created" and events[-1]["type"] == "run.completed"
