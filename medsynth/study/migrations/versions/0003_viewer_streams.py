"""viewer streams: each case coded once for the browser viewer

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 00:30:00

A new table only; existing rows are untouched. A study created before it gets its viewer coding,
message length (``study.render.viewer``) and one stream per case at its first viewer request.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "viewer_stream",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("header", sa.JSON(), nullable=False),
        sa.Column("deflated", sa.LargeBinary(), nullable=False),
        sa.Column("adler", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["study_case.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("case_id"),
    )


def downgrade() -> None:
    op.drop_table("viewer_stream")
