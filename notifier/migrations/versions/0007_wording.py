"""the numbers that have had their first text; a calendar sequence per appointment

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0011"
branch_labels = None
depends_on = None

# Calendar files sent before this revision carried the booking time in seconds as their
# SEQUENCE; the counter starts there for those appointments, or their patients' calendars
# would take the next update for an older one and ignore it.
_SECONDS = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM booked_at) AS INTEGER)",
    "sqlite": "CAST(strftime('%s', booked_at) AS INTEGER)",
}


def upgrade() -> None:
    op.create_table(
        "sms_first_texts",
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_sms_first_texts_notification_id"),
        ),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_sms_first_texts")),
    )
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("calendar_sequence", sa.Integer(), server_default="0", nullable=False)
        )
    seconds = _SECONDS.get(op.get_bind().dialect.name)
    if seconds is not None:
        op.execute(f"UPDATE appointments SET calendar_sequence = {seconds}")


def downgrade() -> None:
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_column("calendar_sequence")
    op.drop_table("sms_first_texts")
