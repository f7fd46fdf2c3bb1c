"""SQL for rooms and their members."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.schema import messages, room_members, rooms, users


class RoomRecord(msgspec.Struct, frozen=True):
    id: int
    kind: str
    name: str | None
    name_key: str | None
    topic: str
    dm_key: str | None
    created_by: int | None
    created_at: int
    archived_at: int | None
    last_seq: int
    last_change: int


class MemberRecord(msgspec.Struct, frozen=True):
    room_id: int
    user_id: int
    role: str
    joined_at: int
    last_read_seq: int
    notify: str


class MemberInfo(msgspec.Struct, frozen=True):
    user_id: int
    username: str
    display_name: str
    role: str
    joined_at: int


def _room(row: sa.Row[Any]) -> RoomRecord:
    return RoomRecord(**row._mapping)


def _member(row: sa.Row[Any]) -> MemberRecord:
    return MemberRecord(**row._mapping)


async def insert(
    conn: AsyncConnection,
    *,
    kind: str,
    name: str | None,
    topic: str,
    dm_key: str | None,
    created_by: int,
    now: int,
) -> RoomRecord:
    """Raises IntegrityError when the channel name or the DM's member set exists."""
    result = await conn.execute(
        rooms.insert()
        .values(
            kind=kind,
            name=name,
            # Only public channels need unique names; a private room's name must
            # not be discoverable by trying to create a channel with it.
            name_key=name.lower() if name and kind == "channel" else None,
            topic=topic,
            dm_key=dm_key,
            created_by=created_by,
            created_at=now,
        )
        .returning(*rooms.c)
    )
    return _room(result.one())


async def by_id(conn: AsyncConnection, room_id: int) -> RoomRecord | None:
    row = (await conn.execute(rooms.select().where(rooms.c.id == room_id))).first()
    return _room(row) if row else None


async def by_dm_key(conn: AsyncConnection, dm_key: str) -> RoomRecord | None:
    row = (await conn.execute(rooms.select().where(rooms.c.dm_key == dm_key))).first()
    return _room(row) if row else None


async def update(conn: AsyncConnection, room_id: int, **fields: Any) -> RoomRecord:
    if "name" in fields:
        room = await by_id(conn, room_id)
        is_channel = room is not None and room.kind == "channel"
        fields["name_key"] = fields["name"].lower() if fields["name"] and is_channel else None
    result = await conn.execute(
        rooms.update().where(rooms.c.id == room_id).values(**fields).returning(*rooms.c)
    )
    return _room(result.one())


# The statements of every chat send are built once, with bound parameters: SQLAlchemy
# then computes each one's cache key once, not on every message (building a select
# and its cache key cost more CPU than asyncpg running it).
_NEXT_SEQ = (
    rooms.update()
    .where(rooms.c.id == sa.bindparam("b_room"))
    .values(last_seq=rooms.c.last_seq + 1)
    .returning(rooms.c.last_seq)
)


async def next_seq(conn: AsyncConnection, room_id: int) -> int:
    """Take the room's next sequence number inside the caller's transaction.

    The row lock (PostgreSQL) or the write lock (SQLite) makes concurrent
    senders take turns, and a rollback gives the number back: no gaps.
    """
    result = await conn.execute(_NEXT_SEQ, {"b_room": room_id})
    return int(result.scalar_one())


async def next_change(conn: AsyncConnection, room_id: int) -> int:
    result = await conn.execute(
        rooms.update()
        .where(rooms.c.id == room_id)
        .values(last_change=rooms.c.last_change + 1)
        .returning(rooms.c.last_change)
    )
    return int(result.scalar_one())


async def add_member(
    conn: AsyncConnection, room_id: int, user_id: int, *, role: str, now: int, last_read_seq: int
) -> bool:
    """Add a member; False if they already were one."""
    exists = await member(conn, room_id, user_id)
    if exists is not None:
        return False
    await conn.execute(
        room_members.insert().values(
            room_id=room_id,
            user_id=user_id,
            role=role,
            joined_at=now,
            last_read_seq=last_read_seq,
        )
    )
    return True


async def remove_member(conn: AsyncConnection, room_id: int, user_id: int) -> bool:
    query = room_members.delete().where(
        room_members.c.room_id == room_id, room_members.c.user_id == user_id
    )
    return (await conn.execute(query)).rowcount == 1


async def member(conn: AsyncConnection, room_id: int, user_id: int) -> MemberRecord | None:
    query = room_members.select().where(
        room_members.c.room_id == room_id, room_members.c.user_id == user_id
    )
    row = (await conn.execute(query)).first()
    return _member(row) if row else None


async def member_ids(conn: AsyncConnection, room_id: int) -> list[int]:
    query = sa.select(room_members.c.user_id).where(room_members.c.room_id == room_id)
    return [int(v) for v in (await conn.execute(query)).scalars()]


async def members(conn: AsyncConnection, room_id: int) -> list[MemberInfo]:
    query = (
        sa.select(
            room_members.c.user_id,
            users.c.username,
            users.c.display_name,
            room_members.c.role,
            room_members.c.joined_at,
        )
        .join(users, users.c.id == room_members.c.user_id)
        .where(room_members.c.room_id == room_id)
        .order_by(users.c.username)
    )
    return [MemberInfo(**row._mapping) for row in (await conn.execute(query)).all()]


