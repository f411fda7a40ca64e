"""``apex token`` and ``apex chat``: a development token and a terminal chat."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

from apex_cli.config import Home, auth_url, gateway_url
from apex_client import Answers, ApexHttp, ApexSocket
from apex_contracts import ApexError


async def run_token(home: Home, email: str, password: str, tenant: str) -> int:
    async with ApexHttp(auth_url(home), gateway_url(home)) as http:
        try:
            tokens = await http.login_or_register(email, password, tenant)
        except ApexError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    print(tokens.access_token)
    return 0


def describe(event: dict[str, Any]) -> str | None:
    data = event.get("data") or {}
    kind = event.get("type")
    agent = data.get("agent") or event.get("agent") or ""
    lines = {
        "run.accepted": "· run accepted",
        "agent_started": f"· {agent} started",
        "agent_thinking": f"  {agent}: {data.get('text')}",
        "tool_executing": f"  → {data.get('tool')} {data.get('arguments')}",
        "tool_completed": f"  ← {data.get('tool')} {data.get('status')} in {data.get('duration_ms')} ms",
        "agent_completed": f"· {agent} done: {data.get('summary')}",
        "agent_failed": f"· {agent} failed: {(data.get('error') or {}).get('message')}",
        "run.failed": f"✗ run failed: {(data.get('error') or {}).get('message')}",
        "run.cancelled": f"✗ run cancelled ({data.get('cause')})",
        "message.superseded": f"· {agent} restarted its answer (attempt {data.get('attempt')})",
    }
    return lines.get(str(kind))


async def _ask(socket: ApexSocket, text: str, thread_id: str | None) -> str | None:
    frame: dict[str, Any] = {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": text}
    if thread_id:
        frame["thread_id"] = thread_id
    await socket.send(frame)
    run_id = None
    answers = Answers()
    async for incoming in socket.frames():
        kind = incoming.get("type")
        if kind == "message.accepted":
            run_id, thread_id = incoming["run_id"], incoming["thread_id"]
        elif kind == "error":
            print(f"! {incoming.get('code')}: {incoming.get('message')}")
        elif kind == "event":
            event = incoming["event"]
            if event.get("run_id") != run_id:
                continue
            answers.apply(event)
            line = describe(event)
            if line:
                print(line)
            if event["type"] == "run.completed":
                print("\n" + answers.text(event["run_id"]) + "\n")
            if event["type"] in ("run.completed", "run.failed", "run.cancelled"):
                return thread_id
    return thread_id


async def run_chat(home: Home, email: str, password: str, tenant: str, message: str) -> int:
    async with ApexHttp(auth_url(home), gateway_url(home)) as http:
        try:
            await http.login_or_register(email, password, tenant)
        except ApexError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
        ws_url = gateway_url(home).replace("http", "ws", 1) + "/ws"
        # a token source, not the token: the socket refreshes in-band before expiry
        async with ApexSocket(ws_url, http.fresh_token) as socket:
            if message:
                await _ask(socket, message, None)
                return 0
            thread_id = None
            loop = asyncio.get_running_loop()
            print("Ask about your LLM usage (empty line to quit).")
            while True:
                text = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
                if not text:
                    return 0
                thread_id = await _ask(socket, text, thread_id)
