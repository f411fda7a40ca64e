"""Passwords: the policy a new one must meet, and Argon2id hashing that takes the same
time whether or not the account exists, bounded so that a burst of logins cannot take
more memory than the process has.

Each Argon2 check holds ``memory_kib`` of memory while it runs. Checks run on a pool of
``slots`` threads, and a caller waits at most ``wait_s`` for a free one; beyond that the
answer is ``auth_busy`` (503, retryable, with ``Retry-After``), never an OOM kill.
``slots_for_memory`` sizes the pool to the container's memory limit."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from apex_auth import metrics
from apex_contracts import ErrorCode, InvalidInput, Unavailable

T = TypeVar("T")
MIN_LENGTH = 10
# What the process needs besides the checks in flight (interpreter, pools, caches), and
# the allocator's overhead on each check's memory: measured on the auth image, rounded up.
BASE_MEMORY_BYTES = 256 * 1024 * 1024
PER_CHECK_OVERHEAD = 1.25
BUSY_RETRY_AFTER_MS = 1000
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


def slots_for_memory(limit_bytes: int, memory_kib: int) -> int:
    """How many Argon2 checks fit at once in ``limit_bytes`` beside the process itself
    (at least one: a service that cannot check one password is of no use)."""
    per_check = memory_kib * 1024 * PER_CHECK_OVERHEAD
    return max(1, int((limit_bytes - BASE_MEMORY_BYTES) // per_check))


class PasswordHashing:
    """Argon2id hashing off the event loop, at most ``slots`` at a time.

    ``verify`` answers False for a wrong password *and* for an absent account
    (``stored_hash=None``), doing the same work in both cases: it then checks the
    password against a hash of a random secret made with the same parameters. Both
    raise Unavailable(``auth_busy``) when no slot frees up within ``wait_s``.
    """

    def __init__(self, params: Argon2Params, *, slots: int = 4, wait_s: float = 2.0) -> None:
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            type=Type.ID,
        )
        self._dummy = self._hasher.hash(secrets.token_urlsafe(24))
        self.slots = slots
        self.wait_s = wait_s
        self._free = asyncio.Semaphore(slots)
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="argon2")
        self.in_use = 0

    async def hash(self, password: str) -> str:
        return await self._run(self._hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        return await self._run(self._verify, stored_hash, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        async with self._slot():
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        try:
            await asyncio.wait_for(self._free.acquire(), self.wait_s)
        except TimeoutError:
            metrics.PASSWORD_BUSY.inc()
            raise Unavailable(
                "Too many sign-ins at once; try again in a moment.",
                code=ErrorCode.AUTH_BUSY,
                details={"retry_after_ms": BUSY_RETRY_AFTER_MS},
            ) from None
        self.in_use += 1
        metrics.PASSWORD_SLOTS_IN_USE.set(self.in_use)
        try:
            yield
        finally:
            self.in_use -= 1
            metrics.PASSWORD_SLOTS_IN_USE.set(self.in_use)
            self._free.release()

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
