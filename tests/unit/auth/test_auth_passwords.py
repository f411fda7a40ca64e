"""Password policy and Argon2id hashing."""

from __future__ import annotations

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
    """An unknown email runs the same Argon2 verification as a known one (same algorithm,
    memory, time and parallelism), so its answer takes as long: checked by what is
    verified, not by a clock, which a loaded machine makes meaningless."""
    hashing = PasswordHashing(Argon2Params(time_cost=2, memory_kib=19 * 1024, parallelism=1))
    stored = await hashing.hash("correct horse")
    verified: list[str] = []
    real = hashing._hasher

    class Spy:
        def verify(self, hash_: str, password: str) -> bool:
            verified.append(hash_)
            return real.verify(hash_, password)

    hashing._hasher = Spy()  # type: ignore[assignment]
    assert not await hashing.verify(None, "wrong guess")
    assert not await hashing.verify(stored, "wrong guess")
    absent, present = verified
    assert absent != present
    assert absent.rsplit("$", 2)[0] == present.rsplit("$", 2)[0]  # $argon2id$v=19$m=...,t=...,p=...


async def test_changed_parameters_ask_for_a_rehash() -> None:
    old = await PasswordHashing(FAST).hash("correct horse")
    stronger = PasswordHashing(Argon2Params(time_cost=2, memory_kib=8192, parallelism=1))
    assert stronger.needs_rehash(old)
    assert await stronger.verify(old, "correct horse")
