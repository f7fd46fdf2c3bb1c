"""SQL for users."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.schema import users


class UserRecord(msgspec.Struct, frozen=True):
    id: int
    username: str
    display_name: str
    email: str | None
    role: str
    active: bool
    password_hash: str | None
    created_at: int
    updated_at: int


def _record(row: sa.Row[Any]) -> UserRecord:
    return UserRecord(**row._mapping)


async def insert(
    conn: AsyncConnection,
    *,
    username: str,
    display_name: str,
    email: str | None,
    role: str,
    password_hash: str,
    now: int,
) -> UserRecord:
    """Insert a user; raises sqlalchemy IntegrityError when the username is taken."""
    result = await conn.execute(
        users.insert()
        .values(
            username=username,
            display_name=display_name,
            email=email,
            role=role,
            active=True,
            password_hash=password_hash,
            created_at=now,
            updated_at=now,
        )
        .returning(*users.c)
    )
    return _record(result.one())


async def by_id(conn: AsyncConnection, user_id: int) -> UserRecord | None:
    row = (await conn.execute(users.select().where(users.c.id == user_id))).first()
    return _record(row) if row else None


async def by_username(conn: AsyncConnection, username: str) -> UserRecord | None:
    row = (await conn.execute(users.select().where(users.c.username == username))).first()
    return _record(row) if row else None


async def count(conn: AsyncConnection) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(users))).scalar_one())


async def count_active_admins(conn: AsyncConnection) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(users)
        .where(users.c.role == "admin", users.c.active.is_(True))
    )
    return int((await conn.execute(query)).scalar_one())


async def list_page(
    conn: AsyncConnection, *, after: str | None, limit: int, include_inactive: bool
) -> list[UserRecord]:
    """Users ordered by username, keyset-paginated after a username."""
    query = users.select().order_by(users.c.username).limit(limit)
    if after is not None:
        query = query.where(users.c.username > after)
    if not include_inactive:
        query = query.where(users.c.active.is_(True))
    return [_record(row) for row in (await conn.execute(query)).all()]


async def update(conn: AsyncConnection, user_id: int, *, now: int, **fields: Any) -> UserRecord:
    result = await conn.execute(
        users.update()
        .where(users.c.id == user_id)
        .values(updated_at=now, **fields)
        .returning(*users.c)
    )
    return _record(result.one())


async def by_ids(conn: AsyncConnection, ids: list[int] | set[int]) -> dict[int, UserRecord]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = users.select().where(users.c.id.in_(wanted))
    return {row.id: _record(row) for row in (await conn.execute(query)).all()}


async def by_usernames(conn: AsyncConnection, names: list[str] | set[str]) -> dict[str, UserRecord]:
    wanted = sorted(set(names))
    if not wanted:
        return {}
    query = users.select().where(users.c.username.in_(wanted))
    return {row.username: _record(row) for row in (await conn.execute(query)).all()}
