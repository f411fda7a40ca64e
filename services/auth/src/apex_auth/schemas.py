"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from apex_contracts.auth import TokenPair

Secret = Field(min_length=1, max_length=1024)


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # Postgres text cannot hold NUL: refused here (422), not failed there (500)
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain the NUL character")
        return value


class RegisterRequest(Body):
    email: str = Field(max_length=320)
    password: str = Secret
    tenant: str | None = Field(default=None, description="Name of the new tenant", max_length=100)
    invite: str | None = Field(
        default=None, description="Invite token from POST /auth/invites", max_length=512
    )

    @model_validator(mode="after")
    def _tenant_or_invite(self) -> Self:
        if (self.tenant is None) == (self.invite is None):
            raise ValueError("send exactly one of tenant (a new tenant) and invite")
        return self


class LoginRequest(Body):
    email: str = Field(max_length=320)
    password: str = Secret


class RefreshRequest(Body):
    refresh_token: str = Field(min_length=1, max_length=4096)


class PasswordChangeRequest(Body):
    current_password: str = Secret
    new_password: str = Secret


class InviteRequest(Body):
    email: str = Field(max_length=320)
    role: Literal["admin", "member"] = "member"


class Registered(TokenPair):
    user_id: str
    tenant_id: str


class SessionOut(BaseModel):
    id: str
    created_at: datetime
    last_seen_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool


class SessionList(BaseModel):
    sessions: list[SessionOut]


class InviteOut(BaseModel):
    invite_id: str
    invite_token: str
    expires_at: datetime


class Me(BaseModel):
    user_id: str
    tenant_id: str
    email: str
    roles: list[str]


class ErrorBody(BaseModel):
    """``{"error": {code, message, retryable, details?}}``"""

    error: dict[str, object]
