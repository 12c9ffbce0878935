"""blinding and accounts: study secret, modality, audit; per-showing ids; drafts; reader
simulated/expiry/revocation; sign-in failures

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 21:10:00

Existing rows are kept: every existing study gets a fresh random secret (its stored cases and
orders are unchanged; the secret only drives readers added from now on), modality ``mr`` (``ct``
when it rescaled model units to HU), every existing showing a fresh random opaque id, every
existing reader ``simulated`` = true when it was named like a `study simulate` reader
(``sim_reader_NN``), else false.
"""

import re
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SHOWING_ID_BYTES = 8


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("modality", sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column("audit", sa.JSON(), nullable=True))
    study = sa.table(
        "study", sa.column("id", sa.Integer), sa.column("secret", sa.String), sa.column("modality", sa.String),
        sa.column("render", sa.JSON),
    )  # fmt: skip
    for row in bind.execute(sa.select(study.c.id, study.c.render)).all():
        render = row.render or {}
        modality = "ct" if render.get("rescale_from_unit") else "mr"
        bind.execute(
            study.update()
            .where(study.c.id == row.id)
            .values(secret=secrets.token_hex(32), modality=modality)
        )
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.alter_column("secret", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("modality", existing_type=sa.String(length=10), nullable=False)

    with op.batch_alter_table("reader", schema=None) as batch_op:
        batch_op.add_column(sa.Column("simulated", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    reader = sa.table("reader", sa.column("id", sa.Integer), sa.column("name", sa.String),
                      sa.column("simulated", sa.Boolean))  # fmt: skip
    for row in bind.execute(sa.select(reader.c.id, reader.c.name)).all():
        simulated = re.fullmatch(r"sim_reader_\d+", row.name or "") is not None
        bind.execute(reader.update().where(reader.c.id == row.id).values(simulated=simulated))
    with op.batch_alter_table("reader", schema=None) as batch_op:
        batch_op.alter_column("simulated", existing_type=sa.Boolean(), nullable=False)

    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("showing_id", sa.String(length=32), nullable=True))
    assignment = sa.table("assignment", sa.column("id", sa.Integer), sa.column("showing_id", sa.String))
    for (assignment_id,) in bind.execute(sa.select(assignment.c.id)).all():
        bind.execute(
            assignment.update()
            .where(assignment.c.id == assignment_id)
            .values(showing_id=secrets.token_hex(SHOWING_ID_BYTES))
        )
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.alter_column("showing_id", existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint("uq_assignment_showing_id", ["showing_id"])

    op.create_table(
        "answer_draft",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["assignment_id"], ["assignment.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("assignment_id", name="uq_draft_assignment"),
    )
    op.create_table(
        "sign_in_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("address", sa.String(length=100), nullable=True),
        sa.Column("client", sa.String(length=100), nullable=True),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sign_in_failure", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sign_in_failure_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_sign_in_failure_address"), ["address"], unique=False)
        batch_op.create_index(batch_op.f("ix_sign_in_failure_client"), ["client"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sign_in_failure", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sign_in_failure_client"))
        batch_op.drop_index(batch_op.f("ix_sign_in_failure_address"))
        batch_op.drop_index(batch_op.f("ix_sign_in_failure_at"))
    op.drop_table("sign_in_failure")
    op.drop_table("answer_draft")
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.drop_constraint("uq_assignment_showing_id", type_="unique")
        batch_op.drop_column("showing_id")
    with op.batch_alter_table("reader", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("simulated")
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_column("audit")
        batch_op.drop_column("modality")
        batch_op.drop_column("secret")
