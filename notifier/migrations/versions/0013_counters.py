"""counters of what leaves no row of its own: replayed booking events, refused webhooks

Revision ID: 0013
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", "label", name="pk_counters"),
    )


def downgrade() -> None:
    op.drop_table("counters")
