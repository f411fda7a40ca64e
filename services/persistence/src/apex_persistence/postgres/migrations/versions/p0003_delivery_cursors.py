"""delivery cursors: the gateway's acknowledged seq per user and thread, flushed from
Redis (tenant-scoped, row-level security)

Revision ID: p0003
Revises: p0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "p0003"
down_revision = "p0002"
branch_labels = None
depends_on = None

S = "apex"
READER = "apex_reader"


def upgrade() -> None:
    op.create_table(
        "delivery_cursors",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("thread_id", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", "thread_id", name="delivery_cursors_pkey"),
        sa.CheckConstraint("seq >= 0", name="delivery_cursors_seq"),
        schema=S,
    )
    # A thread erasure deletes the thread's cursors by thread id.
    op.create_index("delivery_cursors_by_thread", "delivery_cursors", ["tenant_id", "thread_id"], schema=S)
    op.execute(f"ALTER TABLE {S}.delivery_cursors ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {S}.delivery_cursors "
        "USING (tenant_id = current_setting('apex.tenant_id', true))"
    )
    op.execute(f"GRANT SELECT ON {S}.delivery_cursors TO {READER}")


def downgrade() -> None:
    op.drop_table("delivery_cursors", schema=S)