async def member_count(conn: AsyncConnection, room_id: int) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(room_members)
        .where(room_members.c.room_id == room_id)
    )
    return int((await conn.execute(query)).scalar_one())


async def rooms_of(conn: AsyncConnection, user_id: int) -> list[tuple[RoomRecord, MemberRecord]]:
    query = (
        sa.select(rooms, *[c.label(f"m_{c.name}") for c in room_members.c])
        .join(room_members, room_members.c.room_id == rooms.c.id)
        .where(room_members.c.user_id == user_id)
        .order_by(rooms.c.id)
    )
    result = []
    for row in (await conn.execute(query)).all():
        data = row._mapping
        room = RoomRecord(**{c.name: data[c.name] for c in rooms.c})
        mine = MemberRecord(**{c.name: data[f"m_{c.name}"] for c in room_members.c})
        result.append((room, mine))
    return result


async def room_ids_of(conn: AsyncConnection, user_id: int) -> list[int]:
    query = sa.select(room_members.c.room_id).where(room_members.c.user_id == user_id)
    return [int(v) for v in (await conn.execute(query)).scalars()]


async def unread_counts(conn: AsyncConnection, user_id: int) -> dict[int, int]:
    """Messages from others after the user's read marker, per room."""
    query = (
        sa.select(messages.c.room_id, sa.func.count())
        .join(
            room_members,
            sa.and_(
                room_members.c.room_id == messages.c.room_id,
                room_members.c.user_id == user_id,
            ),
        )
        .where(
            messages.c.seq > room_members.c.last_read_seq,
            messages.c.kind != "system",
            messages.c.deleted_at.is_(None),
            sa.or_(messages.c.sender_id.is_(None), messages.c.sender_id != user_id),
        )
        .group_by(messages.c.room_id)
    )
    return {int(r): int(n) for r, n in (await conn.execute(query)).all()}


async def set_read(conn: AsyncConnection, room_id: int, user_id: int, seq: int) -> int:
    """Move the read marker forward (never back); returns where it is now."""
    await conn.execute(
        room_members.update()
        .where(
            room_members.c.room_id == room_id,
            room_members.c.user_id == user_id,
            room_members.c.last_read_seq < seq,
        )
        .values(last_read_seq=seq)
    )
    mine = await member(conn, room_id, user_id)
    return mine.last_read_seq if mine else 0


async def public_channels(
    conn: AsyncConnection, *, search: str | None, limit: int
) -> list[tuple[RoomRecord, int]]:
    """Channels anyone in the organisation may find, with their member counts."""
    count = (
        sa.select(sa.func.count())
        .select_from(room_members)
        .where(room_members.c.room_id == rooms.c.id)
        .scalar_subquery()
    )
    query = (
        sa.select(rooms, count.label("member_count"))
        .where(rooms.c.kind == "channel", rooms.c.archived_at.is_(None))
        .order_by(rooms.c.name_key)
        .limit(limit)
    )
    if search:
        pattern = (
            "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        query = query.where(rooms.c.name_key.like(pattern, escape="\\"))
    result = []
    for row in (await conn.execute(query)).all():
        data = dict(row._mapping)
        member_total = int(data.pop("member_count"))
        result.append((RoomRecord(**data), member_total))
    return result


async def notify_levels(
    conn: AsyncConnection, room_id: int, *, only: str | None = None
) -> dict[int, str]:
    """Each member's notification level for the room: default, all, mentions or mute.
    With ``only``, just the members at that level (usually a handful, not the room)."""
    if only is None:
        result = await conn.execute(_NOTIFY_LEVELS, {"b_room": room_id})
    else:
        result = await conn.execute(_NOTIFY_LEVELS_AT, {"b_room": room_id, "b_level": only})
    return {int(u): str(level) for u, level in result.all()}


_NOTIFY_LEVELS = sa.select(room_members.c.user_id, room_members.c.notify).where(
    room_members.c.room_id == sa.bindparam("b_room")
)
_NOTIFY_LEVELS_AT = _NOTIFY_LEVELS.where(room_members.c.notify == sa.bindparam("b_level"))


async def set_notify(conn: AsyncConnection, room_id: int, user_id: int, level: str) -> None:
    await conn.execute(
        room_members.update()
        .where(room_members.c.room_id == room_id, room_members.c.user_id == user_id)
        .values(notify=level)
    )


_WITH_MEMBER = (
    sa.select(rooms, *[c.label(f"m_{c.name}") for c in room_members.c])
    .select_from(
        rooms.outerjoin(
            room_members,
            sa.and_(
                room_members.c.room_id == rooms.c.id,
                room_members.c.user_id == sa.bindparam("b_user"),
            ),
        )
    )
    .where(rooms.c.id == sa.bindparam("b_room"))
)


async def with_member(
    conn: AsyncConnection, room_id: int, user_id: int
) -> tuple[RoomRecord | None, MemberRecord | None]:
    """A room and the user's membership of it, in one query (the hot path of every send)."""
    row = (await conn.execute(_WITH_MEMBER, {"b_room": room_id, "b_user": user_id})).first()
    if row is None:
        return None, None
    data = row._mapping
    room = RoomRecord(**{c.name: data[c.name] for c in rooms.c})
    if data["m_user_id"] is None:
        return room, None
    return room, MemberRecord(**{c.name: data[f"m_{c.name}"] for c in room_members.c})
