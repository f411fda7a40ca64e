"""``python -m apex_persistence projections rebuild [--store S]`` (and ``apex projections
rebuild``): asks a running persistence instance to rebuild, and prints its progress."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from apex_persistence.rebuild.control import PROGRESS_PREFIX, REBUILD_SUBJECT, REBUILDABLE
from apex_persistence.settings import PersistenceSettings
from apex_runtime import Bus, Notice

Printer = Callable[[str], None]


async def projections_rebuild(
    settings: PersistenceSettings,
    store: str | None = None,
    *,
    say: Printer = print,
    answer_s: float = 5.0,
    silence_s: float = 600.0,
) -> int:
    """0 when every store was rebuilt and swapped in; 1 otherwise (nobody answered, a
    store failed, or the instance went silent for ``silence_s``)."""
    stores = [store] if store else list(REBUILDABLE)
    bus = await Bus.connect(settings.nats_url, "persistence-rebuild", **settings.nats_options())
    replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_reply(notice: Notice) -> None:
        if notice.headers.get("Status") == "503":  # nobody subscribes to the subject
            replies.put_nowait({"type": "nobody"})
        elif notice.data:
            replies.put_nowait(orjson.loads(notice.data))

    try:
        inbox = f"{PROGRESS_PREFIX}.{bus.new_inbox().rsplit('.', 1)[-1]}"
        sub = await bus.listen(inbox, on_reply)
        await bus.broadcast(REBUILD_SUBJECT, orjson.dumps({"stores": stores}), reply=inbox)
        try:
            return await _follow(replies, say, answer_s, silence_s)
        finally:
            await sub.stop()
    finally:
        await bus.close()


async def _follow(
    replies: asyncio.Queue[dict[str, Any]], say: Printer, answer_s: float, silence_s: float
) -> int:
    failed = False
    wait = answer_s
    while True:
        try:
            reply = await asyncio.wait_for(replies.get(), wait)
        except TimeoutError:
            say("no persistence instance answered" if wait == answer_s else "the rebuild went silent")
            return 1
        wait = silence_s
        kind = reply.get("type")
        if kind == "nobody":
            say("no persistence instance answered")
            return 1
        if kind == "accepted":
            say(f"rebuilding {', '.join(reply['stores'])} on {reply['instance']}")
        elif kind == "progress":
            say(f"{reply['store']:<11} {reply['position']}/{reply['head']}")
        elif kind == "done":
            say(
                f"{reply['store']:<11} rebuilt and swapped in: {reply['events']} events in {reply['seconds']} s "
                f"({reply['rate']} events/s), at seq {reply['reached']}"
            )
        elif kind == "failed":
            failed = True
            error = reply.get("error") or {}
            say(f"{reply.get('store', 'rebuild')}: failed ({error.get('code')}): {error.get('message')}")
            if "store" not in reply:
                return 1
        elif kind == "finished":
            return 1 if failed else 0
