"""Admin keys sealed with AES-256-GCM under the connector key from configuration
(``APEX_CONNECTOR_KEY``), bound to their tenant and provider (associated data), so a
sealed key copied to another tenant's connector does not open. Earlier keys
(``APEX_CONNECTOR_OLD_KEYS``) still open what they sealed; sealing always uses the
current one. Sealed text: ``v1.<key id>.<nonce>.<ciphertext>`` (base64url)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from apex_contracts import ErrorCode, InternalError

log = logging.getLogger(__name__)
# Development only (the settings refuse to start elsewhere without a configured key).
DEVELOPMENT_KEY = base64.urlsafe_b64encode(
    hashlib.sha256(b"apex development connector key").digest()
).decode()


class SealingKeyInvalid(ValueError):
    """The configured key is not 32 bytes of base64."""


def _key_bytes(text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SealingKeyInvalid("APEX_CONNECTOR_KEY must be base64") from exc
    if len(raw) != 32:
        raise SealingKeyInvalid(f"APEX_CONNECTOR_KEY must hold 32 bytes, not {len(raw)}")
    return raw


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sealer:
    def __init__(self, key: str | None, old_keys: list[str] | None = None) -> None:
        if key is None:
            log.warning("APEX_CONNECTOR_KEY is not set: admin keys are sealed with the development key")
            key = DEVELOPMENT_KEY
        current = _key_bytes(key)
        self._current = (self._key_id(current), AESGCM(current))
        self._all = dict(
            [self._current] + [(self._key_id(k), AESGCM(k)) for k in map(_key_bytes, old_keys or [])]
        )

    @staticmethod
    def _key_id(key: bytes) -> str:
        return hashlib.sha256(b"apex connector key id" + key).hexdigest()[:8]

    def seal(self, secret: str, context: str) -> str:
        key_id, aead = self._current
        nonce = os.urandom(12)
        sealed = aead.encrypt(nonce, secret.encode(), context.encode())
        return f"v1.{key_id}.{_b64(nonce)}.{_b64(sealed)}"

    def open(self, sealed: str, context: str) -> str:
        """The secret; InternalError when no configured key opens it (the key changed
        without the old one kept, or the text was moved or altered)."""
        try:
            version, key_id, nonce, body = sealed.split(".")
            aead = self._all[key_id]
            if version != "v1":
                raise ValueError(version)
            return aead.decrypt(_unb64(nonce), _unb64(body), context.encode()).decode()
        except (ValueError, KeyError, InvalidTag, binascii.Error) as exc:
            raise InternalError(
                "A connector's admin key cannot be opened with the configured keys; connect it again.",
                code=ErrorCode.INTERNAL_ERROR,
                retryable=False,
            ) from exc
