"""Erasure of a user (the right to be forgotten): the account closed, the history erased."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from apex_contracts import AuthFailed, ErrorCode
from apex_gateway.deps import CurrentUser, Services

router = APIRouter(prefix="/api/v1/users", tags=["users"])


@router.delete("/me", status_code=202)
async def erase_me(
    who: CurrentUser, services: Services, authorization: Annotated[str | None, Header()] = None
) -> dict[str, object]:
    """Erases the caller: their history, then their account, then what slipped between.

    1. The ``user.erased`` tombstone is appended, naming the user's runs (any still going
       publishes after it; those facts are covered too): every store and the log erase
       what it covers, and the erasure is audited (``data.erased``) when complete.
    2. Auth closes the account: every session revoked (open sockets close with 4401
       ``session_revoked``), the user and every personal record auth holds deleted.
       Nothing new can happen under this user from here on.
    3. A second tombstone extends the erasure over whatever the user did between 1 and 2
       (another tab), naming the runs again.
    4. The gateway's own records (cursors, idempotency, run owners) go.

    Every step is idempotent, and a failure before 2 leaves the account open: the user
    tries again. Only a failure of 3 (the bus down for 15 s right after 2) can leave facts
    of those moments, for an operator to erase."""
    token = (authorization or "")[7:].strip()
    if not token:  # an identity not from a Bearer token (never the case today)
        raise AuthFailed(code=ErrorCode.TOKEN_MISSING)
    forgotten = await services.erasure.erase(who, token)
    return {
        "user_id": who.user_id,
        "account": "closed",
        "erasure": "requested",
        "gateway_records_removed": forgotten,
    }
