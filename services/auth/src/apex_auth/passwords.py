"""Passwords: the policy a new one must meet, and Argon2id hashing that takes the same
time whether or not the account exists."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from apex_auth import metrics
from apex_contracts import InvalidInput

MIN_LENGTH = 10
MAX_LENGTH = 256


def check_policy(password: str, *, email: str | None = None) -> None:
    """Raises InvalidInput (``invalid_request``) naming what a new password lacks."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"The password must have at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"The password must have at most {MAX_LENGTH} characters.")
    if not password.strip():
        raise InvalidInput("The password must not be only spaces.")
    if email is not None and password.strip().lower() == email.lower():
        raise InvalidInput("The password must not be the email address.")


@dataclass(frozen=True, slots=True)
class Argon2Params:
    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4


class PasswordHashing:
    """Argon2id hashing off the event loop.

    ``verify`` answers False for a wrong password *and* for an absent account
    (``stored_hash=None``), doing the same work in both cases: it then checks the
    password against a hash of a random secret made with the same parameters.
    """

    def __init__(self, params: Argon2Params) -> None:
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            type=Type.ID,
        )
        self._dummy = self._hasher.hash(secrets.token_urlsafe(24))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        return await asyncio.to_thread(self._verify, stored_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)

    async def burn(self, password: str) -> None:
        """Does the work of a verification without an account, so an answer that does
        not depend on a password still takes as long as one that does."""
        await self.verify(None, password)

    def _hash(self, password: str) -> str:
        with metrics.PASSWORD_SECONDS.time():
            return self._hasher.hash(password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            with metrics.PASSWORD_SECONDS.time():
                matched = self._hasher.verify(stored_hash or self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return matched and stored_hash is not None
