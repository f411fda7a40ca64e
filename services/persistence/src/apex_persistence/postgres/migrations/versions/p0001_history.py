"""apex schema: threads, messages, runs, event archive, checkpoints, audit log; row-level
security for the reader role

Revision ID: p0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "p0001"
down_revision = None
branch_labels = None
depends_on = None

S = "apex"
READER = "apex_reader"
TENANT_TABLES = ("threads", "messages", "runs", "events", "audit_log")


def _at(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    _history_tables()
    _archive_tables()
    _reader_role()
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {S}.{table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {S}.{table} "
            "USING (tenant_id = current_setting('apex.tenant_id', true))"
        )
        op.execute(f"GRANT SELECT ON {S}.{table} TO {READER}")
    _audit_append_only()


def _history_tables() -> None:
    op.create_table(
        "threads",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False, server_default=""),
        sa.Column("title_seq", sa.BigInteger, nullable=True),
        sa.Column("title_source", sa.Text, nullable=True),
        _at("created_at"),
        _at("updated_at"),
        _at("deleted_at", nullable=True),
        _at("erased_at", nullable=True),
        sa.CheckConstraint("title_source IN ('message', 'rename')", name="threads_title_source"),
        schema=S,
    )
    op.create_index(
        "threads_by_user",
        "threads",
        ["tenant_id", "user_id", sa.text("updated_at DESC"), sa.text("id DESC")],
        schema=S,
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("thread_id", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text, nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        _at("created_at"),
        sa.CheckConstraint("role IN ('user', 'assistant')", name="messages_role"),
        schema=S,
    )
    op.create_index("messages_by_thread", "messages", ["thread_id", "seq"], schema=S)
    op.create_table(
        "runs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("thread_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("status_seq", sa.BigInteger, nullable=False, server_default="0"),
        _at("started_at", nullable=True),
        _at("ended_at", nullable=True),
        sa.Column("duration_ms", sa.Integer, nullable=True),
        sa.Column("tool_calls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("llm_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("reported_tokens", sa.BigInteger, nullable=True),
        sa.Column("llm_cost_usd", sa.Float, nullable=True),
        sa.Column("error_code", sa.Text, nullable=True),
        _at("updated_at"),
        sa.CheckConstraint(
            "status IN ('accepted', 'running', 'completed', 'needs_data', 'failed', 'cancelled')",
            name="runs_status",
        ),
        schema=S,
    )
    op.create_index("runs_by_thread", "runs", ["thread_id"], schema=S)


def _archive_tables() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("thread_id", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text, nullable=True),
        sa.Column("type", sa.Text, nullable=False),
        _at("occurred_at"),
        sa.Column("payload", JSONB, nullable=False),
        schema=S,
    )
    op.create_index("events_by_thread", "events", ["thread_id", "seq"], schema=S)
    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        _at("updated_at"),
        schema=S,
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        _at("at"),
        sa.Column("actor_user_id", sa.Text, nullable=True),
        sa.Column("session_id", sa.Text, nullable=True),
        sa.Column("source_ip", sa.Text, nullable=True),
        sa.Column("service", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=True),
        sa.Column("details", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        schema=S,
    )
    op.create_index(
        "audit_by_tenant", "audit_log", ["tenant_id", sa.text("at DESC"), sa.text("id DESC")], schema=S
    )


def _reader_role() -> None:
    """The role read queries run as. Roles belong to the cluster, not the database, so
    several databases (and concurrent migrations) share it: create it only if missing."""
    op.execute(f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER}') THEN
                CREATE ROLE {READER} NOLOGIN NOBYPASSRLS;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END $$;
    """)
    op.execute(f"""
        DO $$
        BEGIN
            IF NOT pg_has_role(current_user, '{READER}', 'MEMBER') THEN
                EXECUTE format('GRANT {READER} TO %I', current_user);
            END IF;
        END $$;
    """)
    op.execute(f"GRANT USAGE ON SCHEMA {S} TO {READER}")


def _audit_append_only() -> None:
    op.execute(f"""
        CREATE FUNCTION {S}.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'apex.audit_log is append-only';
        END $$;
    """)
    op.execute(
        f"CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON {S}.audit_log "
        f"FOR EACH ROW EXECUTE FUNCTION {S}.audit_log_append_only()"
    )


def downgrade() -> None:
    """Drops everything this revision made in this database. The reader role is
    cluster-wide and may serve other databases, so it stays; only its grants here go."""
    op.execute(f"DROP TRIGGER IF EXISTS audit_log_append_only ON {S}.audit_log")
    op.execute(f"DROP FUNCTION IF EXISTS {S}.audit_log_append_only()")
    for table in ("audit_log", "projection_checkpoints", "events", "runs", "messages", "threads"):
        op.drop_table(table, schema=S)
    op.execute(f"REVOKE USAGE ON SCHEMA {S} FROM {READER}")
