"""Verifies access tokens: pinned algorithms, every claim required, keys from the auth
service's JWKS (cached, refreshed when an unknown ``kid`` appears), and the session checked
against the revocation set. Each refusal is an AuthFailed with a stable reason code.
Shared by the services with a public HTTP API (gateway, ingest)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import jwt
from pydantic import ValidationError

from apex_contracts import AuthFailed, ErrorCode, derive_id, is_id
from apex_contracts.auth import ALGORITHMS, OPERATOR_ROLE, REQUIRED_CLAIMS, AccessClaims

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    user_id: str
    tenant_id: str
    session_id: str
    roles: tuple[str, ...]
    expires_at: int

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_operator(self) -> bool:
        return OPERATOR_ROLE in self.roles


class Revocations(Protocol):
    async def is_revoked(self, session_id: str) -> bool:
        """True when the session was signed out or revoked."""
        ...


class KeySet:
    """Public keys by ``kid`` from one JWKS URL, refreshed at most every ``min_refresh_s``."""

    def __init__(self, url: str, http: httpx.AsyncClient, min_refresh_s: float = 10.0) -> None:
        self.url = url
        self._http = http
        self._min_refresh_s = min_refresh_s
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> Any:
        if kid not in self._keys:
            await self._refresh()
        if kid not in self._keys:
            raise AuthFailed("The token was signed with an unknown key.", code=ErrorCode.TOKEN_INVALID)
        return self._keys[kid]

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < self._min_refresh_s and self._keys:
                return
            try:
                response = await self._http.get(self.url, timeout=5.0)
                response.raise_for_status()
                document = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("JWKS fetch from %s failed: %r", self.url, exc)
                if not self._keys:
                    raise AuthFailed(
                        "Tokens cannot be checked right now.",
                        code=ErrorCode.TOKEN_INVALID,
                        retryable=True,
                    ) from exc
                return
            keys = {}
            for jwk in document.get("keys", []):
                try:
                    keys[jwk["kid"]] = jwt.PyJWK(jwk).key
                except (KeyError, jwt.PyJWKError) as exc:
                    log.warning("ignoring an unusable JWK: %r", exc)
            self._keys = keys
            self._fetched_at = time.monotonic()


@dataclass(frozen=True)
class ExternalIssuer:
    """A company's own OIDC provider, trusted beside the built-in issuer. Its users get
    Apex ids derived from (issuer, subject) and (issuer, tenant claim)."""

    issuer: str
    audience: str
    keys: KeySet
    tenant_claim: str
    algorithms: tuple[str, ...]
    operator_claim: str | None = None
    operator_value: str = "apex-operator"

    def is_operator(self, claims: dict[str, Any]) -> bool:
        """Only the configured claim makes an operator (never a ``roles`` entry)."""
        if self.operator_claim is None:
            return False
        value = claims.get(self.operator_claim)
        if isinstance(value, list):
            return self.operator_value in value
        return value == self.operator_value

    def principal(self, claims: dict[str, Any]) -> Principal:
        tenant = claims.get(self.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise AuthFailed(
                f"The token has no {self.tenant_claim} claim naming the tenant.", code=ErrorCode.TOKEN_INVALID
            )
        claimed = claims.get("roles")
        listed = claimed if isinstance(claimed, list) else ["member"]
        roles = [str(r) for r in listed if r != OPERATOR_ROLE]
        if self.is_operator(claims):
            roles.append(OPERATOR_ROLE)
        return Principal(
            user_id=derive_id("usr", self.issuer, str(claims["sub"])),
            tenant_id=tenant if is_id(tenant, "ten") else derive_id("ten", self.issuer, tenant),
            session_id=derive_id(
                "ses", self.issuer, str(claims["sub"]), str(claims.get("sid") or claims["iat"])
            ),
            roles=tuple(roles),
            expires_at=int(claims["exp"]),
        )


class TokenVerifier:
    def __init__(
        self,
        keys: KeySet,
        revocations: Revocations,
        *,
        issuer: str,
        audience: str,
        algorithms: tuple[str, ...] = ALGORITHMS,
        leeway_s: int = 5,
        external: ExternalIssuer | None = None,
    ) -> None:
        self.keys = keys
        self.revocations = revocations
        self.issuer = issuer
        self.audience = audience
        self.algorithms = algorithms
        self.leeway_s = leeway_s
        self.external = external

    async def verify(self, token: str | None) -> Principal:
        if not token:
            raise AuthFailed("No access token was sent.", code=ErrorCode.TOKEN_MISSING)
        if self.external is not None and _unverified_issuer(token) == self.external.issuer:
            principal = await self._external(token, self.external)
        else:
            principal = await self._builtin(token)
        if await self.revocations.is_revoked(principal.session_id):
            raise AuthFailed("This session was signed out.", code=ErrorCode.SESSION_REVOKED)
        return principal

    async def _external(self, token: str, external: ExternalIssuer) -> Principal:
        key = await external.keys.key(_header(token, external.algorithms)["kid"])
        claims = self._jwt(
            token,
            key,
            external.algorithms,
            external.audience,
            external.issuer,
            ("iss", "aud", "sub", "exp", "iat"),
        )
        return external.principal(claims)

    async def _builtin(self, token: str) -> Principal:
        claims = await self._decode(token)
        return Principal(
            user_id=claims.sub,
            tenant_id=claims.tid,
            session_id=claims.sid,
            roles=tuple(claims.roles),
            expires_at=claims.exp,
        )

    async def _decode(self, token: str) -> AccessClaims:
        key = await self.keys.key(_header(token, self.algorithms)["kid"])
        raw = self._jwt(token, key, self.algorithms, self.audience, self.issuer, REQUIRED_CLAIMS)
        try:
            return AccessClaims.model_validate(raw)
        except ValidationError as exc:
            raise AuthFailed(
                "The access token's claims are not valid.", code=ErrorCode.TOKEN_INVALID
            ) from exc

    def _jwt(
        self,
        token: str,
        key: Any,
        algorithms: tuple[str, ...],
        audience: str,
        issuer: str,
        required: tuple[str, ...],
    ) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=list(algorithms),
                audience=audience,
                issuer=issuer,
                leeway=self.leeway_s,
                options={"require": list(required)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthFailed("The access token has expired.", code=ErrorCode.TOKEN_EXPIRED) from exc
        except jwt.InvalidTokenError as exc:
            raise AuthFailed(f"The access token is not valid: {exc}.", code=ErrorCode.TOKEN_INVALID) from exc


def _header(token: str, algorithms: tuple[str, ...]) -> dict[str, Any]:
    """The token's header, refused unless its algorithm is pinned and it names a key."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError as exc:
        raise AuthFailed("The access token is malformed.", code=ErrorCode.TOKEN_INVALID) from exc
    if header.get("alg") not in algorithms or not isinstance(header.get("kid"), str):
        raise AuthFailed(
            "The token uses an algorithm or key that is not accepted.", code=ErrorCode.TOKEN_INVALID
        )
    return header


def _unverified_issuer(token: str) -> str | None:
    """Only to choose which issuer's rules verify the token; never trusted by itself."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.DecodeError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None
