"""Reviews: a person's verdict on a sample of an audit (keep, relabel, drop, outlier).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey("task_groups.id", name="fk_reviews_group", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("sample", sa.Text(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("user", sa.String(63), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_reviews_group_sample", "reviews", ["group_id", "sample"])


def downgrade() -> None:
    op.drop_index("ix_reviews_group_sample", "reviews")
    op.drop_table("reviews")
