"""The bus API's ``message.send`` and ``run.cancel``: the WebSocket frames' JSON, handled
by the same domain service (``MessageService``) as the socket and answered with the same
frames (``message.accepted``, or an ``error`` frame). The principal is the service account
the subject names (docs/bus-api.md); ``usage.ingest`` is the ingest service's."""

from __future__ import annotations

from typing import TypeVar

import orjson

from apex_contracts import ErrorCode, InvalidInput
from apex_contracts.busapi import GATEWAY_QUEUE, OP_MESSAGE_SEND, OP_RUN_CANCEL, RunCancelRequested
from apex_contracts.envelope import Model
from apex_contracts.frames import MessageAccepted, MessageSend, RunCancelFrame, parse_client_frame
from apex_gateway.messages import MessageService
from apex_gateway.tokens import Principal
from apex_runtime import Bus
from apex_runtime.busresponder import BusApiResponder, frame_request

BUS_SESSION = "bus"  # what audit entries name as the session of a bus API request
F = TypeVar("F", MessageSend, RunCancelFrame)


def _frame(data: bytes, operation: str, kind: type[F]) -> F:
    """The request as the WebSocket frame of ``operation``, validated the same way (the
    same error codes); its ``type`` may be left out."""
    frame = parse_client_frame(orjson.dumps(frame_request(data, operation)))
    if not isinstance(frame, kind):  # frame_request fixed the type: never, but typed
        raise InvalidInput(f"This subject takes {operation!r} requests.", code=ErrorCode.INVALID_FRAME)
    return frame


def bus_principal(tenant_id: str, user_id: str) -> Principal:
    """The caller of a bus API request: the NATS server bound these ids to its creds."""
    return Principal(user_id=user_id, tenant_id=tenant_id, session_id=BUS_SESSION, roles=(), expires_at=0)


class GatewayBusApi:
    def __init__(self, bus: Bus, messages: MessageService) -> None:
        self._messages = messages
        self._responders = [
            BusApiResponder(bus, OP_MESSAGE_SEND, GATEWAY_QUEUE, self.message_send),
            BusApiResponder(bus, OP_RUN_CANCEL, GATEWAY_QUEUE, self.run_cancel),
        ]

    async def start(self) -> None:
        for responder in self._responders:
            await responder.start()

    async def stop(self) -> None:
        for responder in self._responders:
            await responder.stop()

    async def message_send(self, tenant_id: str, user_id: str, data: bytes) -> Model:
        frame = _frame(data, OP_MESSAGE_SEND, MessageSend)
        accepted = await self._messages.send(
            bus_principal(tenant_id, user_id),
            frame.client_msg_id,
            frame.text,
            frame.thread_id,
            via="bus message.send",
        )
        return MessageAccepted(
            ref=frame.ref,
            client_msg_id=frame.client_msg_id,
            thread_id=accepted.thread_id,
            run_id=accepted.run_id,
        )

    async def run_cancel(self, tenant_id: str, user_id: str, data: bytes) -> Model:
        frame = _frame(data, OP_RUN_CANCEL, RunCancelFrame)
        record = await self._messages.cancel(
            bus_principal(tenant_id, user_id), frame.run_id, via="bus run.cancel"
        )
        return RunCancelRequested(ref=frame.ref, run_id=frame.run_id, thread_id=record.thread_id)
