"""SQL for personal API tokens. Only the SHA-256 of a token is stored."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.schema import api_tokens


class TokenRecord(msgspec.Struct, frozen=True):
    id: int
    token_hash: str
    user_id: int
    name: str
    prefix: str
    created_at: int
    last_used_at: int | None
    expires_at: int | None


def _record(row: sa.Row[Any]) -> TokenRecord:
    return TokenRecord(**row._mapping)


async def insert(
    conn: AsyncConnection,
    *,
    token_hash: str,
    user_id: int,
    name: str,
    prefix: str,
    now: int,
    expires_at: int | None,
) -> TokenRecord:
    result = await conn.execute(
        api_tokens.insert()
        .values(
            token_hash=token_hash,
            user_id=user_id,
            name=name,
            prefix=prefix,
            created_at=now,
            expires_at=expires_at,
        )
        .returning(*api_tokens.c)
    )
    return _record(result.one())


async def by_token_hash(conn: AsyncConnection, token_hash: str) -> TokenRecord | None:
    query = api_tokens.select().where(api_tokens.c.token_hash == token_hash)
    row = (await conn.execute(query)).first()
    return _record(row) if row else None


async def list_for_user(conn: AsyncConnection, user_id: int) -> list[TokenRecord]:
    query = (
        api_tokens.select()
        .where(api_tokens.c.user_id == user_id)
        .order_by(api_tokens.c.created_at, api_tokens.c.id)
    )
    return [_record(row) for row in (await conn.execute(query)).all()]


async def touch(conn: AsyncConnection, token_id: int, *, now: int) -> None:
    await conn.execute(
        api_tokens.update().where(api_tokens.c.id == token_id).values(last_used_at=now)
    )


async def delete_for_user(conn: AsyncConnection, token_id: int, user_id: int) -> bool:
    query = api_tokens.delete().where(api_tokens.c.id == token_id, api_tokens.c.user_id == user_id)
    return (await conn.execute(query)).rowcount == 1
