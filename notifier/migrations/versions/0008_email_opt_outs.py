"""the email opt-out registry

Revision ID: 0008
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_opt_outs",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("opted_out_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_email_opt_outs")),
    )


def downgrade() -> None:
    op.drop_table("email_opt_outs")
