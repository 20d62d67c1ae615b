"""no-show recovery and the waitlist: when a visit was missed, waitlisted patients, freed
slots and the offers of them

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("no_show_at", sa.DateTime(), nullable=True))
    op.create_table(
        "waitlist_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("patient_id", sa.String(length=128), nullable=False),
        sa.Column("location_id", sa.String(length=64), nullable=False),
        sa.Column("treatment_id", sa.String(length=64), nullable=False),
        sa.Column("days", sa.String(length=32), nullable=False),
        sa.Column("earliest", sa.String(length=5), nullable=False),
        sa.Column("latest", sa.String(length=5), nullable=False),
        sa.Column("source", sa.String(length=240), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_waitlist_entries_patient_id")
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_waitlist_entries_location_id")
        ),
        sa.ForeignKeyConstraint(
            ["treatment_id"], ["treatments.id"], name=op.f("fk_waitlist_entries_treatment_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist_entries")),
        sa.UniqueConstraint("external_id", name=op.f("uq_waitlist_entries_external_id")),
    )
    op.create_index(
        op.f("ix_waitlist_entries_patient_id"), "waitlist_entries", ["patient_id"], unique=False
    )
    op.create_table(
        "waitlist_slots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("appointment_id", sa.String(length=128), nullable=False),
        sa.Column("location_id", sa.String(length=64), nullable=False),
        sa.Column("treatment_id", sa.String(length=64), nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=False),
        sa.Column("end_at", sa.DateTime(), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("offer_until", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("claimed_entry_id", sa.Integer(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("handled_at", sa.DateTime(), nullable=True),
        sa.Column("handled_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["appointment_id"], ["appointments.id"], name=op.f("fk_waitlist_slots_appointment_id")
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_waitlist_slots_location_id")
        ),
        sa.ForeignKeyConstraint(
            ["treatment_id"], ["treatments.id"], name=op.f("fk_waitlist_slots_treatment_id")
        ),
        sa.ForeignKeyConstraint(
            ["claimed_entry_id"],
            ["waitlist_entries.id"],
            name=op.f("fk_waitlist_slots_claimed_entry_id"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist_slots")),
    )
    op.create_index(
        op.f("ix_waitlist_slots_appointment_id"), "waitlist_slots", ["appointment_id"], unique=False
    )
    op.create_index(
        "uq_waitlist_slots_visit", "waitlist_slots", ["appointment_id", "start_at"], unique=True
    )
    op.create_table(
        "waitlist_offers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("slot_id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("answer", sa.String(length=16), nullable=True),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["slot_id"], ["waitlist_slots.id"], name=op.f("fk_waitlist_offers_slot_id")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["waitlist_entries.id"], name=op.f("fk_waitlist_offers_entry_id")
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_waitlist_offers_notification_id"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist_offers")),
    )
    op.create_index(op.f("ix_waitlist_offers_slot_id"), "waitlist_offers", ["slot_id"])
    op.create_index(op.f("ix_waitlist_offers_phone"), "waitlist_offers", ["phone"])
    op.create_index(
        "uq_waitlist_offers_slot_entry", "waitlist_offers", ["slot_id", "entry_id"], unique=True
    )


def downgrade() -> None:
    op.drop_table("waitlist_offers")
    op.drop_table("waitlist_slots")
    op.drop_table("waitlist_entries")
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_column("no_show_at")
