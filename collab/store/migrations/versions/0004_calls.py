"""Calls: the call log (one ongoing call per room) and who took part when.

Revision ID: 0004_calls
Revises: 0003_presence
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_calls"
down_revision = "0003_presence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("room_id", sa.Integer(), nullable=False),
        sa.Column("started_by", sa.Integer(), nullable=True),
        sa.Column("video", sa.Boolean(), nullable=False),
        sa.Column("node", sa.String(200), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("answered_at", sa.BigInteger(), nullable=True),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('completed', 'missed', 'declined', 'cancelled')",
            name=op.f("ck_calls_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_calls_room_id_rooms"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["started_by"],
            ["users.id"],
            name=op.f("fk_calls_started_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
    )
    op.create_index(
        "uq_calls_room_ongoing",
        "calls",
        ["room_id"],
        unique=True,
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.create_index("ix_calls_room_started", "calls", ["room_id", "started_at"])
    op.create_table(
        "call_participants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("joined_at", sa.BigInteger(), nullable=False),
        sa.Column("left_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_call_participants_call_id_calls"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_call_participants_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_participants")),
    )
    op.create_index("ix_call_participants_call_id", "call_participants", ["call_id"])


def downgrade() -> None:
    op.drop_index("ix_call_participants_call_id", "call_participants")
    op.drop_table("call_participants")
    op.drop_index("ix_calls_room_started", "calls")
    op.drop_index("uq_calls_room_ongoing", "calls")
    op.drop_table("calls")
