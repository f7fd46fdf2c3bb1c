"""SQL for uploaded files: metadata only; the bytes live under the data directory."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.schema import files, users


class FileRecord(msgspec.Struct, frozen=True):
    id: int
    sha256: str
    size: int
    content_type: str
    name: str
    uploader_id: int | None
    room_id: int
    message_id: int | None
    width: int | None
    height: int | None
    has_thumbnail: bool
    created_at: int


def _record(row: sa.Row[Any]) -> FileRecord:
    return FileRecord(**row._mapping)


async def of_messages(
    conn: AsyncConnection, message_ids: Iterable[int]
) -> dict[int, list[FileRecord]]:
    wanted = sorted(set(message_ids))
    if not wanted:
        return {}
    query = files.select().where(files.c.message_id.in_(wanted)).order_by(files.c.id)
    found: dict[int, list[FileRecord]] = {}
    for row in (await conn.execute(query)).all():
        found.setdefault(row.message_id, []).append(_record(row))
    return found


async def attach(
    conn: AsyncConnection, file_ids: list[int], *, message_id: int, room_id: int, uploader_id: int
) -> int:
    """Attach the uploader's unattached files of this room to a message; returns how many."""
    if not file_ids:
        return 0
    query = (
        files.update()
        .where(
            files.c.id.in_(file_ids),
            files.c.room_id == room_id,
            files.c.uploader_id == uploader_id,
            files.c.message_id.is_(None),
        )
        .values(message_id=message_id)
    )
    return (await conn.execute(query)).rowcount


async def insert(
    conn: AsyncConnection,
    *,
    sha256: str,
    size: int,
    content_type: str,
    name: str,
    uploader_id: int,
    room_id: int,
    width: int | None,
    height: int | None,
    has_thumbnail: bool,
    now: int,
) -> FileRecord:
    """One row per upload; several rows may share a blob (the same ``sha256``)."""
    result = await conn.execute(
        files.insert()
        .values(
            sha256=sha256,
            size=size,
            content_type=content_type,
            name=name,
            uploader_id=uploader_id,
            room_id=room_id,
            message_id=None,
            width=width,
            height=height,
            has_thumbnail=has_thumbnail,
            created_at=now,
        )
        .returning(*files.c)
    )
    return _record(result.one())


async def by_id(conn: AsyncConnection, file_id: int) -> FileRecord | None:
    row = (await conn.execute(files.select().where(files.c.id == file_id))).first()
    return _record(row) if row else None


async def usage_of(conn: AsyncConnection, user_id: int, *, lock: bool = False) -> int:
    """Bytes the user's uploads count against their quota: every upload at its full size,
    even when its blob is shared with another upload.

    With ``lock`` the user's row is locked first (PostgreSQL; SQLite's write
    transaction is exclusive anyway), so two uploads finishing at once cannot
    both squeeze under the quota.
    """
    if lock:
        await conn.execute(sa.select(users.c.id).where(users.c.id == user_id).with_for_update())
    query = sa.select(sa.func.coalesce(sa.func.sum(files.c.size), 0)).where(
        files.c.uploader_id == user_id
    )
    return int((await conn.execute(query)).scalar_one())


async def delete_unattached(conn: AsyncConnection, *, before: int) -> list[str]:
    """Delete the uploads made before ``before`` that were never attached to a message;
    the hashes of their blobs (one per upload, repeated when uploads shared one)."""
    query = (
        files.delete()
        .where(files.c.message_id.is_(None), files.c.created_at < before)
        .returning(files.c.sha256)
    )
    return list((await conn.execute(query)).scalars())


async def hashes_in_use(conn: AsyncConnection, sha256s: Iterable[str]) -> set[str]:
    """Which of these blobs some upload still refers to."""
    wanted = sorted(set(sha256s))
    if not wanted:
        return set()
    query = sa.select(files.c.sha256).where(files.c.sha256.in_(wanted)).distinct()
    return set((await conn.execute(query)).scalars())
