"""SQL for messages, mentions and reactions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.schema import mentions, messages, reactions, room_members, rooms


class MessageRecord(msgspec.Struct, frozen=True):
    id: int
    room_id: int
    seq: int
    sender_id: int | None
    kind: str
    body: str
    client_msg_id: str | None
    reply_to_id: int | None
    bot_name: str | None
    meta: dict[str, Any] | None
    created_at: int
    edited_at: int | None
    deleted_at: int | None
    change_seq: int


class ReactionRecord(msgspec.Struct, frozen=True):
    message_id: int
    user_id: int
    emoji: str
    created_at: int


def _record(row: sa.Row[Any]) -> MessageRecord:
    return MessageRecord(**row._mapping)


async def insert(
    conn: AsyncConnection,
    *,
    room_id: int,
    seq: int,
    sender_id: int | None,
    kind: str,
    body: str,
    client_msg_id: str | None,
    reply_to_id: int | None,
    bot_name: str | None,
    meta: dict[str, Any] | None,
    now: int,
) -> MessageRecord:
    result = await conn.execute(
        messages.insert()
        .values(
            room_id=room_id,
            seq=seq,
            sender_id=sender_id,
            kind=kind,
            body=body,
            client_msg_id=client_msg_id,
            reply_to_id=reply_to_id,
            bot_name=bot_name,
            meta=meta,
            created_at=now,
        )
        .returning(*messages.c)
    )
    return _record(result.one())


async def add_mentions(
    conn: AsyncConnection, message: MessageRecord, user_ids: Iterable[int | None]
) -> None:
    rows = [
        {"message_id": message.id, "room_id": message.room_id, "seq": message.seq, "user_id": uid}
        for uid in user_ids
    ]
    if rows:
        await conn.execute(mentions.insert(), rows)


async def by_id(conn: AsyncConnection, message_id: int) -> MessageRecord | None:
    row = (await conn.execute(messages.select().where(messages.c.id == message_id))).first()
    return _record(row) if row else None


async def by_ids(conn: AsyncConnection, ids: Iterable[int]) -> dict[int, MessageRecord]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = messages.select().where(messages.c.id.in_(wanted))
    return {row.id: _record(row) for row in (await conn.execute(query)).all()}


async def by_client_msg_id(
    conn: AsyncConnection, sender_id: int, client_msg_id: str
) -> MessageRecord | None:
    query = messages.select().where(
        messages.c.sender_id == sender_id, messages.c.client_msg_id == client_msg_id
    )
    row = (await conn.execute(query)).first()
    return _record(row) if row else None


async def page(
    conn: AsyncConnection,
    room_id: int,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int,
) -> list[MessageRecord]:
    """Up to ``limit`` messages in seq order: the newest before ``before``, or the
    oldest after ``after`` (the latest ones when neither is given)."""
    query = messages.select().where(messages.c.room_id == room_id)
    if after is not None:
        query = query.where(messages.c.seq > after).order_by(messages.c.seq).limit(limit)
        if before is not None:
            query = query.where(messages.c.seq < before)
        return [_record(row) for row in (await conn.execute(query)).all()]
    if before is not None:
        query = query.where(messages.c.seq < before)
    query = query.order_by(messages.c.seq.desc()).limit(limit)
    return [_record(row) for row in reversed((await conn.execute(query)).all())]


async def changed_since(
    conn: AsyncConnection, room_id: int, *, up_to_seq: int, after_change: int, limit: int
) -> list[MessageRecord]:
    """Messages a client already has (seq <= up_to_seq) that changed after ``after_change``."""
    query = (
        messages.select()
        .where(
            messages.c.room_id == room_id,
            messages.c.seq <= up_to_seq,
            messages.c.change_seq > after_change,
        )
        .order_by(messages.c.change_seq)
        .limit(limit)
    )
    return [_record(row) for row in (await conn.execute(query)).all()]


async def update(conn: AsyncConnection, message_id: int, **fields: Any) -> MessageRecord:
    result = await conn.execute(
        messages.update().where(messages.c.id == message_id).values(**fields).returning(*messages.c)
    )
    return _record(result.one())


async def replace_mentions(
    conn: AsyncConnection, message: MessageRecord, user_ids: Iterable[int | None]
) -> None:
    await conn.execute(mentions.delete().where(mentions.c.message_id == message.id))
    await add_mentions(conn, message, user_ids)


async def mention_counts(conn: AsyncConnection, user_id: int) -> dict[int, int]:
    """Unread mentions of the user (by name or @room) per room."""
    query = (
        sa.select(mentions.c.room_id, sa.func.count(sa.distinct(mentions.c.message_id)))
        .join(
            room_members,
            sa.and_(
                room_members.c.room_id == mentions.c.room_id,
                room_members.c.user_id == user_id,
            ),
        )
        .join(messages, messages.c.id == mentions.c.message_id)
        .where(
            mentions.c.seq > room_members.c.last_read_seq,
            sa.or_(mentions.c.user_id == user_id, mentions.c.user_id.is_(None)),
            messages.c.deleted_at.is_(None),
            sa.or_(messages.c.sender_id.is_(None), messages.c.sender_id != user_id),
        )
        .group_by(mentions.c.room_id)
    )
    return {int(r): int(n) for r, n in (await conn.execute(query)).all()}


async def mentioned_user_ids(
    conn: AsyncConnection, message_ids: Iterable[int]
) -> dict[int, list[int | None]]:
    wanted = sorted(set(message_ids))
    if not wanted:
        return {}
    query = sa.select(mentions.c.message_id, mentions.c.user_id).where(
        mentions.c.message_id.in_(wanted)
    )
    found: dict[int, list[int | None]] = {}
    for message_id, user_id in (await conn.execute(query)).all():
        found.setdefault(int(message_id), []).append(user_id)
    return found


async def last_messages(conn: AsyncConnection, room_ids: Iterable[int]) -> dict[int, MessageRecord]:
    """The newest message of each room."""
    wanted = sorted(set(room_ids))
    if not wanted:
        return {}
    query = (
        messages.select()
        .join(rooms, sa.and_(rooms.c.id == messages.c.room_id, rooms.c.last_seq == messages.c.seq))
        .where(rooms.c.id.in_(wanted))
    )
    return {row.room_id: _record(row) for row in (await conn.execute(query)).all()}


async def add_reaction(
    conn: AsyncConnection, message_id: int, user_id: int, emoji: str, now: int
) -> bool:
    exists = await conn.execute(
        sa.select(reactions.c.message_id).where(
            reactions.c.message_id == message_id,
            reactions.c.user_id == user_id,
            reactions.c.emoji == emoji,
        )
    )
    if exists.first() is not None:
        return False
    await conn.execute(
        reactions.insert().values(
            message_id=message_id, user_id=user_id, emoji=emoji, created_at=now
        )
    )
    return True


async def remove_reaction(conn: AsyncConnection, message_id: int, user_id: int, emoji: str) -> bool:
    query = reactions.delete().where(
        reactions.c.message_id == message_id,
        reactions.c.user_id == user_id,
        reactions.c.emoji == emoji,
    )
    return (await conn.execute(query)).rowcount == 1


async def reactions_of(
    conn: AsyncConnection, message_ids: Iterable[int]
) -> dict[int, list[ReactionRecord]]:
    wanted = sorted(set(message_ids))
    if not wanted:
        return {}
    query = (
        reactions.select()
        .where(reactions.c.message_id.in_(wanted))
        .order_by(reactions.c.created_at, reactions.c.user_id)
    )
    found: dict[int, list[ReactionRecord]] = {}
    for row in (await conn.execute(query)).all():
        found.setdefault(row.message_id, []).append(ReactionRecord(**row._mapping))
    return found


async def distinct_reaction_count(conn: AsyncConnection, message_id: int) -> int:
    query = sa.select(sa.func.count(sa.distinct(reactions.c.emoji))).where(
        reactions.c.message_id == message_id
    )
    return int((await conn.execute(query)).scalar_one())


async def reply_ids(conn: AsyncConnection, message_id: int) -> list[int]:
    query = (
        sa.select(messages.c.id).where(messages.c.reply_to_id == message_id).order_by(messages.c.id)
    )
    return [int(v) for v in (await conn.execute(query)).scalars()]
