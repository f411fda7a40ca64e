"""what the archive received of the log: ``archive_coverage`` (disjoint seq ranges), so a
replay can name a range neither the stream nor the archive holds; seeded with what the
history projection already applied (its checkpoint)

Revision ID: p0006
Revises: p0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "p0006"
down_revision = "p0005"
branch_labels = None
depends_on = None

S = "apex"
READER = "apex_reader"


def upgrade() -> None:
    op.create_table(
        "archive_coverage",
        sa.Column("from_seq", sa.BigInteger, primary_key=True),
        sa.Column("to_seq", sa.BigInteger, nullable=False),
        sa.CheckConstraint("to_seq >= from_seq", name="archive_coverage_range"),
        schema=S,
    )
    op.execute(f"""
        INSERT INTO {S}.archive_coverage (from_seq, to_seq)
        SELECT 1, last_seq FROM {S}.projection_checkpoints WHERE name = 'postgres' AND last_seq > 0
    """)
    op.execute(f"GRANT SELECT ON {S}.archive_coverage TO {READER}")


def downgrade() -> None:
    op.drop_table("archive_coverage", schema=S)
