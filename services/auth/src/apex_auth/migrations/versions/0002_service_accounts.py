"""auth schema: tenants' service accounts

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "auth"


def upgrade() -> None:
    op.create_table(
        "service_accounts",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, sa.ForeignKey(f"{S}.tenants.id"), nullable=False),
        sa.Column("user_id", sa.Text, nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("public_key", sa.Text, nullable=False, unique=True),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_by", sa.Text),
        schema=S,
    )
    op.create_index("service_accounts_tenant", "service_accounts", ["tenant_id"], schema=S)


def downgrade() -> None:
    op.drop_table("service_accounts", schema=S)
