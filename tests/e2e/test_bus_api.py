"""Tenants' service accounts and the bus API on the running platform (``apex up``): a
tenant admin creates one over HTTP; with its ``.creds`` alone a service starts a run on
NATS, follows it to ``run.completed``, replays it from seq 0 with an ordered consumer and
ingests usage the tenant's report then shows; the same credentials are refused by the
server on another tenant's and user's subjects, on ``apex.cmd.>`` and on stream deletion;
a revocation disconnects it within seconds, and both are in the tenant's audit log."""

from __future__ import annotations

import asyncio
import gc
import re
import ssl
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import nats.errors
import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from apex_contracts import new_id
from apex_contracts.busapi import api_subject
from apex_contracts.streams import APEX_CMD, APEX_EVT
from tests.e2e.platform import Platform, User
from tests.e2e.test_analyst import stored
from tests.e2e.test_erasure import _join

TERMINAL = ("run.completed", "run.failed", "run.cancelled")
SEED = re.compile(r"\bSU[A-Z2-7]{56}\b")


class ServiceAccount:
    """A service holding nothing but what ``POST /api/v1/service-accounts`` answered."""

    def __init__(self, created: dict[str, Any], home: Path, tls: ssl.SSLContext | None = None) -> None:
        self.created = created
        self.tls = tls
        self.tenant_id, self.user_id = created["tenant_id"], created["user_id"]
        self.creds = home / f"{created['id']}.creds"
        self.creds.write_text(created["creds"])
        self.refused: list[str] = []
        self.disconnected = asyncio.Event()

    async def connect(self) -> NATS:
        async def on_error(exc: Exception) -> None:
            self.refused.append(str(exc).lower())  # nats-py lowercases the subject too

        async def on_disconnect() -> None:
            self.disconnected.set()

        return await nats.connect(
            self.created["nats_url"],
            user_credentials=str(self.creds),
            inbox_prefix=self.created["inbox_prefix"].encode(),
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            allow_reconnect=False,
            **({"tls": self.tls} if self.tls else {}),
        )

    def subject(self, operation: str) -> str:
        return api_subject(self.tenant_id, self.user_id, operation)

    def was_refused(self, what: str, subject: str) -> bool:
        return any(f'{what} to "{subject.lower()}"' in e for e in self.refused)


def create(
    platform: Platform, admin: User, name: str = "nightly export", tls: ssl.SSLContext | None = None
) -> ServiceAccount:
    response = platform.api(admin, "POST", "/api/v1/service-accounts", json={"name": name})
    assert response.status_code == 201, response.text
    return ServiceAccount(response.json(), platform.home, tls)


async def events_of(
    nc: NATS, account: ServiceAccount, run_id: str, timeout: float = 110
) -> list[tuple[int, dict[str, Any]]]:
    """(seq, envelope) of the account's events from seq 0 up to the run's terminal event,
    through an ordered consumer filtered to the account's own subjects."""
    got: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()

    async def on_event(msg: Msg) -> None:
        got.put_nowait((msg.metadata.sequence.stream, orjson.loads(msg.data)))

    sub = await nc.jetstream().subscribe(
        f"apex.evt.{account.tenant_id}.{account.user_id}.>",
        stream=APEX_EVT.name,
        ordered_consumer=True,
        cb=on_event,
        config=ConsumerConfig(name=f"follow-{uuid.uuid4().hex}", deliver_policy=DeliverPolicy.ALL),
    )
    out: list[tuple[int, dict[str, Any]]] = []
    try:
        async with asyncio.timeout(timeout):
            while not out or not (out[-1][1]["type"] in TERMINAL and out[-1][1].get("run_id") == run_id):
                out.append(await got.get())
    finally:
        await sub.unsubscribe()
    return out


