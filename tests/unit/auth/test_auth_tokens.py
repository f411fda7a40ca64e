"""Minting and verifying access tokens, and the opaque secrets beside them."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from apex_auth import AccessTokens, Subject, public_jwk
from apex_auth.keys import SigningKey
from apex_auth.tokens import REFRESH_PREFIX, digest, new_secret
from apex_contracts import AuthFailed, new_id
from apex_contracts.auth import REQUIRED_CLAIMS


class StaticKeys:
    """Keys held in memory: the signing one and any extra published ones."""

    def __init__(self, *extra: Ed25519PrivateKey) -> None:
        self.private = Ed25519PrivateKey.generate()
        self.kid = public_jwk(self.private.public_key())["kid"]
        self.published = {public_jwk(k.public_key())["kid"]: k.public_key() for k in (self.private, *extra)}

    async def signing_key(self) -> SigningKey:
        return SigningKey(self.kid, self.private)

    async def public_key(self, kid: str) -> Ed25519PublicKey | None:
        return self.published.get(kid)


SUBJECT = Subject(new_id("usr"), new_id("ten"), new_id("ses"), ("admin",))


def tokens(keys: StaticKeys, ttl_s: int = 900) -> AccessTokens:
    return AccessTokens(keys, issuer="apex-auth", audience="apex", ttl_s=ttl_s, leeway_s=0)


async def test_a_minted_token_carries_every_claim_and_verifies() -> None:
    keys = StaticKeys()
    token = await tokens(keys).mint(SUBJECT)
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": keys.kid, "typ": "JWT"}
    claims = await tokens(keys).verify(token)
    assert set(claims.model_dump()) == set(REQUIRED_CLAIMS)
    assert (claims.sub, claims.tid, claims.sid, claims.roles) == (
        SUBJECT.user_id,
        SUBJECT.tenant_id,
        SUBJECT.session_id,
        ["admin"],
    )
    assert claims.exp - claims.iat == 900 and claims.typ == "access"


async def test_a_token_is_refused_once_expired() -> None:
    keys = StaticKeys()
    old = datetime.fromtimestamp(time.time() - 1000, UTC)
    token = await tokens(keys).mint(SUBJECT, now=old)
    with pytest.raises(AuthFailed) as refused:
        await tokens(keys).verify(token)
    assert refused.value.code == "token_expired"


async def test_a_token_of_a_key_that_is_not_published_is_refused() -> None:
    stranger = StaticKeys()
    token = await tokens(stranger).mint(SUBJECT)
    with pytest.raises(AuthFailed, match="unknown key"):
        await tokens(StaticKeys()).verify(token)


async def test_only_eddsa_is_accepted() -> None:
    keys = StaticKeys()
    claims = jwt.decode(await tokens(keys).mint(SUBJECT), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": keys.kid})
    hmac = jwt.encode(
        claims, "a-shared-secret-of-at-least-32-bytes!!", algorithm="HS256", headers={"kid": keys.kid}
    )
    for token in (unsigned, hmac):
        with pytest.raises(AuthFailed, match="accepted algorithm"):
            await tokens(keys).verify(token)


def test_access_tokens_cannot_be_configured_to_live_long() -> None:
    with pytest.raises(ValueError, match="900"):
        tokens(StaticKeys(), ttl_s=3600)


def test_refresh_tokens_are_opaque_and_only_their_digest_is_kept() -> None:
    token, stored = new_secret(REFRESH_PREFIX)
    assert token.startswith("apxr_") and "." not in token and len(token) > 40
    assert stored == digest(token) and token.encode() not in stored
    assert new_secret(REFRESH_PREFIX)[0] != token


def test_the_kid_is_the_rfc_7638_thumbprint() -> None:
    # RFC 8037 appendix A.2 / A.3: the Ed25519 example key and its thumbprint.
    example = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    jwk = public_jwk(Ed25519PublicKey.from_public_bytes(example))
    assert jwk["x"] == "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    assert jwk["kid"] == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")


async def test_only_the_configured_users_get_the_operator_role() -> None:
    keys = StaticKeys()
    operator = Subject(new_id("usr"), new_id("ten"), new_id("ses"), ("admin",))
    configured = AccessTokens(
        keys,
        issuer="apex-auth",
        audience="apex",
        ttl_s=900,
        leeway_s=0,
        operators=frozenset({operator.user_id}),
    )
    assert (await configured.verify(await configured.mint(operator))).roles == ["admin", "operator"]
    assert (await configured.verify(await configured.mint(SUBJECT))).roles == ["admin"]
    stored = Subject(new_id("usr"), new_id("ten"), new_id("ses"), ("member", "operator"))
    assert (await configured.verify(await configured.mint(stored))).roles == ["member"], "never from storage"
