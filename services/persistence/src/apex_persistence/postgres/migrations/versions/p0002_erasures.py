"""erasure ledger (replaces threads.erased_at); the audit log accepts the deletes of an
erasure

Revision ID: p0002
Revises: p0001
Create Date: 2025-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "p0002"
down_revision = "p0001"
branch_labels = None
depends_on = None

S = "apex"


def upgrade() -> None:
    # Not a view: the record of every erasure (tombstone), kept so that no replay or
    # rebuild can bring erased data back, and worked off by the eraser (purge, audit).
    op.create_table(
        "erasures",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("thread_id", sa.Text, nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("audited_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "target", name="erasures_pkey"),
        sa.CheckConstraint("kind IN ('thread', 'user')", name="erasures_kind"),
        schema=S,
    )
    op.create_index("erasures_by_user", "erasures", ["tenant_id", "user_id"], schema=S)
    op.create_index("erasures_by_thread", "erasures", ["thread_id"], schema=S)
    op.create_index(
        "erasures_pending",
        "erasures",
        ["seq"],
        schema=S,
        postgresql_where=sa.text("purged_at IS NULL OR audited_at IS NULL"),
    )
    op.create_index("threads_by_updated", "threads", ["updated_at"], schema=S)
    op.create_index("events_by_seq", "events", ["seq"], schema=S)  # a rebuild reads the archive by seq
    # Threads erased under p0001 were kept as rows with erased_at: they become ledger
    # entries (still to be purged from the log and audited) and the rows go.
    op.execute(f"""
        INSERT INTO {S}.erasures (tenant_id, target, kind, user_id, thread_id, seq, event_id, requested_by,
                                  requested_at)
        SELECT tenant_id, 'thread:' || id, 'thread', user_id, id, 0, 'legacy:' || id, user_id, erased_at
        FROM {S}.threads WHERE erased_at IS NOT NULL
    """)
    op.execute(f"DELETE FROM {S}.threads WHERE erased_at IS NOT NULL")
    op.drop_column("threads", "erased_at", schema=S)
    _audit_guard(allow_delete=True)


def downgrade() -> None:
    """Back to p0001: erased threads become tombstone rows again; user erasures have no
    p0001 form and are dropped with the ledger."""
    _audit_guard(allow_delete=False)
    op.add_column("threads", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True), schema=S)
    op.execute(f"""
        INSERT INTO {S}.threads (id, tenant_id, user_id, title, created_at, updated_at, deleted_at, erased_at)
        SELECT thread_id, tenant_id, user_id, '', requested_at, requested_at, requested_at, requested_at
        FROM {S}.erasures WHERE kind = 'thread'
        ON CONFLICT (id) DO NOTHING
    """)
    op.drop_index("events_by_seq", table_name="events", schema=S)
    op.drop_index("threads_by_updated", table_name="threads", schema=S)
    op.drop_table("erasures", schema=S)


def _audit_guard(*, allow_delete: bool) -> None:
    """The audit log stays append-only, except for deletes made by an erasure or the
    retention sweep, which say so in their own transaction (``apex.erasing``)."""
    exception = (
        "IF TG_OP = 'DELETE' AND current_setting('apex.erasing', true) = 'on' THEN\n"
        "                RETURN OLD;\n"
        "            END IF;"
        if allow_delete
        else ""
    )
    op.execute(f"""
        CREATE OR REPLACE FUNCTION {S}.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            {exception}
            RAISE EXCEPTION 'apex.audit_log is append-only';
        END $$;
    """)
