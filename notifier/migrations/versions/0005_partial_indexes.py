"""partial indexes for leases, provider ids and sent messages by patient

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

IN_FLIGHT = "status IN ('queued', 'sending', 'unknown')"


def upgrade() -> None:
    # Only in-flight rows have a lease worth finding, and only sent rows a provider id (a
    # patient's notifications are looked up only among those): the claim of due rows then adds
    # entries to none of these indexes.
    op.drop_index("ix_notifications_status_lease", table_name="notifications")
    op.drop_index("ix_notifications_provider_id", table_name="notifications")
    op.drop_index("ix_notifications_patient_id", table_name="notifications")
    op.create_index(
        "ix_notifications_status_lease",
        "notifications",
        ["status", "lease_until"],
        postgresql_where=sa.text(IN_FLIGHT),
        sqlite_where=sa.text(IN_FLIGHT),
    )
    op.create_index(
        "ix_notifications_provider_id",
        "notifications",
        ["provider_id"],
        postgresql_where=sa.text("provider_id IS NOT NULL"),
        sqlite_where=sa.text("provider_id IS NOT NULL"),
    )
    op.create_index(
        "ix_notifications_patient_id",
        "notifications",
        ["patient_id"],
        postgresql_where=sa.text("provider_id IS NOT NULL"),
        sqlite_where=sa.text("provider_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_patient_id", table_name="notifications")
    op.create_index("ix_notifications_patient_id", "notifications", ["patient_id"])
    op.drop_index("ix_notifications_provider_id", table_name="notifications")
    op.drop_index("ix_notifications_status_lease", table_name="notifications")
    op.create_index("ix_notifications_provider_id", "notifications", ["provider_id"])
    op.create_index("ix_notifications_status_lease", "notifications", ["status", "lease_until"])
