"""A cheaper reading of NATS message headers for nats-py's client.

Every message a JetStream consumer, a direct get or a KV read hands over carries headers
(``Nats-Msg-Id``, and a direct get's seven ``Nats-*`` lines), and nats-py reads them line
by line in Python: about 7 µs of a message's ~16 µs in the gateway's replay. Headers as
NATS servers and clients write them (``Name: value`` lines of printable ASCII) are read
here with one match and one split; anything else (other spacing, empty values, bytes
beyond ASCII) goes to nats-py's own parser, so the result is the same for every input
(property-tested against it in ``tests/unit/runtime/test_natsclient.py``).

faststream builds its connection with ``nats.connect`` and takes no client class, so
``read_headers_fast`` sets the reader on nats-py's ``Client`` itself, once per process,
before the first connection (``ServiceHost.connect``, ``connect_nats``, through
``mend_client``).

``mend_client`` also sets ``answer_pong``. nats-py's ``flush`` sends a PING and waits
for its PONG; when the wait times out, the PONG's future is cancelled but stays in
line, and the late PONG then sets a result on it. nats-py's own handler raises
``InvalidStateError`` there, its read loop ends (logged as "nats: encountered error"),
and the connection, still reported as connected, never reads again. A process paused
(SIGSTOP) during a flush met this: every request of its connection timed out from
then on.

And ``read_loop``: nats-py's read loop ends on any exception it has no branch for
(logged as "nats: encountered error"), again leaving a connection reported as connected
that never reads (nats.py#914). When it ends that way, the connection is now treated as
lost: it reconnects (or closes, where it may not reconnect), so its callbacks fire and
later requests are answered instead of timing out.

And ``raw_subscription``: a subscription whose messages go straight from the read loop
to a plain function, as (payload, header block): no header parsing, no ``Msg``, no queue
and no task hop. A batched direct get (``directget.py``) reads thousands of messages
this way; each would otherwise cost nats-py about 8 µs before anything looked at it.
Every other subscription is read by nats-py as before."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError

# header lines as servers write them: a token, ": ", and words of printable ASCII
# separated by single spaces; then the block's closing blank line
_PLAIN = re.compile(rb"(?:[!-9;-~]+: [!-~]+(?: [!-~]+)*\r\n)*(?:\r\n)?")
_NATS_PY: Callable[[bytes], dict[str, str]] = Client._parse_header_lines
_NATS_PY_READ_LOOP: Callable[[Client], Coroutine[Any, Any, None]] = Client._read_loop
_NATS_PY_PROCESS_MSG: Callable[..., Coroutine[Any, Any, None]] = Client._process_msg
# (payload, the header block as sent, ``NATS/1.0`` line included; None: no headers).
# Called on the read loop: it must not raise, and must not block.
RawHandler = Callable[[bytes, bytes | None], None]
_RAW = "_apex_raw_handlers"  # a connection's {sid: RawHandler}


class ReadLoopEnded(NatsError):
    """The connection stopped reading on an error nats-py has no branch for."""

    def __str__(self) -> str:
        return "nats: the connection stopped reading on an unexpected error"


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """A header block (after the ``NATS/1.0`` line) as nats-py reads it."""
    if _PLAIN.fullmatch(raw) is None:
        return _NATS_PY(raw)
    return dict(line.split(": ", 1) for line in raw.decode("ascii").split("\r\n") if line)


def read_headers_fast() -> None:
    """Makes every nats-py connection of this process read headers with
    ``parse_header_lines`` (idempotent)."""
    Client._parse_header_lines = staticmethod(parse_header_lines)  # type: ignore[method-assign]


async def answer_pong(self: Client) -> None:
    """nats-py's PONG handler, except that a flush that already gave up (its future
    done) is passed over instead of set: each PONG still answers the oldest PING."""
    if self._pongs:
        future = self._pongs.pop(0)
        if not future.done():
            future.set_result(True)
        self._pongs_received += 1
        self._pings_outstanding = 0


async def read_loop(self: Client) -> None:
    """nats-py's read loop; when it ends while the connection is still connected and the
    loop was not cancelled (a close or a reconnect cancels it after changing the status),
    it ended on an unexpected error, and the connection is handled as lost."""
    await _NATS_PY_READ_LOOP(self)
    task = asyncio.current_task()
    if self._status == Client.CONNECTED and not (task is not None and task.cancelling()):
        await self._process_op_err(ReadLoopEnded())


async def process_msg(
    self: Client, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
) -> None:
    """nats-py's message handling, except for a ``raw_subscription``'s messages."""
    handlers: dict[int, RawHandler] | None = getattr(self, _RAW, None)
    handler = handlers.get(sid) if handlers else None
    if handler is None:
        await _NATS_PY_PROCESS_MSG(self, sid, subject, reply, data, headers)
        return
    self.stats["in_msgs"] += 1
    self.stats["in_bytes"] += len(data)
    handler(data, headers)


@contextlib.asynccontextmanager
async def raw_subscription(nc: Client, subject: str, handler: RawHandler) -> AsyncIterator[None]:
    """Subscribes ``handler`` to ``subject`` for the block: each message is handed over as
    the read loop reads it (``RawHandler``); unsubscribed at the end."""
    mend_client()  # ``process_msg`` hands the messages over
    sub = await nc.subscribe(subject)
    handlers: dict[int, RawHandler] = nc.__dict__.setdefault(_RAW, {})
    handlers[sub._id] = handler
    try:
        yield
    finally:
        del handlers[sub._id]
        await sub.unsubscribe()


def mend_client() -> None:
    """Gives every nats-py connection of this process ``parse_header_lines``,
    ``answer_pong``, ``read_loop`` and ``process_msg`` (idempotent)."""
    read_headers_fast()
    Client._process_pong = answer_pong  # type: ignore[method-assign]
    Client._read_loop = read_loop  # type: ignore[method-assign]
    Client._process_msg = process_msg  # type: ignore[method-assign]
