"""early receipts keep the failure's reason, read by the provider's module

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Receipts waiting at upgrade time came from Twilio, the only provider before this revision:
# its error codes as they were read then, so that such a receipt means what it meant.
TWILIO_REASONS = {
    "21211": "invalid_number",
    "21212": "invalid_sender",
    "21408": "region_not_enabled",
    "21610": "opted_out",
    "21612": "unreachable",
    "21614": "not_mobile",
    "30003": "unreachable",
    "30004": "blocked",
    "30005": "unknown_number",
    "30006": "not_mobile",
    "30007": "filtered",
}


def upgrade() -> None:
    with op.batch_alter_table("early_receipts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=64), nullable=True))
    receipts = sa.table(
        "early_receipts",
        sa.column("status", sa.String),
        sa.column("error_code", sa.String),
        sa.column("reason", sa.String),
    )
    for code, reason in TWILIO_REASONS.items():
        op.execute(
            receipts.update()
            .where(receipts.c.error_code == code, receipts.c.status != "delivered")
            .values(reason=reason)
        )


def downgrade() -> None:
    with op.batch_alter_table("early_receipts", schema=None) as batch_op:
        batch_op.drop_column("reason")
