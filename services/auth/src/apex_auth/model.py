"""The nouns the use cases share: who is calling, from where, and what they get back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email

from apex_contracts import InvalidInput
from apex_contracts.auth import TokenPair

ROLES = ("admin", "member")
MAX_EMAIL_CHARS = 254


@dataclass(frozen=True, slots=True)
class Client:
    """Where a request comes from, as far as the service can tell."""

    ip: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a Bearer endpoint: a verified token of a live session."""

    user_id: str
    tenant_id: str
    session_id: str
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


@dataclass(frozen=True, slots=True)
class Issued:
    """What register answers: a token pair and who it was issued to."""

    tokens: TokenPair
    user_id: str
    tenant_id: str


@dataclass(frozen=True, slots=True)
class SessionView:
    id: str
    created_at: datetime
    last_seen_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool


@dataclass(frozen=True, slots=True)
class InviteIssued:
    invite_id: str
    invite_token: str
    expires_at: datetime


def normalise_email(raw: str) -> str:
    """The canonical form of a new account's email; raises InvalidInput when it is not one."""
    try:
        checked = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"The email address is not valid: {exc}") from exc
    email = checked.normalized.lower()
    if len(email) > MAX_EMAIL_CHARS:
        raise InvalidInput("The email address is too long.")
    return email


def lookup_email(raw: str) -> str:
    """The form to look an account up by: the canonical form when ``raw`` is an email,
    otherwise something no account has. Never raises, so a malformed email is answered
    exactly like an unknown one."""
    try:
        return normalise_email(raw)
    except InvalidInput:
        return raw.strip().lower()[:MAX_EMAIL_CHARS]
