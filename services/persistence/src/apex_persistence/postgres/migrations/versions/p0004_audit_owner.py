"""the audit log belongs to ``apex_audit``, a role nobody logs in as: the writer inserts
and reads entries and may delete only through two narrow functions (an erased user's
entries, entries past retention); no switch turns the append-only guard off

Revision ID: p0004
Revises: p0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "p0004"
down_revision = "p0003"
branch_labels = None
depends_on = None

S = "apex"
OWNER = "apex_audit"  # owns the audit log, its guard and the two functions that delete
WRITER = "apex_writer"  # what the persistence service writes as (the migrating login is a member)
USER_ID = "^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$"
TENANT_ID = "^ten_[0-7][0-9A-HJKMNP-TV-Z]{25}$"


def upgrade() -> None:
    for role in (OWNER, WRITER):
        _role(role)
    op.execute(f"""
        DO $$
        BEGIN
            IF NOT pg_has_role(current_user, '{WRITER}', 'MEMBER') THEN
                EXECUTE format('GRANT {WRITER} TO %I', current_user);
            END IF;
        END $$;
    """)
    # The guard: an update never passes; a delete passes only inside the functions below,
    # which run as the owner. Nothing the writer can set (a setting, a role it can take)
    # reaches this exception.
    op.execute(f"""
        CREATE OR REPLACE FUNCTION {S}.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' AND current_user = '{OWNER}' THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION 'apex.audit_log is append-only';
        END $$;
    """)
    op.execute(f"""
        CREATE FUNCTION {S}.audit_erase_user(p_tenant text, p_user text) RETURNS bigint
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            removed bigint;
        BEGIN
            IF p_tenant IS NULL OR p_tenant !~ '{TENANT_ID}' OR p_user IS NULL OR p_user !~ '{USER_ID}' THEN
                RAISE EXCEPTION 'audit_erase_user needs a tenant id and a user id';
            END IF;
            DELETE FROM {S}.audit_log
            WHERE tenant_id = p_tenant AND action <> 'data.erased'
              AND (actor_user_id = p_user OR strpos(coalesce(target, ''), p_user) > 0);
            GET DIAGNOSTICS removed = ROW_COUNT;
            RETURN removed;
        END $$;
    """)
    op.execute(f"""
        CREATE FUNCTION {S}.audit_expire(p_before timestamptz) RETURNS bigint
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            removed bigint;
        BEGIN
            IF p_before IS NULL OR p_before > now() - interval '1 hour' THEN
                RAISE EXCEPTION 'audit_expire keeps at least the last hour of entries';
            END IF;
            DELETE FROM {S}.audit_log WHERE at < p_before;
            GET DIAGNOSTICS removed = ROW_COUNT;
            RETURN removed;
        END $$;
    """)
    for function in ("audit_log_append_only()", "audit_erase_user(text, text)", "audit_expire(timestamptz)"):
        op.execute(f"ALTER FUNCTION {S}.{function} OWNER TO {OWNER}")
        op.execute(f"REVOKE ALL ON FUNCTION {S}.{function} FROM PUBLIC")
    for function in ("audit_erase_user(text, text)", "audit_expire(timestamptz)"):
        op.execute(f"GRANT EXECUTE ON FUNCTION {S}.{function} TO {WRITER}")
    op.execute(f"ALTER TABLE {S}.audit_log OWNER TO {OWNER}")
    op.execute(f"GRANT USAGE ON SCHEMA {S} TO {OWNER}, {WRITER}")
    op.execute(f"REVOKE ALL ON {S}.audit_log FROM {WRITER}")
    op.execute(f"GRANT SELECT, INSERT ON {S}.audit_log TO {WRITER}")
    # The table keeps row-level security for readers; the writer sees and adds any tenant's.
    op.execute(f"CREATE POLICY writer_reads ON {S}.audit_log FOR SELECT TO {WRITER} USING (true)")
    op.execute(f"CREATE POLICY writer_adds ON {S}.audit_log FOR INSERT TO {WRITER} WITH CHECK (true)")


def downgrade() -> None:
    """Back to p0003: the migrating login owns the log again and the ``apex.erasing`` guard
    returns. The roles are cluster-wide and may serve other databases, so they stay."""
    op.execute(f"DROP POLICY IF EXISTS writer_adds ON {S}.audit_log")
    op.execute(f"DROP POLICY IF EXISTS writer_reads ON {S}.audit_log")
    op.execute(f"ALTER TABLE {S}.audit_log OWNER TO current_user")
    op.execute(f"DROP FUNCTION IF EXISTS {S}.audit_erase_user(text, text)")
    op.execute(f"DROP FUNCTION IF EXISTS {S}.audit_expire(timestamptz)")
    op.execute(f"ALTER FUNCTION {S}.audit_log_append_only() OWNER TO current_user")
    op.execute(f"""
        CREATE OR REPLACE FUNCTION {S}.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' AND current_setting('apex.erasing', true) = 'on' THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION 'apex.audit_log is append-only';
        END $$;
    """)


def _role(name: str) -> None:
    """A cluster-wide role without login, created once (several databases share it)."""
    op.execute(f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
                CREATE ROLE {name} NOLOGIN NOINHERIT NOBYPASSRLS;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END $$;
    """)
