"""Pieces of the gateway's defences against hostile clients, in memory: the bounded
outbox, the operator role of an external issuer, when a client refreshes its token."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx

from apex_client.http import refresh_at
from apex_gateway.tokens import ExternalIssuer, KeySet
from apex_gateway.ws.outbox import Outbox


async def test_the_outbox_holds_at_most_its_limit_of_any_frames_and_a_replay_waits_for_room() -> None:
    box = Outbox(3)
    assert [box.put(f"f{n}") for n in range(4)] == [True, True, True, False]
    assert not await box.room(0.05), "full: a replay waiting for room times out"
    waiting = asyncio.create_task(box.room(5))
    assert await box.get() == ("f0", None)
    assert await waiting
    assert box.put("f3", 1.5) and len(box) == 3
    box.clear()
    assert len(box) == 0 and await box.room(0.01)


def issuer(claim: str | None) -> ExternalIssuer:
    keys = KeySet("https://idp.example/jwks", httpx.AsyncClient())
    return ExternalIssuer("https://idp.example", "apex", keys, "tid", ("RS256",), operator_claim=claim)


def test_an_external_token_is_an_operator_only_by_the_configured_claim() -> None:
    base = {"sub": "alice", "iat": 1, "exp": 2, "tid": "acme"}
    claims = {**base, "roles": ["admin", "operator"], "groups": ["staff", "apex-operator"]}
    assert issuer(None).principal(claims).roles == ("admin",), "a roles claim never makes an operator"
    assert issuer("groups").principal(claims).roles == ("admin", "operator")
    assert issuer("groups").principal({**base, "groups": "apex-operator"}).is_operator
    assert not issuer("groups").principal({**base, "groups": ["staff"]}).is_operator


def token(claims: dict[str, object]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"header.{body}.signature"


def test_a_client_refreshes_a_minute_before_expiry_or_at_three_quarters_of_a_short_life() -> None:
    assert refresh_at(token({"iat": 1000, "exp": 1900})) == 1840
    assert refresh_at(token({"iat": 1000, "exp": 1040})) == 1030
    assert refresh_at("not-a-jwt") is None and refresh_at(token({"iat": 1})) is None
