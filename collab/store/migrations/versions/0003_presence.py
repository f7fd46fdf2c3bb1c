"""Presence: each user's own status choice, custom text, quiet hours and calendar.

Revision ID: 0003_presence
Revises: 0002_chat
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_presence"
down_revision = "0002_chat"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "presence_settings",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("choice", sa.String(16), server_default="auto", nullable=False),
        sa.Column("choice_until", sa.BigInteger(), nullable=True),
        sa.Column("text", sa.String(100), server_default="", nullable=False),
        sa.Column("emoji", sa.String(64), server_default="", nullable=False),
        sa.Column("text_until", sa.BigInteger(), nullable=True),
        sa.Column("time_zone", sa.String(64), server_default="UTC", nullable=False),
        sa.Column("silence_when_busy", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("quiet_start", sa.Integer(), nullable=True),
        sa.Column("quiet_end", sa.Integer(), nullable=True),
        sa.Column("calendar_kind", sa.String(8), nullable=True),
        sa.Column("calendar_url", sa.String(2000), nullable=True),
        sa.Column("calendar_busy", sa.JSON(), nullable=True),
        sa.Column("calendar_error", sa.String(500), nullable=True),
        sa.Column("calendar_checked_at", sa.BigInteger(), nullable=True),
        sa.Column("calendar_next_poll", sa.BigInteger(), nullable=True),
        sa.Column("calendar_etag", sa.String(200), nullable=True),
        sa.Column("calendar_last_modified", sa.String(100), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "choice IN ('auto', 'busy', 'dnd', 'away')", name=op.f("ck_presence_settings_choice")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_presence_settings_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_presence_settings")),
    )
    op.create_index(
        "ix_presence_settings_calendar_next_poll", "presence_settings", ["calendar_next_poll"]
    )


def downgrade() -> None:
    op.drop_index("ix_presence_settings_calendar_next_poll", "presence_settings")
    op.drop_table("presence_settings")