async def test_a_service_account_runs_follows_replays_and_ingests(platform: Platform) -> None:
    admin = platform.register()
    account = create(platform, admin)
    assert account.created["user_id"] != admin.user_id and account.tenant_id == admin.tenant_id
    assert "-----BEGIN NATS USER JWT-----" in account.created["creds"]
    listed = platform.api(admin, "GET", "/api/v1/service-accounts").json()["service_accounts"]
    assert [(a["id"], a["status"]) for a in listed] == [(account.created["id"], "active")]
    # never a seed again: a user seed is "SU" and 56 base32 characters (a public key may
    # contain "SU" anywhere inside it, never at its start)
    assert not SEED.search(orjson.dumps(listed).decode()), listed

    nc = await account.connect()
    try:
        request = {"client_msg_id": uuid.uuid4().hex, "text": "Where is my LLM spend going?"}
        reply = orjson.loads(
            (await nc.request(account.subject("message.send"), orjson.dumps(request), timeout=15)).data
        )
        assert reply["type"] == "message.accepted", reply
        again = orjson.loads(
            (await nc.request(account.subject("message.send"), orjson.dumps(request), timeout=15)).data
        )
        assert again["run_id"] == reply["run_id"], "the same client_msg_id is the same run"

        followed = await events_of(nc, account, reply["run_id"])
        types = [event["type"] for _, event in followed]
        assert types[0] == "message.created" and types[-1] == "run.completed", types
        assert all(event["thread_id"] == reply["thread_id"] for _, event in followed)
        seqs = [seq for seq, _ in followed]
        assert seqs == sorted(set(seqs))

        cancel = {"run_id": reply["run_id"]}
        cancelled = orjson.loads(
            (await nc.request(account.subject("run.cancel"), orjson.dumps(cancel), timeout=15)).data
        )
        assert cancelled == {
            "type": "run.cancel.requested",
            "run_id": reply["run_id"],
            "thread_id": reply["thread_id"],
            "status": "cancel_requested",
        }

        replayed = await events_of(nc, account, reply["run_id"])  # from seq 0 again
        assert [seq for seq, _ in replayed] == seqs
        assert [event["id"] for _, event in replayed] == [event["id"] for _, event in followed]

        bad = orjson.loads(
            (await nc.request(account.subject("message.send"), b'{"text": 1}', timeout=15)).data
        )
        assert bad["type"] == "error" and bad["code"] == "invalid_frame", bad
        missing = orjson.loads(
            (
                await nc.request(
                    account.subject("run.cancel"),
                    orjson.dumps({"run_id": "run_01J9Z8Y7X6W5V4T3S2R1Q0P9N8"}),
                    timeout=15,
                )
            ).data
        )
        assert (missing["type"], missing["code"]) == ("error", "not_found"), missing

        rows = [
            {
                "ts": "2026-11-30T10:00:00Z",
                "provider": "openai",
                "model": "gpt-4o-mini",
                "workload": "nightly",
                "prompt_tokens": 1000 + i,
                "completion_tokens": 200,
                "latency_ms": 800,
                "status": "ok",
                "request_id": f"bus-{uuid.uuid4().hex}",
            }
            for i in range(5)
        ]
        body = b"\n".join(orjson.dumps(row) for row in rows) + b"\nnot json\n"
        ingested = orjson.loads((await nc.request(account.subject("usage.ingest"), body, timeout=30)).data)
        assert ingested["type"] == "usage.ingested", ingested
        assert (ingested["accepted"], ingested["duplicates"]) == (5, 0)
        assert [r["line"] for r in ingested["rejected"]] == [6]
        assert stored(platform, admin, 5)["requests"] == 5  # in the tenant's report
    finally:
        await nc.close()
    assert account.refused == []
    probes = await audit_entries(
        platform, admin, lambda e: (e.get("details") or {}).get("via") == "bus run.cancel"
    )
    assert [(e["action"], e["actor_user_id"]) for e in probes] == [("access.denied", account.user_id)]


