"""What the auth service promises the gateway: token claims, key discovery, revocation.

Access tokens are JWTs signed with an asymmetric key named by ``kid`` and published at
``/.well-known/jwks.json``. ``typ`` is ``access``; a refresh token is opaque and can never
pass for one. A revoked session's id is in Redis under ``revoked_session_key`` until the
longest access token of that session has expired, and is broadcast on
``apex.ctl.session.revoked`` so every gateway closes its sockets at once.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from apex_contracts.envelope import Model
from apex_contracts.ids import SessionId, TenantId, UserId

ISSUER: Final = "apex-auth"
AUDIENCE: Final = "apex"
ALGORITHMS: Final = ("EdDSA",)
JWKS_PATH: Final = "/.well-known/jwks.json"
ACCESS_TOKEN_MAX_TTL_S: Final = 15 * 60
REQUIRED_CLAIMS: Final = ("iss", "aud", "sub", "tid", "sid", "jti", "iat", "nbf", "exp", "typ", "roles")

Role = Literal["admin", "member"]
# The platform's operators: granted by configuration only (the auth service's allow-list of
# user ids, or an external issuer's claim), never stored with a user, never by registration.
OPERATOR_ROLE: Final = "operator"
RevokeReason = Literal["logout", "refresh_reused", "password_changed", "revoked_by_user", "erased"]


class AccessClaims(Model):
    iss: str
    aud: str | list[str]
    sub: UserId
    tid: TenantId
    sid: SessionId
    jti: str = Field(min_length=8, max_length=64)
    iat: int
    nbf: int
    exp: int
    typ: Literal["access"]
    roles: list[str]


class TokenPair(Model):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


class SessionRevoked(Model):
    """Broadcast on ``apex.ctl.session.revoked``."""

    session_id: SessionId
    tenant_id: TenantId
    user_id: UserId
    reason: RevokeReason = "logout"


def revoked_session_key(session_id: str) -> str:
    return f"apex:revoked:sid:{session_id}"
