"""SQL for presence: each user's own settings, and who may see whom."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.engine import upsert_insert
from collab.store.schema import presence_settings, room_members

ps = presence_settings


class PresenceSettings(msgspec.Struct, frozen=True):
    user_id: int
    choice: str
    choice_until: int | None
    text: str
    emoji: str
    text_until: int | None
    time_zone: str
    silence_when_busy: bool
    quiet_start: int | None
    quiet_end: int | None
    calendar_kind: str | None
    calendar_url: str | None
    calendar_busy: list[dict[str, Any]] | None
    calendar_error: str | None
    calendar_checked_at: int | None
    calendar_next_poll: int | None
    calendar_etag: str | None
    calendar_last_modified: str | None
    updated_at: int


def defaults(user_id: int) -> PresenceSettings:
    return PresenceSettings(
        user_id=user_id,
        choice="auto",
        choice_until=None,
        text="",
        emoji="",
        text_until=None,
        time_zone="UTC",
        silence_when_busy=False,
        quiet_start=None,
        quiet_end=None,
        calendar_kind=None,
        calendar_url=None,
        calendar_busy=None,
        calendar_error=None,
        calendar_checked_at=None,
        calendar_next_poll=None,
        calendar_etag=None,
        calendar_last_modified=None,
        updated_at=0,
    )


def _record(row: sa.Row[Any]) -> PresenceSettings:
    return PresenceSettings(**row._mapping)


async def upsert(conn: AsyncConnection, user_id: int, *, now: int, **fields: Any) -> None:
    insert = upsert_insert(conn)
    statement = insert(ps).values(user_id=user_id, updated_at=now, **fields)
    statement = statement.on_conflict_do_update(
        index_elements=[ps.c.user_id], set_={"updated_at": now, **fields}
    )
    await conn.execute(statement)


async def get(conn: AsyncConnection, user_id: int) -> PresenceSettings:
    row = (await conn.execute(ps.select().where(ps.c.user_id == user_id))).first()
    return _record(row) if row else defaults(user_id)


async def for_users(conn: AsyncConnection, user_ids: Iterable[int]) -> dict[int, PresenceSettings]:
    wanted = sorted(set(user_ids))
    if not wanted:
        return {}
    query = ps.select().where(ps.c.user_id.in_(wanted))
    return {row.user_id: _record(row) for row in (await conn.execute(query)).all()}


async def peers(conn: AsyncConnection, user_id: int) -> set[int]:
    """Everyone who shares at least one room with the user (the user included)."""
    mine = room_members.alias("mine")
    theirs = room_members.alias("theirs")
    query = (
        sa.select(theirs.c.user_id)
        .distinct()
        .join(mine, mine.c.room_id == theirs.c.room_id)
        .where(mine.c.user_id == user_id)
    )
    found = {int(v) for v in (await conn.execute(query)).scalars()}
    found.add(user_id)
    return found


async def claim_calendars(
    conn: AsyncConnection, *, now: int, next_poll: int, limit: int
) -> list[PresenceSettings]:
    """Take calendars that are due for polling, pushing their next poll forward so
    another node polling at the same moment does not take them too."""
    due = (
        await conn.execute(
            sa.select(ps.c.user_id)
            .where(ps.c.calendar_kind.is_not(None), ps.c.calendar_next_poll <= now)
            .order_by(ps.c.calendar_next_poll)
            .limit(limit)
        )
    ).scalars()
    ids = [int(v) for v in due]
    if not ids:
        return []
    claimed = await conn.execute(
        ps.update()
        .where(ps.c.user_id.in_(ids), ps.c.calendar_next_poll <= now)
        .values(calendar_next_poll=next_poll)
        .returning(*ps.c)
    )
    return [_record(row) for row in claimed.all()]
