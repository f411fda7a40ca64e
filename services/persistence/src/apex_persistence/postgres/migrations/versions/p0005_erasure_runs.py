"""an erasure names the runs it covers after its tombstone (runs that were still going):
``erasures.runs``

Revision ID: p0005
Revises: p0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "p0005"
down_revision = "p0004"
branch_labels = None
depends_on = None

S = "apex"


def upgrade() -> None:
    op.add_column(
        "erasures",
        sa.Column("runs", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
        schema=S,
    )


def downgrade() -> None:
    op.drop_column("erasures", "runs", schema=S)
