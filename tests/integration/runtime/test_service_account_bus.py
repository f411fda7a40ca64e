"""A tenant's service account on a NATS configured as ``apex up`` configures it: its user
(issued by ``AccountIssuer`` with ``service_account_permissions``) may request on its own
``apex.api.<tenant>.<user>.>``, read its own events with a core subscription or an
ordered consumer filtered to them (replay from the first seq), and is refused by the
server everywhere else; a revocation pushed through the system account disconnects it."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from apex_cli.embedded import EmbeddedServer, nats_server
from apex_cli.natsauth import ADMIN, NatsAuth
from apex_contracts import new_id
from apex_contracts.busapi import api_subject, inbox_prefix
from apex_contracts.streams import APEX_CMD, APEX_EVT
from apex_runtime.bus import NatsBus
from apex_runtime.buspermissions import service_account_permissions
from apex_runtime.natsissuer import push_account

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedServer, NatsAuth]]:
    root: Path = tmp_path_factory.mktemp("sa-bus")
    auth = NatsAuth.ensure(root / "auth")
    server = nats_server(root / "nats", auth=auth).start()
    yield server, auth
    server.stop()


class Account:
    def __init__(self, server: EmbeddedServer, auth: NatsAuth, root: Path) -> None:
        self.tenant_id, self.user_id = new_id("ten"), new_id("usr")
        self.issued = auth.issuer.issue("test", service_account_permissions(self.tenant_id, self.user_id))
        self.creds = root / f"{self.user_id}.creds"
        self.creds.write_text(self.issued.creds)
        self.url = server.url
        self.refused: list[str] = []
        self.disconnected = asyncio.Event()

    async def connect(self) -> NATS:
        async def on_error(exc: Exception) -> None:
            self.refused.append(str(exc).lower())  # nats-py lowercases the subject too

        async def on_disconnect() -> None:
            self.disconnected.set()

        return await nats.connect(
            self.url,
            user_credentials=str(self.creds),
            inbox_prefix=inbox_prefix(self.user_id).encode(),
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            allow_reconnect=False,
        )

    def was_refused(self, what: str, subject: str) -> bool:
        return any(f'{what} to "{subject.lower()}"' in e for e in self.refused)


@pytest.fixture
async def admin(secured: tuple[EmbeddedServer, NatsAuth]) -> AsyncIterator[NatsBus]:
    server, auth = secured
    bus = await NatsBus.connect(server.url, "admin", user_credentials=str(auth.creds_path(ADMIN)))
    await bus.ensure_topology(wait_s=10)
    yield bus
    await bus.close()


async def test_requests_on_its_own_subjects_are_answered(
    secured: tuple[EmbeddedServer, NatsAuth], admin: NatsBus, tmp_path: Path
) -> None:
    account = Account(*secured, tmp_path)

    async def answer(msg: Msg) -> None:
        await msg.respond(b'{"type":"message.accepted"}')

    await admin.nc.subscribe("apex.api.*.*.message.send", queue="q", cb=answer)
    await admin.nc.flush()
    nc = await account.connect()
    try:
        reply = await nc.request(
            api_subject(account.tenant_id, account.user_id, "message.send"), b"{}", timeout=5
        )
        assert reply.data == b'{"type":"message.accepted"}'
    finally:
        await nc.close()
    assert account.refused == []


async def test_it_replays_its_own_events_with_an_ordered_consumer(
    secured: tuple[EmbeddedServer, NatsAuth], admin: NatsBus, tmp_path: Path
) -> None:
    account = Account(*secured, tmp_path)
    mine = f"apex.evt.{account.tenant_id}.{account.user_id}.{new_id('thr')}"
    colleague = f"apex.evt.{account.tenant_id}.{new_id('usr')}.{new_id('thr')}"
    for i in range(3):
        await admin.js.publish(mine, f"mine {i}".encode())
        await admin.js.publish(colleague, f"theirs {i}".encode())
    nc = await account.connect()
    try:
        got: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()

        async def on_event(msg: Msg) -> None:
            got.put_nowait((msg.metadata.sequence.stream, msg.data))

        own = f"apex.evt.{account.tenant_id}.{account.user_id}.>"
        await nc.jetstream().subscribe(
            own,
            stream=APEX_EVT.name,
            ordered_consumer=True,
            cb=on_event,
            config=ConsumerConfig(name=f"replay-{account.user_id}", deliver_policy=DeliverPolicy.ALL),
        )
        events = [await asyncio.wait_for(got.get(), 5) for _ in range(3)]
        assert [data for _, data in events] == [b"mine 0", b"mine 1", b"mine 2"]
        assert [seq for seq, _ in events] == sorted(seq for seq, _ in events)
        await asyncio.sleep(0.3)
        assert got.empty()  # nothing of the colleague's
    finally:
        await nc.close()
    assert account.refused == []


async def test_everything_else_is_refused_by_the_server(
    secured: tuple[EmbeddedServer, NatsAuth], admin: NatsBus, tmp_path: Path
) -> None:
    account = Account(*secured, tmp_path)
    other_tenant, other_user = new_id("ten"), new_id("usr")
    nc = await account.connect()
    js = nc.jetstream()
    refused_publishes = [
        api_subject(other_tenant, account.user_id, "message.send"),
        api_subject(account.tenant_id, other_user, "message.send"),
        "apex.cmd.run.start",
        f"apex.evt.{account.tenant_id}.{account.user_id}.{new_id('thr')}",  # no forging events
        f"$JS.API.STREAM.DELETE.{APEX_EVT.name}",
        f"$JS.API.STREAM.PURGE.{APEX_EVT.name}",
        f"$JS.API.CONSUMER.CREATE.{APEX_EVT.name}",  # unfiltered
        f"$JS.API.CONSUMER.CREATE.{APEX_EVT.name}.x.apex.evt.{account.tenant_id}.{other_user}.>",
        f"$JS.API.CONSUMER.CREATE.{APEX_EVT.name}.persistence-postgres.apex.evt.{account.tenant_id}.{account.user_id}.>",
        "$JS.API.STREAM.NAMES",
    ]
    refused_subscriptions = ["_INBOX.>", f"apex.evt.{other_tenant}.>", "apex.evt.>", "apex.cmd.>"]
    try:
        for subject in refused_publishes:
            await nc.publish(subject, b"{}")
        for subject in refused_subscriptions:
            await nc.subscribe(subject)
        await nc.flush()
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
            await js.subscribe(
                f"apex.evt.{other_tenant}.{other_user}.>",
                stream=APEX_EVT.name,
                ordered_consumer=True,
                config=ConsumerConfig(name="probe"),
            )
        await asyncio.sleep(0.5)
    finally:
        await nc.close()
    for subject in refused_publishes:
        assert account.was_refused("publish", subject), (subject, account.refused)
    for subject in refused_subscriptions:
        assert account.was_refused("subscription", subject), (subject, account.refused)
    assert (await admin.js.stream_info(APEX_EVT.name)).config.name == APEX_EVT.name


async def test_a_consumer_cannot_deliver_into_a_stream(
    secured: tuple[EmbeddedServer, NatsAuth], admin: NatsBus, tmp_path: Path
) -> None:
    """The deliver subject is in the request's body, out of reach of permissions: one in
    APEX_EVT (another tenant's thread) is refused by the server as a cycle, and one on a
    command subject stores nothing in APEX_CMD."""
    account = Account(*secured, tmp_path)
    mine = f"apex.evt.{account.tenant_id}.{account.user_id}.{new_id('thr')}"
    await admin.js.publish(mine, b"{}")
    victim = f"apex.evt.{new_id('ten')}.{new_id('usr')}.{new_id('thr')}"
    own = f"apex.evt.{account.tenant_id}.{account.user_id}.>"
    nc = await account.connect()
    answers = []
    try:
        for i, deliver in enumerate((victim, "apex.cmd.run.start")):
            name = f"deliver-{i}-{account.user_id}"
            config = {"name": name, "deliver_subject": deliver, "filter_subject": own, "ack_policy": "none"}
            body = orjson.dumps({"stream_name": APEX_EVT.name, "config": config})
            reply = await nc.request(f"$JS.API.CONSUMER.CREATE.{APEX_EVT.name}.{name}.{own}", body, timeout=5)
            answers.append(orjson.loads(reply.data))
        await asyncio.sleep(1.5)
    finally:
        await nc.close()
    assert answers[0]["error"]["description"] == "consumer deliver subject forms a cycle"
    assert await admin.last_seq(victim) == 0
    assert await admin.last_seq("apex.cmd.run.start", stream=APEX_CMD.name) == 0


# nats-py leaves the socket of a refused connect to the garbage collector
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_revocation_disconnects_it_within_seconds(
    secured: tuple[EmbeddedServer, NatsAuth], tmp_path: Path
) -> None:
    server, auth = secured
    account = Account(server, auth, tmp_path)
    bystander = Account(server, auth, tmp_path)
    nc, other = await account.connect(), await bystander.connect()
    try:
        started = time.monotonic()
        revoked = {account.issued.public_key: int(time.time())}
        await push_account(server.url, auth.creds_path("system"), auth.issuer.account_jwt(revoked))
        await asyncio.wait_for(account.disconnected.wait(), 5)
        elapsed = time.monotonic() - started
        print(f"revocation to disconnect: {elapsed * 1000:.0f} ms")
        assert elapsed < 5
        assert other.is_connected  # only the revoked key goes
        with pytest.raises(nats.errors.Error):
            await account.connect()  # and it cannot come back
        gc.collect()  # nats-py leaves the refused socket to the GC: collect it under this test's filter
    finally:
        await nc.close()
        await other.close()
        await push_account(server.url, auth.creds_path("system"), auth.issuer.account_jwt())


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_after_a_restart_the_revocations_must_be_pushed_again(tmp_path: Path) -> None:
    """``apex up`` signs the account JWT anew at each start and the full resolver takes the
    newer one, so a restarted NATS forgets the revocations until they are pushed again
    (the auth service does at its start): then the revoked user is disconnected."""
    auth = NatsAuth.ensure(tmp_path / "auth")
    server = nats_server(tmp_path / "nats", auth=auth).start()
    account = Account(server, auth, tmp_path)
    revoked = {account.issued.public_key: int(time.time())}
    try:
        await push_account(server.url, auth.creds_path("system"), auth.issuer.account_jwt(revoked))
    finally:
        server.stop()
    await asyncio.sleep(1.1)  # the next start's preload is signed in a later second
    again = NatsAuth.ensure(tmp_path / "auth")
    server = nats_server(tmp_path / "nats", server.port, auth=again).start()
    try:
        nc = await account.connect()  # the preload has no revocations
        await push_account(server.url, again.creds_path("system"), again.issuer.account_jwt(revoked))
        await asyncio.wait_for(account.disconnected.wait(), 5)
        await nc.close()
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await account.connect()
        gc.collect()  # nats-py leaves the refused socket to the GC: collect it under this test's filter
    finally:
        server.stop()
