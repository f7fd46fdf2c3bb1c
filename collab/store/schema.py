"""The database schema as SQLAlchemy Core tables.

Alembic migrations are the source of truth for what is in a database; this
module mirrors them so queries are typed and readable. A test compares the
two so they cannot drift apart.

Times are stored as integer milliseconds since the epoch (UTC): the same on
SQLite and PostgreSQL, cheap to compare, and free of time-zone surprises.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(32), nullable=False, unique=True),
    sa.Column("display_name", sa.String(64), nullable=False),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.CheckConstraint("role IN ('admin', 'member', 'guest')", name="role"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("last_used_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("user_agent", sa.String(256), nullable=False, server_default=""),
    sa.Column("address", sa.String(64), nullable=False, server_default=""),
    sa.Index("ix_sessions_user_id", "user_id"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("last_used_at", sa.BigInteger, nullable=True),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Index("ix_api_tokens_user_id", "user_id"),
)

invitations = sa.Table(
    "invitations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column(
        "created_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    ),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("used_at", sa.BigInteger, nullable=True),
    sa.Column("used_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
    sa.CheckConstraint("role IN ('admin', 'member', 'guest')", name="role"),
)

login_throttle = sa.Table(
    "login_throttle",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failure_at", sa.BigInteger, nullable=False),
    sa.Column("blocked_until", sa.BigInteger, nullable=False),
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for big tables.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

rooms = sa.Table(
    "rooms",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(80), nullable=True),
    sa.Column("name_key", sa.String(80), nullable=True, unique=True),
    sa.Column("topic", sa.String(250), nullable=False, server_default=""),
    sa.Column("dm_key", sa.String(200), nullable=True, unique=True),
    sa.Column(
        "created_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    ),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("archived_at", sa.BigInteger, nullable=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_change", sa.BigInteger, nullable=False, server_default="0"),
    sa.CheckConstraint("kind IN ('channel', 'private', 'dm', 'group')", name="kind"),
)

room_members = sa.Table(
    "room_members",
    metadata,
    sa.Column(
        "room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("role", sa.String(16), nullable=False, server_default="member"),
    sa.Column("joined_at", sa.BigInteger, nullable=False),
    sa.Column("last_read_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("notify", sa.String(16), nullable=False, server_default="default"),
    sa.Index("ix_room_members_user_id", "user_id"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column(
        "sender_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    ),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("client_msg_id", sa.String(64), nullable=True),
    sa.Column("reply_to_id", sa.BigInteger, nullable=True),
    sa.Column("bot_name", sa.String(64), nullable=True),
    sa.Column("meta", sa.JSON, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("edited_at", sa.BigInteger, nullable=True),
    sa.Column("deleted_at", sa.BigInteger, nullable=True),
    sa.Column("change_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.UniqueConstraint("room_id", "seq", name="uq_messages_room_id_seq"),
    sa.UniqueConstraint("sender_id", "client_msg_id", name="uq_messages_sender_client_msg_id"),
    sa.Index("ix_messages_room_change", "room_id", "change_seq"),
    sa.CheckConstraint("kind IN ('user', 'system', 'bot')", name="kind"),
)

mentions = sa.Table(
    "mentions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "message_id",
        sa.BigInteger,
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("room_id", sa.Integer, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    # NULL means @room: everyone in the room.
    sa.Column("user_id", sa.Integer, nullable=True),
    sa.Index("ix_mentions_room_user_seq", "room_id", "user_id", "seq"),
    sa.Index("ix_mentions_message_id", "message_id"),
)

reactions = sa.Table(
    "reactions",
    metadata,
    sa.Column(
        "message_id",
        sa.BigInteger,
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("emoji", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

files = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("content_type", sa.String(128), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column(
        "uploader_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    ),
    sa.Column("room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "message_id",
        sa.BigInteger,
        sa.ForeignKey("messages.id", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column("width", sa.Integer, nullable=True),
    sa.Column("height", sa.Integer, nullable=True),
    sa.Column("has_thumbnail", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index("ix_files_uploader_id", "uploader_id"),
    sa.Index("ix_files_message_id", "message_id"),
    sa.Index("ix_files_sha256", "sha256"),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("bot_name", sa.String(64), nullable=False),
    sa.Column(
        "created_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    ),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index("ix_webhooks_room_id", "room_id"),
)

presence_settings = sa.Table(
    "presence_settings",
    metadata,
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    # The user's own choice: auto, busy, dnd or away, until a time or for good.
    sa.Column("choice", sa.String(16), nullable=False, server_default="auto"),
    sa.Column("choice_until", sa.BigInteger, nullable=True),
    sa.Column("text", sa.String(100), nullable=False, server_default=""),
    sa.Column("emoji", sa.String(64), nullable=False, server_default=""),
    sa.Column("text_until", sa.BigInteger, nullable=True),
    sa.Column("time_zone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("silence_when_busy", sa.Boolean, nullable=False, server_default=sa.false()),
    # Quiet hours as minutes after midnight in time_zone; both NULL means none.
    sa.Column("quiet_start", sa.Integer, nullable=True),
    sa.Column("quiet_end", sa.Integer, nullable=True),
    # Where the calendar comes from: "url" (polled) or "file" (uploaded .ics in the data dir).
    sa.Column("calendar_kind", sa.String(8), nullable=True),
    sa.Column("calendar_url", sa.String(2000), nullable=True),
    sa.Column("calendar_busy", sa.JSON, nullable=True),
    sa.Column("calendar_error", sa.String(500), nullable=True),
    sa.Column("calendar_checked_at", sa.BigInteger, nullable=True),
    sa.Column("calendar_next_poll", sa.BigInteger, nullable=True),
    sa.Column("calendar_etag", sa.String(200), nullable=True),
    sa.Column("calendar_last_modified", sa.String(100), nullable=True),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.CheckConstraint("choice IN ('auto', 'busy', 'dnd', 'away')", name="choice"),
    sa.Index("ix_presence_settings_calendar_next_poll", "calendar_next_poll"),
)

calls = sa.Table(
    "calls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "started_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    ),
    sa.Column("video", sa.Boolean, nullable=False),
    # The node that holds the call's live state and media (its node id).
    sa.Column("node", sa.String(200), nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    # When someone besides the caller first joined: null for a call nobody answered.
    sa.Column("answered_at", sa.BigInteger, nullable=True),
    sa.Column("ended_at", sa.BigInteger, nullable=True),
    # Null while the call goes on; then completed, missed, declined or cancelled.
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.CheckConstraint(
        "outcome IN ('completed', 'missed', 'declined', 'cancelled')", name="outcome"
    ),
    # At most one ongoing call per room, whichever node tries to start one.
    sa.Index(
        "uq_calls_room_ongoing",
        "room_id",
        unique=True,
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    ),
    sa.Index("ix_calls_room_started", "room_id", "started_at"),
)

call_participants = sa.Table(
    "call_participants",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.Integer, sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("joined_at", sa.BigInteger, nullable=False),
    sa.Column("left_at", sa.BigInteger, nullable=True),
    sa.Index("ix_call_participants_call_id", "call_id"),
)
