"""Signing keys: Ed25519 key pairs in ``auth.signing_keys``, the JWKS that publishes them,
and rotation with overlap.

A key is *active* from ``activated_at`` and signs until a newer key is activated. When
it is replaced its ``retired_at`` is set to the moment the last token it could have
signed has expired; until then it stays in the JWKS so those tokens keep verifying.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apex_auth import metrics
from apex_auth.audit import AuditRecord, record
from apex_auth.db import STORE_ERRORS, advisory_xact_lock
from apex_auth.tables import signing_keys
from apex_contracts import utcnow

ALGORITHM = "EdDSA"
_LOCK = "apex_auth.signing_keys"
_UNKNOWN_KID_RELOAD_S = 1.0


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The public JWK (RFC 8037) with ``kid`` = its RFC 7638 thumbprint."""
    x = b64url(public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    kid = b64url(hashlib.sha256(canonical.encode()).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": ALGORITHM, "use": "sig"}


def public_key_from_jwk(jwk: dict[str, Any]) -> Ed25519PublicKey:
    raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey


@dataclass(slots=True)
class _Snapshot:
    signing: SigningKey | None
    public: dict[str, Ed25519PublicKey]
    loaded_at: float


class KeyRing:
    """The service's view of ``auth.signing_keys``, reloaded every ``cache_s`` seconds."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        passphrase: bytes | None,
        cache_s: float,
        retire_after_s: int,
    ) -> None:
        self._engine = engine
        self._passphrase = passphrase
        self._cache_s = cache_s
        self._retire_after = timedelta(seconds=retire_after_s)
        self._snapshot = _Snapshot(None, {}, float("-inf"))
        self._lock = asyncio.Lock()
        self._last_jwks: dict[str, list[dict[str, Any]]] | None = None

    async def ensure(self) -> None:
        """Makes sure an active key exists (creating the first one); safe on every replica."""
        async with self._engine.begin() as conn:
            await advisory_xact_lock(conn, _LOCK)
            if await self._active_row(conn) is None:
                await self._insert(conn, utcnow())
        await self.reload()

    async def rotate(self, *, now: datetime | None = None) -> str:
        """Activates a new key and schedules the retirement of the previous ones; returns
        the new ``kid``. Records ``auth.key_rotated`` in the same transaction."""
        now = now or utcnow()
        async with self._engine.begin() as conn:
            await advisory_xact_lock(conn, _LOCK)
            retire_at = now + self._retire_after
            await conn.execute(
                update(signing_keys)
                .where(or_(signing_keys.c.retired_at.is_(None), signing_keys.c.retired_at > retire_at))
                .values(retired_at=retire_at)
            )
            kid = await self._insert(conn, now)
            await record(
                conn,
                AuditRecord(
                    action="auth.key_rotated",
                    outcome="success",
                    tenant_id=None,
                    target=kid,
                    details={"previous_keys_retire_at": retire_at.isoformat()},
                ),
            )
        metrics.KEY_ROTATIONS.inc()
        await self.reload()
        return kid

    async def signing_key(self) -> SigningKey:
        """The key new tokens are signed with; raises RuntimeError before ``ensure``."""
        snapshot = await self._fresh()
        if snapshot.signing is None:
            raise RuntimeError("no active signing key: KeyRing.ensure() was not called")
        return snapshot.signing

    async def public_key(self, kid: str) -> Ed25519PublicKey | None:
        """The published key named ``kid``; None when no published key has that name."""
        snapshot = await self._fresh()
        if kid not in snapshot.public and time.monotonic() - snapshot.loaded_at > _UNKNOWN_KID_RELOAD_S:
            snapshot = await self.reload()
        return snapshot.public.get(kid)

    async def jwks(self, *, now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
        """Every published public key: active, and replaced but not yet retired. While
        Postgres is unreachable, the last set read (the keys do not change without it)."""
        now = now or utcnow()
        try:
            async with self._engine.connect() as conn:
                rows = await conn.execute(
                    select(signing_keys.c.public_jwk)
                    .where(_published(now))
                    .order_by(signing_keys.c.activated_at.desc())
                )
                self._last_jwks = {"keys": [dict(row.public_jwk) for row in rows]}
        except STORE_ERRORS:
            if self._last_jwks is None:
                raise
        return self._last_jwks

    async def reload(self) -> _Snapshot:
        async with self._lock:
            now = utcnow()
            async with self._engine.connect() as conn:
                rows = (await conn.execute(select(signing_keys).where(_published(now)))).all()
                active = await self._active_row(conn)
            signing = None
            if active is not None:
                private = serialization.load_pem_private_key(
                    active.private_pem.encode(), password=self._passphrase
                )
                if not isinstance(private, Ed25519PrivateKey):
                    raise TypeError(f"signing key {active.kid} is not Ed25519")
                signing = SigningKey(active.kid, private)
            public = {row.kid: public_key_from_jwk(row.public_jwk) for row in rows}
            self._snapshot = _Snapshot(signing, public, time.monotonic())
            return self._snapshot

    async def _fresh(self) -> _Snapshot:
        if time.monotonic() - self._snapshot.loaded_at > self._cache_s:
            return await self.reload()
        return self._snapshot

    async def _active_row(self, conn: AsyncConnection) -> Any:
        # Not compared with this replica's clock: one running a little behind the replica
        # that rotated must still find the new key rather than none.
        result = await conn.execute(
            select(signing_keys)
            .where(signing_keys.c.activated_at.is_not(None), signing_keys.c.retired_at.is_(None))
            .order_by(signing_keys.c.activated_at.desc())
            .limit(1)
        )
        return result.first()

    async def _insert(self, conn: AsyncConnection, now: datetime) -> str:
        private = Ed25519PrivateKey.generate()
        jwk = public_jwk(private.public_key())
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(self._passphrase)
            if self._passphrase
            else serialization.NoEncryption()
        )
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        ).decode()
        await conn.execute(
            insert(signing_keys).values(
                kid=jwk["kid"],
                algorithm=ALGORITHM,
                private_pem=pem,
                public_jwk=jwk,
                created_at=now,
                activated_at=now,
                retired_at=None,
            )
        )
        return jwk["kid"]


def _published(now: datetime) -> Any:
    return (signing_keys.c.activated_at.is_not(None)) & (
        signing_keys.c.retired_at.is_(None) | (signing_keys.c.retired_at > now)
    )
