"""SQL for sign-in sessions. Only the SHA-256 of a session token is stored."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.schema import sessions


class SessionRecord(msgspec.Struct, frozen=True):
    id: int
    token_hash: str
    user_id: int
    csrf_token: str
    created_at: int
    last_used_at: int
    expires_at: int
    user_agent: str
    address: str


def _record(row: sa.Row[Any]) -> SessionRecord:
    return SessionRecord(**row._mapping)


async def insert(
    conn: AsyncConnection,
    *,
    token_hash: str,
    user_id: int,
    csrf_token: str,
    now: int,
    expires_at: int,
    user_agent: str,
    address: str,
) -> SessionRecord:
    result = await conn.execute(
        sessions.insert()
        .values(
            token_hash=token_hash,
            user_id=user_id,
            csrf_token=csrf_token,
            created_at=now,
            last_used_at=now,
            expires_at=expires_at,
            user_agent=user_agent[:256],
            address=address[:64],
        )
        .returning(*sessions.c)
    )
    return _record(result.one())


async def by_token_hash(conn: AsyncConnection, token_hash: str) -> SessionRecord | None:
    query = sessions.select().where(sessions.c.token_hash == token_hash)
    row = (await conn.execute(query)).first()
    return _record(row) if row else None


async def touch(conn: AsyncConnection, session_id: int, *, now: int, expires_at: int) -> None:
    await conn.execute(
        sessions.update()
        .where(sessions.c.id == session_id)
        .values(last_used_at=now, expires_at=expires_at)
    )


async def renew(conn: AsyncConnection, session_id: int, *, now: int, expires_at: int) -> bool:
    """Move a session's expiry to ``expires_at`` if it is not over yet; False if it is
    over or gone."""
    query = (
        sessions.update()
        .where(sessions.c.id == session_id, sessions.c.expires_at > now)
        .values(last_used_at=now, expires_at=expires_at)
    )
    return (await conn.execute(query)).rowcount == 1


async def list_for_user(conn: AsyncConnection, user_id: int) -> list[SessionRecord]:
    query = sessions.select().where(sessions.c.user_id == user_id).order_by(sessions.c.created_at)
    return [_record(row) for row in (await conn.execute(query)).all()]


async def delete(conn: AsyncConnection, session_id: int) -> None:
    await conn.execute(sessions.delete().where(sessions.c.id == session_id))


async def delete_for_user(
    conn: AsyncConnection, user_id: int, *, except_id: int | None = None
) -> int:
    query = sessions.delete().where(sessions.c.user_id == user_id)
    if except_id is not None:
        query = query.where(sessions.c.id != except_id)
    return (await conn.execute(query)).rowcount


async def delete_expired(conn: AsyncConnection, *, now: int) -> int:
    return (await conn.execute(sessions.delete().where(sessions.c.expires_at <= now))).rowcount
