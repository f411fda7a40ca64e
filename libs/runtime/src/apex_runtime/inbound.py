"""The message a FastStream handler is handling, injected on the event loop.

``faststream.nats.NatsMessage`` injects it through FastStream's ``Context`` field, whose
``use`` is a plain function, and FastDepends runs a plain ``use`` through
``anyio.to_thread``: a worker thread and its wake-ups for every message handled (about
4 % of the agents' and tools' CPU in `make bench`'s profile). ``InboundMessage`` is the
same field with ``use`` as a coroutine, which FastDepends awaits in place.

``undecoded`` is the decoder of a handler that reads ``msg.body`` itself (validating it
with its model's ``model_validate_json``): FastStream's own decoder parses every body into
Python objects first, which such a handler never uses (for a usage batch of 5,000 rows,
5 % of persistence's CPU while it stores an upload)."""

from __future__ import annotations

from typing import Annotated, Any

from faststream._internal.context import Context  # the class faststream.nats's own annotations use
from faststream.message import StreamMessage
from faststream.nats.message import NatsMessage


class _OnTheLoop(Context):
    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return super().use(**kwargs)


InboundMessage = Annotated[NatsMessage, _OnTheLoop("message")]


async def undecoded(msg: StreamMessage[Any]) -> bytes:
    return msg.body
