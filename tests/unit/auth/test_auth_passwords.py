"""Password policy and Argon2id hashing."""

from __future__ import annotations

import time

import pytest

from apex_auth import Argon2Params, PasswordHashing, check_policy
from apex_contracts import InvalidInput

FAST = Argon2Params(time_cost=1, memory_kib=8192, parallelism=1)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("123456789", "at least 10"),
        ("x" * 257, "at most 256"),
        (" " * 12, "only spaces"),
        ("Ann@Example.com", "email"),
    ],
)
def test_policy_refuses_weak_passwords(password: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        check_policy(password, email="ann@example.com")


def test_policy_accepts_ten_characters() -> None:
    check_policy("0123456789", email="ann@example.com")


async def test_hashes_are_argon2id_salted_and_verify() -> None:
    hashing = PasswordHashing(FAST)
    first, second = await hashing.hash("correct horse"), await hashing.hash("correct horse")
    assert first.startswith("$argon2id$") and first != second
    assert await hashing.verify(first, "correct horse")
    assert not await hashing.verify(first, "correct horsE")
    assert not await hashing.verify("not a hash", "correct horse")


async def test_an_absent_account_never_verifies_and_costs_a_real_verification() -> None:
    hashing = PasswordHashing(Argon2Params(time_cost=2, memory_kib=19 * 1024, parallelism=1))
    stored = await hashing.hash("correct horse")

    async def timed(stored_hash: str | None) -> float:
        started = time.perf_counter()
        assert not await hashing.verify(stored_hash, "wrong guess")
        return time.perf_counter() - started

    absent = sorted([await timed(None) for _ in range(5)])[2]
    present = sorted([await timed(stored) for _ in range(5)])[2]
    assert 0.6 < absent / present < 1.6


async def test_changed_parameters_ask_for_a_rehash() -> None:
    old = await PasswordHashing(FAST).hash("correct horse")
    stronger = PasswordHashing(Argon2Params(time_cost=2, memory_kib=8192, parallelism=1))
    assert stronger.needs_rehash(old)
    assert await stronger.verify(old, "correct horse")
