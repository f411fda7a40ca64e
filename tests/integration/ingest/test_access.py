"""The ingest service trusts no caller: it verifies every token itself (so an ingress may
route to it directly), a revoked session is refused, and one tenant never reaches another
tenant's usage or connectors."""

from __future__ import annotations

import httpx
import redis.asyncio as aioredis

from apex_contracts import new_id
from apex_contracts.auth import revoked_session_key
from tests.integration.ingest.conftest import Slice
from tests.integration.ingest.tokens import TokenIssuer

RECORD = b'{"ts": "2026-01-05T10:00:00Z", "provider": "openai", "model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}'


async def test_missing_forged_and_revoked_tokens_are_refused(stack: Slice, http: httpx.AsyncClient) -> None:
    tenant = stack.tenant()
    forger = TokenIssuer()
    forger.kid = stack.issuer.kid  # a foreign key under the real key id
    attempts = {
        "no token": {},
        "garbage": {"Authorization": "Bearer not.a.token"},
        "forged": {"Authorization": f"Bearer {forger.token(tenant.tenant_id, tenant.user_id)}"},
    }
    for name, headers in attempts.items():
        for path in ("/api/v1/usage", "/v1/traces", "/api/v1/usage/connectors"):
            if path.endswith("connectors"):
                response = await http.get(path, headers=headers)
            else:
                response = await http.post(path, content=RECORD, headers=headers)
            assert response.status_code == 401, (name, path, response.text)
    session = new_id("ses")
    revoked = stack.issuer.token(tenant.tenant_id, tenant.user_id, session_id=session)
    client = aioredis.from_url(stack.redis_url)
    try:
        await client.set(revoked_session_key(session), b"1", ex=60)
        response = await http.post(
            "/api/v1/usage", content=RECORD, headers={"Authorization": f"Bearer {revoked}"}
        )
    finally:
        await client.delete(revoked_session_key(session))
        await client.aclose()
    assert response.status_code == 401 and response.json()["error"]["code"] == "session_revoked"


async def test_a_tenant_never_reaches_another_tenants_connectors_or_usage(
    stack: Slice, http: httpx.AsyncClient
) -> None:
    owner, other = stack.tenant(), stack.tenant()
    ndjson = {"Content-Type": "application/x-ndjson"}
    upload = await http.post("/api/v1/usage", content=RECORD, headers={**owner.headers, **ndjson})
    assert upload.json()["accepted"] == 1
    again = await http.post("/api/v1/usage", content=RECORD, headers={**other.headers, **ndjson})
    assert (again.json()["accepted"], again.json()["duplicates"]) == (1, 0), "keys are per tenant"
    assert (await stack.stored(owner, 1))["requests"] == 1
    assert (await stack.stored(other, 1))["requests"] == 1
    assert (await http.get("/api/v1/usage/connectors/openai", headers=other.headers)).status_code == 404
    assert (await http.delete("/api/v1/usage/connectors/openai", headers=other.headers)).status_code == 404
