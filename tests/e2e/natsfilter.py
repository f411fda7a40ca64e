"""A TCP proxy in front of NATS that drops every message on one subject on its way to the
client: a gateway connected through it never hears the revocation broadcasts, the way a
gateway misses an at-most-once core NATS message in real life. Everything else (JetStream,
requests, heartbeats) passes unchanged.

It parses the server-to-client half of the NATS protocol just enough: ``MSG`` and
``HMSG`` carry their payload's byte count on the control line; every other operation is
one line."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from apex_cli.embedded import free_port


class DroppingProxy:
    def __init__(self, upstream_host: str, upstream_port: int, drop_subject: str, userinfo: str = "") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.userinfo = userinfo
        self.drop = drop_subject.encode()
        self.port = free_port()
        self.dropped = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"nats://{self.userinfo}127.0.0.1:{self.port}"

    def start(self) -> DroppingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self._server = server
        self._ready.set()
        self._loop.run_forever()
        server.close()
        for writer in self._writers:
            writer.transport.abort()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._filter(up_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        writer.close()

    async def _filter(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while line := await reader.readuntil(b"\r\n"):
                op = line.split(b" ", 1)[0].upper()
                payload = b""
                if op in (b"MSG", b"HMSG"):
                    size = int(line.split()[-1])
                    payload = await reader.readexactly(size + 2)
                    if line.split()[1] == self.drop:
                        self.dropped += 1
                        continue
                writer.write(line + payload)
                await writer.drain()
        writer.close()


@contextlib.contextmanager
def dropping(nats_url: str, subject: str) -> Iterator[DroppingProxy]:
    rest = nats_url.removeprefix("nats://")
    userinfo, _, address = rest.rpartition("@")
    host, port = address.rsplit(":", 1)
    proxy = DroppingProxy(host, int(port), subject, userinfo + "@" if userinfo else "").start()
    try:
        yield proxy
    finally:
        proxy.stop()
