"""The JWKS and key rotation with overlap, verified the way a gateway verifies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt

from apex_contracts import utcnow
from apex_contracts.auth import ALGORITHMS, AUDIENCE, ISSUER, JWKS_PATH, AccessClaims
from tests.integration.auth.auth_support import Auth


def verify_with_jwks(token: str, jwks: dict[str, Any]) -> AccessClaims:
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key.key, algorithms=list(ALGORITHMS), audience=AUDIENCE, issuer=ISSUER)
    return AccessClaims.model_validate(claims)


async def test_jwks_publishes_the_public_key_only(auth: Auth) -> None:
    user = await auth.register()
    response = await auth.http.get(JWKS_PATH)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=60"
    keys = response.json()["keys"]
    assert len(keys) == 1
    assert set(keys[0]) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert keys[0] | {"x": "", "kid": ""} == {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "x": "",
        "kid": "",
    }
    claims = verify_with_jwks(user["access_token"], response.json())
    assert (claims.sub, claims.tid, claims.typ) == (user["user_id"], user["tenant_id"], "access")
    assert claims.exp - claims.iat == 900 and claims.nbf == claims.iat
    assert jwt.get_unverified_header(user["access_token"])["kid"] == keys[0]["kid"]


async def test_rotation_signs_with_the_new_key_while_old_tokens_stay_valid(auth: Auth) -> None:
    user = await auth.register()
    old_kid = jwt.get_unverified_header(user["access_token"])["kid"]

    new_kid = await auth.service.keys.rotate()
    fresh = (await auth.login(user["email"])).json()
    assert new_kid != old_kid
    assert jwt.get_unverified_header(fresh["access_token"])["kid"] == new_kid

    jwks = (await auth.http.get(JWKS_PATH)).json()
    assert [k["kid"] for k in jwks["keys"]] == [new_kid, old_kid]
    for token in (user["access_token"], fresh["access_token"]):
        assert verify_with_jwks(token, jwks).sub == user["user_id"]
        assert (await auth.get("/auth/me", token)).status_code == 200

    # The old key leaves the JWKS once the last token it could have signed has expired.
    settings = auth.service.settings
    assert settings.key_retire_after_s > settings.jwt_access_ttl_s + settings.auth_key_cache_s
    later = utcnow() + timedelta(seconds=settings.key_retire_after_s + 1)
    assert [k["kid"] for k in (await auth.service.keys.jwks(now=later))["keys"]] == [new_kid]
