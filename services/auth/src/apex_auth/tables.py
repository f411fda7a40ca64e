"""The ``auth`` schema as SQLAlchemy Core tables (the queries' view of it).

The migrations in ``apex_auth/migrations`` create the same tables; they do not import
this module, so an old migration keeps meaning what it meant when it was written.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "auth"
VERSION_TABLE = "alembic_version_auth"

metadata = MetaData(schema=SCHEMA)


def _at(name: str, *, nullable: bool = True) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


tenants = Table(
    "tenants",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    _at("created_at", nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, ForeignKey("auth.tenants.id"), nullable=False),
    Column("email", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("roles", ARRAY(Text), nullable=False),
    _at("created_at", nullable=False),
    _at("password_changed_at", nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, ForeignKey("auth.tenants.id"), nullable=False),
    Column("user_id", Text, ForeignKey("auth.users.id"), nullable=False),
    _at("created_at", nullable=False),
    _at("last_seen_at", nullable=False),
    _at("revoked_at"),
    Column("revoke_reason", Text),
    Column("user_agent", Text),
    Column("ip", Text),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column("session_id", Text, ForeignKey("auth.sessions.id"), nullable=False),
    Column("generation", Integer, nullable=False),
    _at("created_at", nullable=False),
    _at("expires_at", nullable=False),
    _at("used_at"),
)

invites = Table(
    "invites",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, ForeignKey("auth.tenants.id"), nullable=False),
    Column("email", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    Column("created_by", Text, ForeignKey("auth.users.id"), nullable=False),
    _at("created_at", nullable=False),
    _at("expires_at", nullable=False),
    _at("accepted_at"),
    Column("accepted_by", Text, ForeignKey("auth.users.id")),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", Text, primary_key=True),
    Column("algorithm", Text, nullable=False),
    Column("private_pem", Text, nullable=False),
    Column("public_jwk", JSONB, nullable=False),
    _at("created_at", nullable=False),
    _at("activated_at"),
    _at("retired_at"),
)

audit_outbox = Table(
    "audit_outbox",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("id", Text, nullable=False, unique=True),
    Column("tenant_id", Text),
    Column("entry", JSONB, nullable=False),
    _at("created_at", nullable=False),
    _at("sent_at"),
)

# A tenant's service account: a principal with its own user id, no email or password;
# its credential is a NATS user (``public_key``), revoked by the account JWT.
service_accounts = Table(
    "service_accounts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, ForeignKey("auth.tenants.id"), nullable=False),
    Column("user_id", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("public_key", Text, nullable=False, unique=True),
    Column("created_by", Text, nullable=False),
    _at("created_at", nullable=False),
    _at("revoked_at"),
    Column("revoked_by", Text),
)
