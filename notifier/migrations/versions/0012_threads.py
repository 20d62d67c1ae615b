"""conversations and the worklist: staff messages, read replies, link answers, settled failures

Revision ID: 0012
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0013"
branch_labels = None
depends_on = None

STAFF_MESSAGE = sa.text("kind = 'staff_message'")


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("staff_text", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("quiet_override", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("settled_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("settled_by", sa.String(length=200), nullable=True))
    # One staff message per form: the same form posted twice finds its slot taken.
    op.create_index(
        "uq_notifications_staff_slot",
        "notifications",
        ["slot"],
        unique=True,
        postgresql_where=STAFF_MESSAGE,
        sqlite_where=STAFF_MESSAGE,
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("channel", sa.String(length=8), nullable=False, server_default="sms")
        )
        batch_op.add_column(sa.Column("read_at", sa.DateTime(), nullable=True))
    # Replies staff already handled were read then; the rest count as unread.
    inbound = sa.table(
        "inbound_messages", sa.column("read_at", sa.DateTime), sa.column("handled_at", sa.DateTime)
    )
    op.execute(
        inbound.update()
        .where(inbound.c.handled_at.is_not(None))
        .values(read_at=inbound.c.handled_at)
    )


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_column("read_at")
        batch_op.drop_column("channel")
    op.drop_index("uq_notifications_staff_slot", table_name="notifications")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("settled_by")
        batch_op.drop_column("settled_at")
        batch_op.drop_column("quiet_override")
        batch_op.drop_column("staff_text")
