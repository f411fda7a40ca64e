"""The bus API responder on the in-memory bus: the handler acts as the subject's principal,
its answer or a typed error frame goes to the caller's own inbox, a defect is an
``internal_error`` frame with an incident, and a request whose reply subject is not the
caller's inbox is neither handled nor answered."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from apex_contracts import InvalidInput, NotFound, new_id
from apex_contracts.busapi import api_subject, inbox_prefix
from apex_contracts.envelope import Model
from apex_runtime.busresponder import BusApiResponder, frame_request
from apex_runtime.memory import MemoryBus
from apex_runtime.port import Notice


class Seen(Model):
    type: str = "seen"
    tenant_id: str
    user_id: str
    text: str


async def _ask(bus: MemoryBus, subject: str, data: bytes, reply: str) -> dict[str, Any] | None:
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    async def hear(notice: Notice) -> None:
        answers.put_nowait(notice.data)

    sub = await bus.listen(reply, hear)
    try:
        await bus.broadcast(subject, data, reply=reply)
        try:
            return dict(orjson.loads(await asyncio.wait_for(answers.get(), 0.5)))
        except TimeoutError:
            return None
    finally:
        await sub.stop()


async def test_answers_errors_defects_and_foreign_reply_subjects() -> None:
    bus, handled = MemoryBus(), []

    async def handler(tenant_id: str, user_id: str, data: bytes) -> Model:
        handled.append(user_id)
        body = frame_request(data, "message.send")
        if body.get("text") == "missing":
            raise NotFound("No such thread.")
        if body.get("text") == "defect":
            raise RuntimeError("boom")
        return Seen(tenant_id=tenant_id, user_id=user_id, text=body["text"])

    responder = BusApiResponder(bus, "message.send", "q", handler)
    await responder.start()
    tenant, user = new_id("ten"), new_id("usr")
    subject, inbox = api_subject(tenant, user, "message.send"), f"{inbox_prefix(user)}.abc"
    try:
        ok = await _ask(bus, subject, b'{"text": "hi"}', inbox)
        assert ok == {"type": "seen", "tenant_id": tenant, "user_id": user, "text": "hi"}
        assert (await _ask(bus, subject, b'{"text": "missing"}', inbox) or {})["code"] == "not_found"
        defect = await _ask(bus, subject, b'{"text": "defect"}', inbox) or {}
        assert defect["code"] == "internal_error" and defect["incident"].startswith("evt_")
        wrong = await _ask(bus, subject, b'{"type": "run.cancel"}', inbox) or {}
        assert wrong["code"] == "invalid_frame"
        assert (await _ask(bus, subject, b"[", inbox) or {})["code"] == "invalid_json"
        count = len(handled)
        for reply in ("apex.cmd.run.start", f"_INBOX.{new_id('usr')}.abc", "_INBOX.x"):
            assert await _ask(bus, subject, b'{"text": "hi"}', reply) is None
        assert len(handled) == count, "never handled"
    finally:
        await responder.stop()


@pytest.mark.parametrize("data", [b'"text"', b"1", b"null"])
def test_a_request_is_an_object(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="JSON object"):
        frame_request(data, "message.send")
