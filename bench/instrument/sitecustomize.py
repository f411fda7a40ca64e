"""Bench instrumentation: counts the NATS messages a process sends and receives, by kind.

Python imports ``sitecustomize`` at start-up from its path; ``make bench`` puts this folder
on ``PYTHONPATH`` for the platform it starts, together with ``APEX_BENCH_OPS_DIR``, and
nothing else does. With the variable unset this module does nothing. The counts are
written to ``$APEX_BENCH_OPS_DIR/<pid>.json`` every half second by a daemon thread; the cost
on the hot path is one classification and one dict increment per message."""

from __future__ import annotations

import os


def sent_kind(subject: str, reply: str, payload: bytes) -> str:
    """What a message a client sends is for, from its subject (and an ack's payload)."""
    if subject.startswith("$JS.ACK."):
        head = bytes(payload[:5])
        for prefix, kind in ((b"+WPI", "ack_in_progress"), (b"-NAK", "nak"), (b"+TERM", "term")):
            if head.startswith(prefix):
                return kind
        return "ack"
    if subject.startswith("$JS.API.DIRECT.GET.KV_"):
        return "kv_get"
    if subject.startswith("$JS.API.DIRECT.GET."):
        return "direct_get"
    if subject.startswith("$JS.API.CONSUMER.MSG.NEXT."):
        return "pull_request"
    if subject.startswith("$JS.API.STREAM.MSG.GET."):
        return "msg_get"
    if subject.startswith("$JS.API."):
        return "js_api_" + subject.split(".")[2].lower()
    if subject.startswith("$KV."):
        return "kv_write"
    if subject.startswith("$JS.FC."):
        return "flow_control_reply"
    if subject.startswith("_INBOX."):
        return "reply"
    parts = subject.split(".")
    if parts[0] == "apex" and len(parts) > 1:
        kind = {"evt": "event", "cmd": "command", "q": "query", "health": "heartbeat"}.get(parts[1], parts[1])
        return (
            f"{kind}_publish_js"
            if reply and kind in ("event", "command", "audit", "dlq")
            else f"{kind}_publish"
        )
    return "other"


def received_kind(subject: str, reply: str) -> str:
    """What a message a client receives is: a consumer's delivery, a reply, a subscription."""
    if reply.startswith("$JS.ACK."):
        stream = reply.split(".")[2]
        return "delivery_" + ("kv" if stream.startswith("KV_") else stream.lower())
    if subject.startswith("_INBOX."):
        return "reply"
    if subject.startswith("$JS.FC.") or reply.startswith("$JS.FC."):
        return "flow_control"
    parts = subject.split(".")
    if parts[0] == "apex" and len(parts) > 1:
        kind = {"evt": "event", "cmd": "command", "q": "query", "health": "heartbeat"}.get(parts[1], parts[1])
        return f"{kind}_received"
    return "other"


def _text(value: bytes | str | None) -> str:
    if not value:
        return ""
    return value if isinstance(value, str) else bytes(value).decode(errors="replace")


def _service_name() -> str:
    import sys

    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = (getattr(spec, "name", "") or "").removesuffix(".__main__")
    return name.removeprefix("apex_") or "unknown"


def _install(directory: str) -> None:
    import json
    import threading
    import time

    from nats.aio.client import Client

    sent: dict[str, int] = {}
    received: dict[str, int] = {}
    publish, process_msg = Client.publish, Client._process_msg

    async def counted_publish(
        self: Client,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        kind = sent_kind(subject, reply, payload)
        sent[kind] = sent.get(kind, 0) + 1
        await publish(self, subject, payload, reply, headers)

    async def counted_process_msg(
        self: Client, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        kind = received_kind(_text(subject), _text(reply))
        received[kind] = received.get(kind, 0) + 1
        await process_msg(self, sid, subject, reply, data, headers)

    Client.publish = counted_publish  # type: ignore[method-assign]
    Client._process_msg = counted_process_msg  # type: ignore[method-assign]
    path = os.path.join(directory, f"{os.getpid()}.json")

    def dump() -> None:
        while True:
            time.sleep(0.5)
            if not sent and not received:
                continue
            body = {
                "pid": os.getpid(),
                "service": _service_name(),
                "sent": dict(sent),
                "received": dict(received),
            }
            with open(path + ".tmp", "w") as out:
                json.dump(body, out)
            os.replace(path + ".tmp", path)

    threading.Thread(target=dump, name="bench-nats-ops", daemon=True).start()


if os.environ.get("APEX_BENCH_OPS_DIR"):
    _install(os.environ["APEX_BENCH_OPS_DIR"])
