"""Prefixed ULIDs: the only ids that may enter a subject, a key or a query.

An id is ``<prefix>_<26 Crockford base32 chars>`` (``thr_01J9Z...``). New ids are
ULIDs (time-ordered); ids that a retry must reproduce are *derived*: the same parts
always give the same id, so a publisher that crashes and retries never mints a second
fact.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Final

from pydantic import AfterValidator
from ulid import ULID

from apex_contracts.errors import InvalidId

_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BODY: Final = r"[0-7][0-9A-HJKMNP-TV-Z]{25}"

PREFIXES: Final = frozenset(
    {"ten", "usr", "thr", "run", "msg", "ses", "call", "evt", "cmd", "inv", "con", "key", "upl", "aud", "sva"}
)
_ID_RE: Final = re.compile(rf"^(?P<prefix>[a-z]{{3,4}})_(?P<body>{_BODY})$")


def new_id(prefix: str) -> str:
    """A fresh, time-ordered id with the given prefix."""
    _check_prefix(prefix)
    return f"{prefix}_{ULID()}"


def derive_id(prefix: str, *parts: str) -> str:
    """A deterministic id: the same prefix and parts always give the same id."""
    _check_prefix(prefix)
    digest = int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:16], "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[digest & 31])
        digest >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def is_id(value: object, prefix: str | None = None) -> bool:
    if not isinstance(value, str):
        return False
    match = _ID_RE.match(value)
    return match is not None and (prefix is None or match["prefix"] == prefix)


def validate_id(value: object, prefix: str) -> str:
    """Returns ``value`` when it is a well-formed id with ``prefix``; raises InvalidId."""
    if not is_id(value, prefix):
        shown = value if isinstance(value, str) and len(value) <= 64 else type(value).__name__
        raise InvalidId(f"'{shown}' is not a valid {prefix}_ id")
    return str(value)


def _check_prefix(prefix: str) -> None:
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")


def _validator(prefix: str) -> AfterValidator:
    def check(value: str) -> str:
        if not is_id(value, prefix):
            raise ValueError(f"must be a {prefix}_ id (prefix, underscore, 26-char ULID)")
        return value

    return AfterValidator(check)


TenantId = Annotated[str, _validator("ten")]
UserId = Annotated[str, _validator("usr")]
ThreadId = Annotated[str, _validator("thr")]
RunId = Annotated[str, _validator("run")]
MessageId = Annotated[str, _validator("msg")]
SessionId = Annotated[str, _validator("ses")]
CallId = Annotated[str, _validator("call")]
