"""what the front desk did to a visit, and numbers found unable to take texts

Revision ID: 0011
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "visit_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("appointment_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=True),
        sa.Column("staff", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("before_status", sa.String(length=16), nullable=False),
        sa.Column("before_confirmation", sa.String(length=24), nullable=False),
        sa.Column("before_end_at", sa.DateTime(), nullable=False),
        sa.Column("undoes", sa.Integer(), nullable=True),
        sa.Column("undone_at", sa.DateTime(), nullable=True),
        sa.Column("undone_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["appointment_id"], ["appointments.id"], name=op.f("fk_visit_actions_appointment_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_actions")),
        sa.UniqueConstraint("token", name=op.f("uq_visit_actions_token")),
    )
    with op.batch_alter_table("visit_actions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_visit_actions_appointment_id"), ["appointment_id"], unique=False
        )
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_mobile_phone", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("not_mobile_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_column("not_mobile_at")
        batch_op.drop_column("not_mobile_phone")
    with op.batch_alter_table("visit_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_visit_actions_appointment_id"))
    op.drop_table("visit_actions")
