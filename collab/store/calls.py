"""SQL for calls: the call log, and who took part from when to when."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.schema import call_participants, calls, room_members


class CallRecord(msgspec.Struct, frozen=True):
    id: int
    room_id: int
    started_by: int | None
    video: bool
    node: str
    started_at: int
    answered_at: int | None
    ended_at: int | None
    outcome: str | None


class StintRecord(msgspec.Struct, frozen=True):
    """One stretch of one person in a call: a rejoin after leaving is a new stint."""

    id: int
    call_id: int
    user_id: int
    joined_at: int
    left_at: int | None


def _call(row: sa.Row[Any]) -> CallRecord:
    return CallRecord(**row._mapping)


def _stint(row: sa.Row[Any]) -> StintRecord:
    return StintRecord(**row._mapping)


async def insert(
    conn: AsyncConnection, *, room_id: int, started_by: int, video: bool, node: str, now: int
) -> CallRecord:
    """A new ongoing call; raises IntegrityError if the room has one already."""
    result = await conn.execute(
        calls.insert()
        .values(room_id=room_id, started_by=started_by, video=video, node=node, started_at=now)
        .returning(*calls.c)
    )
    return _call(result.one())


async def by_id(conn: AsyncConnection, call_id: int) -> CallRecord | None:
    row = (await conn.execute(calls.select().where(calls.c.id == call_id))).first()
    return _call(row) if row else None


async def ongoing_in_room(conn: AsyncConnection, room_id: int) -> CallRecord | None:
    query = calls.select().where(calls.c.room_id == room_id, calls.c.ended_at.is_(None))
    row = (await conn.execute(query)).first()
    return _call(row) if row else None


async def ongoing_for_user(conn: AsyncConnection, user_id: int) -> list[CallRecord]:
    """Ongoing calls in the rooms the user is a member of."""
    query = (
        calls.select()
        .join(room_members, room_members.c.room_id == calls.c.room_id)
        .where(room_members.c.user_id == user_id, calls.c.ended_at.is_(None))
        .order_by(calls.c.id)
    )
    return [_call(row) for row in (await conn.execute(query)).all()]


async def ongoing_on_node(conn: AsyncConnection, node: str) -> list[CallRecord]:
    query = calls.select().where(calls.c.node == node, calls.c.ended_at.is_(None))
    return [_call(row) for row in (await conn.execute(query)).all()]


async def ongoing_elsewhere(conn: AsyncConnection, node: str) -> list[CallRecord]:
    """Ongoing calls held by other nodes (the failover watch checks their leases)."""
    query = calls.select().where(calls.c.node != node, calls.c.ended_at.is_(None))
    return [_call(row) for row in (await conn.execute(query)).all()]


async def move(conn: AsyncConnection, call_id: int, *, from_node: str, to_node: str) -> bool:
    """Give an ongoing call to another media node; False if it moved or ended already."""
    result = await conn.execute(
        calls.update()
        .where(calls.c.id == call_id, calls.c.node == from_node, calls.c.ended_at.is_(None))
        .values(node=to_node)
    )
    return result.rowcount > 0


async def mark_answered(conn: AsyncConnection, call_id: int, now: int) -> None:
    await conn.execute(
        calls.update()
        .where(calls.c.id == call_id, calls.c.answered_at.is_(None))
        .values(answered_at=now)
    )


async def end(conn: AsyncConnection, call_id: int, *, now: int, outcome: str) -> bool:
    """End the call if it is still going; False if it had ended already (by someone else)."""
    result = await conn.execute(
        calls.update()
        .where(calls.c.id == call_id, calls.c.ended_at.is_(None))
        .values(ended_at=now, outcome=outcome)
    )
    await conn.execute(
        call_participants.update()
        .where(call_participants.c.call_id == call_id, call_participants.c.left_at.is_(None))
        .values(left_at=now)
    )
    return result.rowcount > 0


async def join(conn: AsyncConnection, call_id: int, user_id: int, now: int) -> None:
    """Start a stint for the user, unless one is open (a reconnect is not a new stint)."""
    open_stint = await conn.execute(
        sa.select(call_participants.c.id).where(
            call_participants.c.call_id == call_id,
            call_participants.c.user_id == user_id,
            call_participants.c.left_at.is_(None),
        )
    )
    if open_stint.first() is None:
        await conn.execute(
            call_participants.insert().values(call_id=call_id, user_id=user_id, joined_at=now)
        )


async def leave(conn: AsyncConnection, call_id: int, user_id: int, now: int) -> None:
    await conn.execute(
        call_participants.update()
        .where(
            call_participants.c.call_id == call_id,
            call_participants.c.user_id == user_id,
            call_participants.c.left_at.is_(None),
        )
        .values(left_at=now)
    )


async def stints(conn: AsyncConnection, call_ids: Iterable[int]) -> dict[int, list[StintRecord]]:
    wanted = sorted(set(call_ids))
    if not wanted:
        return {}
    query = (
        call_participants.select()
        .where(call_participants.c.call_id.in_(wanted))
        .order_by(call_participants.c.id)
    )
    found: dict[int, list[StintRecord]] = {cid: [] for cid in wanted}
    for row in (await conn.execute(query)).all():
        found[row.call_id].append(_stint(row))
    return found


async def page(
    conn: AsyncConnection, room_id: int, *, before: int | None, limit: int
) -> list[CallRecord]:
    """The room's calls, newest first; ``before`` is a call id to page back from."""
    query = calls.select().where(calls.c.room_id == room_id)
    if before is not None:
        query = query.where(calls.c.id < before)
    query = query.order_by(calls.c.id.desc()).limit(limit)
    return [_call(row) for row in (await conn.execute(query)).all()]
