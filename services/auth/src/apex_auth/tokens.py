"""Access tokens (EdDSA JWTs) and opaque secrets (refresh tokens, invites).

An access token carries every claim of ``AccessClaims`` and names its key with ``kid``.
A refresh token is ``apxr_`` + 256 random bits: it has no dots, so no JWT parser takes
it for a token, and only its SHA-256 is stored (a high-entropy secret needs no slow
hash). Invites work the same way with ``apxi_``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from apex_auth import metrics
from apex_auth.keys import ALGORITHM, SigningKey
from apex_contracts import AuthFailed, ErrorCode, utcnow
from apex_contracts.auth import ACCESS_TOKEN_MAX_TTL_S, OPERATOR_ROLE, REQUIRED_CLAIMS, AccessClaims

REFRESH_PREFIX = "apxr_"
INVITE_PREFIX = "apxi_"
_MAX_TOKEN_CHARS = 4096


def new_secret(prefix: str) -> tuple[str, bytes]:
    """A fresh opaque secret and the digest to store in its place."""
    token = prefix + secrets.token_urlsafe(32)
    return token, digest(token)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class KeySource(Protocol):
    """Where tokens get their keys (``KeyRing`` in the service)."""

    async def signing_key(self) -> SigningKey:
        """The key to sign new tokens with."""
        ...

    async def public_key(self, kid: str) -> Ed25519PublicKey | None:
        """The published key named ``kid``; None when there is none."""
        ...


@dataclass(frozen=True, slots=True)
class Subject:
    """Whom a token is for."""

    user_id: str
    tenant_id: str
    session_id: str
    roles: tuple[str, ...]


class AccessTokens:
    """Mints access tokens with the active key and verifies them against published keys.

    ``verify`` accepts only EdDSA with a known ``kid``, this issuer and audience, every
    claim of ``REQUIRED_CLAIMS`` and ``typ`` = ``access``; it raises AuthFailed with
    ``token_expired`` or ``token_invalid`` otherwise. It does not look at revocation.
    """

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        ttl_s: int,
        leeway_s: int,
        operators: frozenset[str] = frozenset(),
    ) -> None:
        if not 0 < ttl_s <= ACCESS_TOKEN_MAX_TTL_S:
            raise ValueError(f"access token TTL must be within 1..{ACCESS_TOKEN_MAX_TTL_S} s")
        self._keys = keys
        self._operators = operators
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s
        self._leeway_s = leeway_s

    async def mint(self, subject: Subject, *, now: datetime | None = None) -> str:
        issued = int((now or utcnow()).timestamp())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject.user_id,
            "tid": subject.tenant_id,
            "sid": subject.session_id,
            "jti": secrets.token_urlsafe(16),
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.ttl_s,
            "typ": "access",
            "roles": self.roles_of(subject),
        }
        key = await self._keys.signing_key()
        metrics.TOKENS_ISSUED.inc()
        return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})

    def roles_of(self, subject: Subject) -> list[str]:
        """The stored roles (admin or member), plus ``operator`` for the users the
        configuration names (``APEX_OPERATOR_USERS``): a role no stored row, invite or
        registration can give."""
        roles = [r for r in subject.roles if r != OPERATOR_ROLE]
        if subject.user_id in self._operators:
            roles.append(OPERATOR_ROLE)
        return roles

    async def verify(self, token: str) -> AccessClaims:
        try:
            return await self._verify(token)
        except AuthFailed as exc:
            metrics.TOKENS_REJECTED.labels(exc.code.value).inc()
            raise

    async def _verify(self, token: str) -> AccessClaims:
        if not token or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 2:
            raise AuthFailed("The access token is malformed.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthFailed("The access token is malformed.") from exc
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            raise AuthFailed("The access token is not signed with an accepted algorithm.")
        key = await self._keys.public_key(kid)
        if key is None:
            raise AuthFailed("The access token is signed with an unknown key.")
        payload = self._decode(token, key)
        if payload.get("typ") != "access":
            raise AuthFailed("This is not an access token.")
        try:
            claims = AccessClaims.model_validate(payload)
        except ValidationError as exc:
            raise AuthFailed("The access token's claims are malformed.") from exc
        if claims.exp - claims.iat > ACCESS_TOKEN_MAX_TTL_S:
            raise AuthFailed("The access token lives longer than allowed.")
        return claims

    def _decode(self, token: str, key: Any) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway_s,
                options={"require": list(REQUIRED_CLAIMS), "strict_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthFailed(code=ErrorCode.TOKEN_EXPIRED) from exc
        except jwt.InvalidTokenError as exc:
            raise AuthFailed(f"The access token is not valid: {_reason(exc)}.") from exc


def _reason(exc: jwt.InvalidTokenError) -> str:
    text = str(exc).rstrip(".")
    return text[:1].lower() + text[1:] if text else type(exc).__name__
