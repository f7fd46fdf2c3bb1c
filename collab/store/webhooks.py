"""SQL for incoming webhooks. Only the SHA-256 of a webhook's secret is stored."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.schema import webhooks


class WebhookRecord(msgspec.Struct, frozen=True):
    id: int
    room_id: int
    secret_hash: str
    bot_name: str
    created_by: int | None
    created_at: int


def _record(row: sa.Row[Any]) -> WebhookRecord:
    return WebhookRecord(**row._mapping)


async def insert(
    conn: AsyncConnection,
    *,
    room_id: int,
    secret_hash: str,
    bot_name: str,
    created_by: int,
    now: int,
) -> WebhookRecord:
    result = await conn.execute(
        webhooks.insert()
        .values(
            room_id=room_id,
            secret_hash=secret_hash,
            bot_name=bot_name,
            created_by=created_by,
            created_at=now,
        )
        .returning(*webhooks.c)
    )
    return _record(result.one())


async def by_id(conn: AsyncConnection, webhook_id: int) -> WebhookRecord | None:
    row = (await conn.execute(webhooks.select().where(webhooks.c.id == webhook_id))).first()
    return _record(row) if row else None


async def by_secret_hash(conn: AsyncConnection, secret_hash: str) -> WebhookRecord | None:
    query = webhooks.select().where(webhooks.c.secret_hash == secret_hash)
    row = (await conn.execute(query)).first()
    return _record(row) if row else None


async def of_room(conn: AsyncConnection, room_id: int) -> list[WebhookRecord]:
    query = webhooks.select().where(webhooks.c.room_id == room_id).order_by(webhooks.c.id)
    return [_record(row) for row in (await conn.execute(query)).all()]


async def count_of_room(conn: AsyncConnection, room_id: int) -> int:
    query = sa.select(sa.func.count()).select_from(webhooks).where(webhooks.c.room_id == room_id)
    return int((await conn.execute(query)).scalar_one())


async def delete(conn: AsyncConnection, webhook_id: int) -> bool:
    result = await conn.execute(webhooks.delete().where(webhooks.c.id == webhook_id))
    return result.rowcount == 1
