"""The bus as ``apex up`` runs it (operator mode, one user per service), on a private
NATS: anonymous connections are refused; each service's user can do its start-up work
(the whole JetStream topology, its durable consumers) and is refused by the server
outside its subjects (another service's command, deleting or purging a stream)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.msg import Msg

from apex_cli.embedded import EmbeddedServer, nats_server
from apex_cli.natsauth import ADMIN, NatsAuth
from apex_cli.natscluster import nats_cluster
from apex_contracts import subjects
from apex_contracts.streams import APEX_EVT
from apex_runtime.bus import NatsBus, nats_servers
from apex_runtime.buspermissions import SERVICES
from tests.natsprobe import anonymous_connect

pytestmark = pytest.mark.timeout(120)

# per service: a command subject it never sends (the server must refuse the publish)
FORBIDDEN_COMMAND = {
    "gateway": subjects.CMD_TOOL_CALL,
    "auth": subjects.CMD_RUN_START,
    "orchestrator": subjects.CMD_TOOL_CALL,
    "agents": subjects.CMD_RUN_START,
    "tools": subjects.CMD_RUN_START,
    "persistence": subjects.CMD_AGENT_STEP,
    "ingest": subjects.CMD_RUN_START,
}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedServer, NatsAuth]]:
    root: Path = tmp_path_factory.mktemp("nats-auth")
    auth = NatsAuth.ensure(root / "auth")
    server = nats_server(root / "nats", auth=auth).start()
    yield server, auth
    server.stop()


async def test_an_anonymous_connection_is_refused(secured: tuple[EmbeddedServer, NatsAuth]) -> None:
    """A client without credentials, at the protocol level (nats-py leaves the socket of
    a refused connect for the garbage collector)."""
    server, _ = secured
    assert await anonymous_connect("127.0.0.1", server.port) == b"-ERR 'Authorization Violation'"


async def test_the_keys_are_kept_and_the_files_are_private(secured: tuple[EmbeddedServer, NatsAuth]) -> None:
    _, auth = secured
    again = NatsAuth.ensure(auth.root)
    assert again.account.public == auth.account.public and again.operator.public == auth.operator.public
    assert auth.root.stat().st_mode & 0o777 == 0o700
    for path in auth.root.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path


@pytest.mark.parametrize("service", SERVICES)
async def test_each_service_does_its_work_and_nothing_else(
    secured: tuple[EmbeddedServer, NatsAuth], service: str
) -> None:
    server, auth = secured
    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc).lower())  # nats-py lowercases the subject too

    bus = NatsBus(
        await nats.connect(server.url, user_credentials=str(auth.creds_path(service)), error_cb=on_error)
    )
    admin = await NatsBus.connect(server.url, "admin", user_credentials=str(auth.creds_path(ADMIN)))
    try:
        await bus.ensure_topology(wait_s=10)  # what every service does at start
        assert refused == []

        await bus.nc.publish(FORBIDDEN_COMMAND[service], b"{}")
        await bus.nc.flush()
        with pytest.raises(nats.errors.TimeoutError):
            await bus.nc.request(f"$JS.API.STREAM.DELETE.{APEX_EVT.name}", b"", timeout=1.0)
        with pytest.raises(nats.errors.TimeoutError):
            await bus.nc.request("$JS.API.STREAM.DELETE.KV_apex_runs", b"", timeout=1.0)
        await asyncio.sleep(0.3)
        assert any(f'publish to "{FORBIDDEN_COMMAND[service]}"'.lower() in e for e in refused), refused
        assert any('publish to "$JS.API.STREAM.DELETE.APEX_EVT"'.lower() in e for e in refused), refused
        assert any('publish to "$JS.API.STREAM.DELETE.KV_apex_runs"'.lower() in e for e in refused), refused
        # the streams are still there (asked as the administrator)
        assert (await admin.js.stream_info(APEX_EVT.name)).config.name == APEX_EVT.name
    finally:
        await bus.close()
        await admin.close()


async def test_tools_cannot_start_runs_nor_read_every_thread(
    secured: tuple[EmbeddedServer, NatsAuth],
) -> None:
    server, auth = secured
    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc).lower())  # nats-py lowercases the subject too

    nc = await nats.connect(server.url, user_credentials=str(auth.creds_path("tools")), error_cb=on_error)
    try:
        await nc.publish(subjects.CMD_RUN_START, b"{}")
        await nc.subscribe(subjects.EVT_ALL)
        await nc.subscribe("apex.cmd.>")
        await nc.flush()
        await asyncio.sleep(0.3)
    finally:
        await nc.close()
    assert any('publish to "apex.cmd.run.start"'.lower() in e for e in refused), refused
    assert any('subscription to "apex.evt.>"'.lower() in e for e in refused), refused
    assert any('subscription to "apex.cmd.>"'.lower() in e for e in refused), refused


async def test_a_three_node_cluster_runs_with_the_same_credentials(tmp_path: Path) -> None:
    """``APEX_NATS_CLUSTER=3``: every node trusts the same operator and keeps the accounts
    in its own resolver directory; a service's user creates the replicated topology."""
    auth = NatsAuth.ensure(tmp_path / "auth")
    cluster = nats_cluster(tmp_path, 3, auth=auth)
    try:
        cluster.start()
        nc = await nats.connect(
            nats_servers(cluster.url), user_credentials=str(auth.creds_path("orchestrator"))
        )
        bus = NatsBus(nc, replicas=3)
        try:
            await bus.ensure_topology(wait_s=60)
            info = await bus.js.stream_info(APEX_EVT.name)
            assert info.config.num_replicas == 3
        finally:
            await bus.close()
    finally:
        cluster.stop()


