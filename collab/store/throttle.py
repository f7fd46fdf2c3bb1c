"""SQL for the sign-in throttle: attempt counts per key (an address or a username).

Kept in the database, not in memory, so every node of a cluster sees the same
counts and a restart does not reset an attacker's back-off. The count goes up
in one atomic upsert so parallel attempts cannot slip past it.
"""

from __future__ import annotations

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.engine import upsert_insert
from collab.store.schema import login_throttle

t = login_throttle


class ThrottleRecord(msgspec.Struct, frozen=True):
    key: str
    failures: int
    last_failure_at: int
    blocked_until: int


async def get_many(conn: AsyncConnection, keys: list[str]) -> list[ThrottleRecord]:
    query = t.select().where(t.c.key.in_(keys))
    return [ThrottleRecord(**row._mapping) for row in (await conn.execute(query)).all()]


async def count_attempt(
    conn: AsyncConnection, key: str, *, now: int, forget_before: int
) -> ThrottleRecord:
    """Add one attempt to ``key``; counts older than ``forget_before`` start again at 1."""
    insert = upsert_insert(conn)
    statement = insert(t).values(key=key, failures=1, last_failure_at=now, blocked_until=0)
    statement = statement.on_conflict_do_update(
        index_elements=[t.c.key],
        set_={
            "failures": sa.case((t.c.last_failure_at < forget_before, 1), else_=t.c.failures + 1),
            "last_failure_at": now,
        },
    ).returning(*t.c)
    row = (await conn.execute(statement)).one()
    return ThrottleRecord(**row._mapping)


async def block(conn: AsyncConnection, key: str, *, until: int) -> None:
    await conn.execute(t.update().where(t.c.key == key).values(blocked_until=until))


async def forgive_one(conn: AsyncConnection, key: str) -> None:
    await conn.execute(
        t.update().where(t.c.key == key, t.c.failures > 0).values(failures=t.c.failures - 1)
    )


async def clear(conn: AsyncConnection, key: str) -> None:
    await conn.execute(t.delete().where(t.c.key == key))


async def delete_stale(conn: AsyncConnection, *, before: int) -> int:
    query = t.delete().where(t.c.last_failure_at < before, t.c.blocked_until < before)
    return (await conn.execute(query)).rowcount
