"""The SQL of the history projection, for the view tables of one schema: ``apex`` (the
live views) or the schema a rebuild fills before it swaps the tables in. Each statement
commutes with every other (see ``changes.py``), which is what makes the views exact."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table, TextClause, text

from apex_persistence.postgres.tables import SCHEMA, schema_name, view_tables_in


def _rank(status: str) -> str:
    """``facts.status_rank`` in SQL: accepted 0, running 1, terminal 2."""
    return (
        f"(CASE WHEN {status} IN ('completed', 'needs_data', 'failed', 'cancelled') THEN 2 "
        f"WHEN {status} = 'running' THEN 1 ELSE 0 END)"
    )


# A run's status moves only further in its life, or at the same stage to a higher seq:
# the same rule as the hot view, and commutative, so any order of arrival agrees.
_FURTHER = (
    f"({_rank('EXCLUDED.status')} > {_rank('r.status')} OR ({_rank('EXCLUDED.status')} = "
    f"{_rank('r.status')} AND EXCLUDED.status_seq > r.status_seq))"
)


@dataclass(frozen=True)
class HistorySql:
    schema: str
    archive: Table
    touch_thread: TextClause
    set_title: TextClause
    add_message: TextClause
    upsert_run: TextClause
    delete_thread: TextClause
    erase_thread: tuple[TextClause, ...]
    erase_user: tuple[TextClause, ...]


def history_sql(schema: str = SCHEMA) -> HistorySql:
    s = schema_name(schema)
    return HistorySql(
        schema=s,
        archive=view_tables_in(s)["events"],
        touch_thread=text(f"""
            INSERT INTO {s}.threads AS t (id, tenant_id, user_id, title, created_at, updated_at)
            VALUES (:id, :tenant_id, :user_id, '', :created_at, :updated_at)
            ON CONFLICT (id) DO UPDATE SET
                created_at = LEAST(t.created_at, EXCLUDED.created_at),
                updated_at = GREATEST(t.updated_at, EXCLUDED.updated_at)
            WHERE t.tenant_id = EXCLUDED.tenant_id
        """),
        set_title=text(f"""
            UPDATE {s}.threads SET title = :title, title_seq = :seq, title_source = :source
            WHERE id = :id AND (
                title_source IS NULL
                OR (:source = 'rename' AND (title_source = 'message' OR title_seq < :seq))
                OR (:source = 'message' AND title_source = 'message' AND title_seq > :seq))
        """),
        add_message=text(f"""
            INSERT INTO {s}.messages (id, tenant_id, thread_id, role, content, run_id, seq, created_at)
            VALUES (:id, :tenant_id, :thread_id, :role, :content, :run_id, :seq, :created_at)
            ON CONFLICT (id) DO NOTHING
        """),
        upsert_run=text(f"""
            INSERT INTO {s}.runs AS r (id, tenant_id, user_id, thread_id, status, status_seq, started_at,
                ended_at, duration_ms, error_code, tool_calls, llm_tokens, reported_tokens, llm_cost_usd,
                updated_at)
            VALUES (:id, :tenant_id, :user_id, :thread_id, :status, :status_seq, :started_at, :ended_at,
                :duration_ms, :error_code, :tool_calls, :llm_tokens, :reported_tokens, :llm_cost_usd, :updated_at)
            ON CONFLICT (id) DO UPDATE SET
                status = CASE WHEN {_FURTHER} THEN EXCLUDED.status ELSE r.status END,
                status_seq = CASE WHEN {_FURTHER} THEN EXCLUDED.status_seq ELSE r.status_seq END,
                started_at = LEAST(r.started_at, EXCLUDED.started_at),
                ended_at = COALESCE(r.ended_at, EXCLUDED.ended_at),
                duration_ms = COALESCE(r.duration_ms, EXCLUDED.duration_ms),
                error_code = COALESCE(r.error_code, EXCLUDED.error_code),
                tool_calls = r.tool_calls + EXCLUDED.tool_calls,
                llm_tokens = r.llm_tokens + EXCLUDED.llm_tokens,
                reported_tokens = COALESCE(EXCLUDED.reported_tokens, r.reported_tokens),
                llm_cost_usd = COALESCE(EXCLUDED.llm_cost_usd, r.llm_cost_usd),
                updated_at = GREATEST(r.updated_at, EXCLUDED.updated_at)
            WHERE r.tenant_id = EXCLUDED.tenant_id
        """),
        delete_thread=text(f"""
            UPDATE {s}.threads SET deleted_at = COALESCE(deleted_at, :at) WHERE id = :id
        """),
        # What a tombstone covers: rows of events before it, and of the runs it names;
        # a thread keeps its row (without the erased title) only while later events remain.
        erase_thread=(
            text(f"""DELETE FROM {s}.messages WHERE tenant_id = :tenant_id AND thread_id = :thread_id
                     AND (seq <= :seq OR run_id = ANY(:runs))"""),
            text(f"""DELETE FROM {s}.events WHERE tenant_id = :tenant_id AND thread_id = :thread_id
                     AND (seq <= :seq OR run_id = ANY(:runs))"""),
            text(f"""DELETE FROM {s}.runs WHERE tenant_id = :tenant_id AND thread_id = :thread_id
                     AND (status_seq <= :seq OR id = ANY(:runs))"""),
            *_erase_threads(s, "t.id = :thread_id AND t.user_id = :user_id"),
        ),
        erase_user=(
            text(f"""DELETE FROM {s}.messages WHERE tenant_id = :tenant_id AND (seq <= :seq OR run_id = ANY(:runs))
                     AND thread_id IN (SELECT id FROM {s}.threads WHERE tenant_id = :tenant_id AND user_id = :user_id)"""),
            text(f"""DELETE FROM {s}.events WHERE tenant_id = :tenant_id AND user_id = :user_id
                     AND (seq <= :seq OR run_id = ANY(:runs))"""),
            text(f"""DELETE FROM {s}.runs WHERE tenant_id = :tenant_id AND user_id = :user_id
                     AND (status_seq <= :seq OR id = ANY(:runs))"""),
            *_erase_threads(s, "t.user_id = :user_id"),
        ),
    )


def _erase_threads(s: str, which: str) -> tuple[TextClause, ...]:
    """The erased threads' rows: gone when no later event of theirs remains; otherwise
    kept, without a title that came from before the tombstone."""
    return (
        text(f"""DELETE FROM {s}.threads t WHERE t.tenant_id = :tenant_id AND {which}
                 AND NOT EXISTS (SELECT 1 FROM {s}.events e WHERE e.tenant_id = t.tenant_id AND e.thread_id = t.id)"""),
        text(f"""UPDATE {s}.threads t SET title = '', title_seq = NULL, title_source = NULL
                 WHERE t.tenant_id = :tenant_id AND {which} AND coalesce(t.title_seq, 0) <= :seq"""),
    )