async def test_persistence_answers_queries_and_streams_rebuild_progress(
    secured: tuple[EmbeddedServer, NatsAuth],
) -> None:
    """A query gets its one reply through the ``resp`` permission (no ``_INBOX.>``
    grant); a rebuild's many progress messages go to the requester's progress subject."""
    from apex_persistence.rebuild.control import PROGRESS_PREFIX, REBUILD_SUBJECT

    server, auth = secured
    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc).lower())

    persistence = await nats.connect(
        server.url, user_credentials=str(auth.creds_path("persistence")), error_cb=on_error
    )
    admin = await nats.connect(server.url, user_credentials=str(auth.creds_path(ADMIN)))
    try:

        async def answer(msg: Msg) -> None:
            await msg.respond(b"page")

        async def progress(msg: Msg) -> None:
            for step in (b"accepted", b"progress", b"finished"):
                await persistence.publish(msg.reply, step)

        await persistence.subscribe(subjects.query("threads.list"), cb=answer)
        await persistence.subscribe(REBUILD_SUBJECT, cb=progress)
        await persistence.flush()
        assert (await admin.request(subjects.query("threads.list"), b"{}", timeout=5)).data == b"page"

        heard: asyncio.Queue[bytes] = asyncio.Queue()

        async def hear(msg: Msg) -> None:
            heard.put_nowait(msg.data)

        inbox = f"{PROGRESS_PREFIX}.{admin.new_inbox().rsplit('.', 1)[-1]}"
        await admin.subscribe(inbox, cb=hear)
        await admin.publish(REBUILD_SUBJECT, b"{}", reply=inbox)
        got = [await asyncio.wait_for(heard.get(), 5) for _ in range(3)]
        assert got == [b"accepted", b"progress", b"finished"]
        assert refused == []
    finally:
        await persistence.close()
        await admin.close()


async def test_the_orchestrators_sweeper_ends_a_stalled_run_as_its_own_user(
    secured: tuple[EmbeddedServer, NatsAuth],
) -> None:
    """The sweeper reads the thread events and asks the command stream which runs still
    have a ``run.start``: only in a fault (a run quiet past ``stall_after_s``), so the
    services' ordinary traffic never exercises that grant."""
    from apex_contracts import RunAccepted, RunAcceptedData, Scope, new_id
    from apex_contracts.streams import KV_USER_RUNS
    from apex_orchestrator.admission import UserSlots
    from apex_orchestrator.endings import RunEndings
    from apex_orchestrator.sweeper import Sweeper
    from apex_runtime import CircuitBreaker

    server, auth = secured
    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc).lower())

    bus = NatsBus(
        await nats.connect(
            server.url, user_credentials=str(auth.creds_path("orchestrator")), error_cb=on_error
        )
    )
    try:
        await bus.ensure_topology(wait_s=10)
        scope = Scope(
            tenant_id=new_id("ten"), user_id=new_id("usr"), thread_id=new_id("thr"), run_id=new_id("run")
        )
        await bus.publish_event(
            scope.make(RunAccepted, RunAcceptedData(message_id=new_id("msg"), question="q"), id=new_id("evt"))
        )
        slots = UserSlots(await bus.bucket(KV_USER_RUNS), CircuitBreaker("slots"))
        sweeper = Sweeper(bus, RunEndings(bus, slots), stall_after_s=0.0, lookback_s=60.0)
        assert await sweeper.sweep_once() == [scope.run_id]
        assert refused == []
    finally:
        await bus.close()


@pytest.mark.parametrize(
    ("service", "command"),
    [
        ("orchestrator", subjects.CMD_RUN_START),
        ("orchestrator", subjects.CMD_RUN_CANCEL),
        ("agents", subjects.CMD_AGENT_STEP),
        ("tools", subjects.CMD_TOOL_CALL),
        ("persistence", subjects.CMD_USAGE_INGEST_ALL.replace("*", "ten_1")),
    ],
)
async def test_a_service_dead_letters_the_commands_it_consumes(
    secured: tuple[EmbeddedServer, NatsAuth], service: str, command: str
) -> None:
    """The poison guard's path, taken only when a command fails every delivery: were it
    refused, the command would stay unsettled and its run would never end."""
    server, auth = secured
    bus = NatsBus(await nats.connect(server.url, user_credentials=str(auth.creds_path(service))))
    try:
        await bus.ensure_topology(wait_s=10)
        seq = await bus.dead_letter(
            subjects.dead_letter(command), b"{}", {"Apex-Error-Code": "internal_error"}
        )
        assert seq > 0
    finally:
        await bus.close()
