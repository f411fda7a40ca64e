"""Verifies access tokens: pinned algorithms, every claim required, keys from the auth
service's JWKS (cached, refreshed when an unknown ``kid`` appears), and the session checked
against the revocation set. Each refusal is an AuthFailed with a stable reason code."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import jwt
from pydantic import ValidationError

from apex_contracts import AuthFailed, ErrorCode
from apex_contracts.auth import ALGORITHMS, REQUIRED_CLAIMS, AccessClaims

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
                        "Tokens cannot be checked right now.", code=ErrorCode.TOKEN_INVALID,
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
    ) -> None:
        self.keys = keys
        self.revocations = revocations
        self.issuer = issuer
        self.audience = audience
        self.algorithms = algorithms
        self.leeway_s = leeway_s

    async def verify(self, token: str | None) -> Principal:
        if not token:
            raise AuthFailed("No access token was sent.", code=ErrorCode.TOKEN_MISSING)
        claims = await self._decode(token)
        if await self.revocations.is_revoked(claims.sid):
            raise AuthFailed("This session was signed out.", code=ErrorCode.SESSION_REVOKED)
        return Principal(
            user_id=claims.sub, tenant_id=claims.tid, session_id=claims.sid,
            roles=tuple(claims.roles), expires_at=claims.exp,
        )

    async def _decode(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise AuthFailed("The access token is malformed.", code=ErrorCode.TOKEN_INVALID) from exc
        if header.get("alg") not in self.algorithms or not isinstance(header.get("kid"), str):
            raise AuthFailed("The token uses an algorithm or key that is not accepted.",
                             code=ErrorCode.TOKEN_INVALID)
        key = await self.keys.key(header["kid"])
        try:
            raw = jwt.decode(
                token, key, algorithms=list(self.algorithms), audience=self.audience,
                issuer=self.issuer, leeway=self.leeway_s,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthFailed("The access token has expired.", code=ErrorCode.TOKEN_EXPIRED) from exc
        except jwt.InvalidTokenError as exc:
            raise AuthFailed(f"The access token is not valid: {exc}.", code=ErrorCode.TOKEN_INVALID) from exc
        try:
            return AccessClaims.model_validate(raw)
        except ValidationError as exc:
            raise AuthFailed("The access token's claims are not valid.", code=ErrorCode.TOKEN_INVALID) from exc
