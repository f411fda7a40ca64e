"""auth schema: tenants, users, sessions, refresh tokens, invites, signing keys, audit outbox

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "auth"


def _at(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        _at("created_at", nullable=False),
        schema=S,
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, sa.ForeignKey(f"{S}.tenants.id"), nullable=False),
        sa.Column("email", sa.Text, nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("roles", sa.ARRAY(sa.Text), nullable=False),
        _at("created_at", nullable=False),
        _at("password_changed_at", nullable=False),
        sa.CheckConstraint("email = lower(email)", name="users_email_lowercase"),
        schema=S,
    )
    op.create_index("users_tenant", "users", ["tenant_id"], schema=S)
    op.create_table(
        "sessions",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, sa.ForeignKey(f"{S}.tenants.id"), nullable=False),
        sa.Column("user_id", sa.Text, sa.ForeignKey(f"{S}.users.id"), nullable=False),
        _at("created_at", nullable=False),
        _at("last_seen_at", nullable=False),
        _at("revoked_at"),
        sa.Column("revoke_reason", sa.Text),
        sa.Column("user_agent", sa.Text),
        sa.Column("ip", sa.Text),
        schema=S,
    )
    op.create_index("sessions_user", "sessions", ["tenant_id", "user_id"], schema=S)
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.LargeBinary, primary_key=True),
        sa.Column("session_id", sa.Text, sa.ForeignKey(f"{S}.sessions.id"), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        _at("created_at", nullable=False),
        _at("expires_at", nullable=False),
        _at("used_at"),
        schema=S,
    )
    op.create_index("refresh_tokens_session", "refresh_tokens", ["session_id"], schema=S)
    op.create_table(
        "invites",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, sa.ForeignKey(f"{S}.tenants.id"), nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("token_hash", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("created_by", sa.Text, sa.ForeignKey(f"{S}.users.id"), nullable=False),
        _at("created_at", nullable=False),
        _at("expires_at", nullable=False),
        _at("accepted_at"),
        sa.Column("accepted_by", sa.Text, sa.ForeignKey(f"{S}.users.id")),
        sa.CheckConstraint("role IN ('admin', 'member')", name="invites_role_known"),
        schema=S,
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.Text, primary_key=True),
        sa.Column("algorithm", sa.Text, nullable=False),
        sa.Column("private_pem", sa.Text, nullable=False),
        sa.Column("public_jwk", JSONB, nullable=False),
        _at("created_at", nullable=False),
        _at("activated_at"),
        _at("retired_at"),
        schema=S,
    )
    op.create_table(
        "audit_outbox",
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("tenant_id", sa.Text),
        sa.Column("entry", JSONB, nullable=False),
        _at("created_at", nullable=False),
        _at("sent_at"),
        schema=S,
    )
    op.create_index(
        "audit_outbox_unsent",
        "audit_outbox",
        ["seq"],
        schema=S,
        postgresql_where=sa.text("sent_at IS NULL AND tenant_id IS NOT NULL"),
    )


def downgrade() -> None:
    for table in (
        "audit_outbox",
        "signing_keys",
        "invites",
        "refresh_tokens",
        "sessions",
        "users",
        "tenants",
    ):
        op.drop_table(table, schema=S)