async def audit_entries(
    platform: Platform, admin: User, wanted: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> list[dict[str, Any]]:
    """The tenant's audit entries ``wanted`` picks, once there are some (the log is
    projected asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        entries = platform.api(admin, "GET", "/api/v1/audit").json()["entries"]
        found = [entry for entry in entries if wanted(entry)]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


async def test_the_same_credentials_are_refused_everywhere_else(platform: Platform) -> None:
    admin, stranger = platform.register(), platform.register()
    account = create(platform, admin)
    nc = await account.connect()
    refused = [
        api_subject(stranger.tenant_id, account.user_id, "message.send"),  # another tenant
        api_subject(stranger.tenant_id, stranger.user_id, "message.send"),
        api_subject(admin.tenant_id, admin.user_id, "message.send"),  # another user of the tenant
        "apex.cmd.run.start",
        "apex.cmd.usage.ingest." + admin.tenant_id,
        f"$JS.API.STREAM.DELETE.{APEX_EVT.name}",
        f"$JS.API.STREAM.DELETE.{APEX_CMD.name}",
        f"$JS.API.CONSUMER.CREATE.{APEX_EVT.name}.peek.apex.evt.{admin.tenant_id}.{admin.user_id}.>",
    ]
    subscriptions = [
        f"apex.evt.{admin.tenant_id}.{admin.user_id}.>",
        f"apex.evt.{stranger.tenant_id}.>",
        "apex.cmd.>",
        "_INBOX.>",
    ]
    try:
        for subject in refused:
            await nc.publish(subject, b"{}")
        for subject in subscriptions:
            await nc.subscribe(subject)
        await nc.flush()
        await asyncio.sleep(0.5)
    finally:
        await nc.close()
    for subject in refused:
        assert account.was_refused("publish", subject), (subject, account.refused)
    for subject in subscriptions:
        assert account.was_refused("subscription", subject), (subject, account.refused)
    admin_nc = await nats.connect(platform.recorded_env()["APEX_NATS_URL"], **platform.nats_options())
    try:
        assert (await admin_nc.jetstream().stream_info(APEX_EVT.name)).config.name == APEX_EVT.name
    finally:
        await admin_nc.close()


async def test_a_reply_subject_outside_its_inbox_is_neither_handled_nor_answered(platform: Platform) -> None:
    """The caller picks the reply subject and the responders publish with wider grants:
    a request that names a command or another tenant's thread as its reply would have
    them write there. It is dropped before it is handled."""
    admin, stranger = platform.register(), platform.register()
    account = create(platform, admin)
    targets = ["apex.cmd.run.start", f"apex.evt.{stranger.tenant_id}.{stranger.user_id}.{new_id('thr')}"]
    watcher = await nats.connect(platform.recorded_env()["APEX_NATS_URL"], **platform.nats_options())
    heard: list[str] = []

    async def hear(msg: Msg) -> None:
        heard.append(msg.subject)

    for subject in [*targets, f"apex.evt.{account.tenant_id}.{account.user_id}.>"]:
        await watcher.subscribe(subject, cb=hear)
    await watcher.flush()
    nc = await account.connect()
    try:
        for target in targets:
            request = {"client_msg_id": uuid.uuid4().hex, "text": "hello"}
            await nc.publish(account.subject("message.send"), orjson.dumps(request), reply=target)
        await nc.flush()
        await asyncio.sleep(2)
    finally:
        await nc.close()
        await watcher.close()
    assert heard == [], "no answer published there, and no run started"
    assert account.refused == []


async def test_only_a_tenant_admin_manages_service_accounts(platform: Platform) -> None:
    admin = platform.register()
    member = _join(platform, admin)
    assert platform.api(member, "POST", "/api/v1/service-accounts", json={"name": "x"}).status_code == 403
    assert platform.api(member, "GET", "/api/v1/service-accounts").status_code == 403
    other = create(platform, platform.register())
    # another tenant's account is not found, never revoked
    gone = platform.api(admin, "DELETE", f"/api/v1/service-accounts/{other.created['id']}")
    assert gone.status_code == 404


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # nats-py's refused socket
async def test_revocation_disconnects_within_seconds_and_is_audited(platform: Platform) -> None:
    admin = platform.register()
    account, kept = create(platform, admin), create(platform, admin, "kept")
    nc, other = await account.connect(), await kept.connect()
    try:
        started = time.monotonic()
        response = await asyncio.to_thread(
            platform.api, admin, "DELETE", f"/api/v1/service-accounts/{account.created['id']}"
        )
        assert response.status_code == 204, response.text
        await asyncio.wait_for(account.disconnected.wait(), 10)
        elapsed = time.monotonic() - started
        print(f"\nrevocation (DELETE sent) to disconnect: {elapsed * 1000:.0f} ms")
        assert elapsed < 5
        assert other.is_connected
        with pytest.raises(nats.errors.Error):
            await account.connect()
        gc.collect()  # nats-py leaves the refused socket to the GC: collect it under this test's filter
    finally:
        await nc.close()
        await other.close()
    listed = {
        a["id"]: a["status"]
        for a in platform.api(admin, "GET", "/api/v1/service-accounts").json()["service_accounts"]
    }
    assert listed == {account.created["id"]: "revoked", kept.created["id"]: "active"}
    deadline = time.monotonic() + 30
    actions: list[str] = []
    while time.monotonic() < deadline:
        entries = platform.api(admin, "GET", "/api/v1/audit").json()["entries"]
        actions = [
            e["action"] for e in entries if e.get("target") == f"service_account:{account.created['id']}"
        ]
        if "auth.service_account_revoked" in actions:
            break
        await asyncio.sleep(0.5)
    assert sorted(actions) == ["auth.service_account_created", "auth.service_account_revoked"]


def test_auth_pushes_the_revocations_at_its_start(platform: Platform) -> None:
    """A NATS started again by ``apex up`` has the account without revocations (see
    tests/integration/runtime/test_service_account_bus.py): auth pushes them when it starts."""
    assert "service accounts: revocations published at start" in platform.log_path.read_text(errors="replace")
