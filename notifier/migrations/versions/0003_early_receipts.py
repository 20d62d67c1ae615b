"""early delivery receipts

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "early_receipts",
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("provider_id", name=op.f("pk_early_receipts")),
    )
    with op.batch_alter_table("early_receipts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_early_receipts_received_at"), ["received_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("early_receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_early_receipts_received_at"))
    op.drop_table("early_receipts")
