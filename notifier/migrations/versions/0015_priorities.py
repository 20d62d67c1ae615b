"""notifications carry a priority, and the claim's index reads due rows one priority at a time

Revision ID: 0015
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from notifier import priority

revision = "0015"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "notifications",
        sa.Column(
            "priority",
            sa.SmallInteger(),
            nullable=False,
            server_default=sa.text(str(priority.STANDARD)),
        ),
    )
    # Rows already planned take the priority their kind has now; finished rows too, so that
    # the history reads the same whatever its age.
    notifications = sa.table(
        "notifications",
        sa.column("kind", sa.String),
        sa.column("slot", sa.String),
        sa.column("priority", sa.SmallInteger),
    )
    pairs = op.get_bind().execute(sa.select(notifications.c.kind, notifications.c.slot).distinct())
    for kind, slot in list(pairs):
        level = priority.of(kind, slot or "")
        if level != priority.STANDARD:
            op.execute(
                notifications.update()
                .where(notifications.c.kind == kind, notifications.c.slot == slot)
                .values(priority=level)
            )
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.create_index(
        "ix_notifications_due",
        "notifications",
        ["priority", "due_at"],
        postgresql_where=sa.text("status = 'scheduled'"),
        sqlite_where=sa.text("status = 'scheduled'"),
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.create_index(
        "ix_notifications_due",
        "notifications",
        ["due_at"],
        postgresql_where=sa.text("status = 'scheduled'"),
        sqlite_where=sa.text("status = 'scheduled'"),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("priority")
