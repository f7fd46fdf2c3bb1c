"""SQL for invitation links. Only the SHA-256 of an invitation code is stored."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.schema import invitations


class InvitationRecord(msgspec.Struct, frozen=True):
    id: int
    code_hash: str
    role: str
    email: str | None
    created_by: int | None
    created_at: int
    expires_at: int
    used_at: int | None
    used_by: int | None
    revoked_at: int | None


def _record(row: sa.Row[Any]) -> InvitationRecord:
    return InvitationRecord(**row._mapping)


async def insert(
    conn: AsyncConnection,
    *,
    code_hash: str,
    role: str,
    email: str | None,
    created_by: int | None,
    now: int,
    expires_at: int,
) -> InvitationRecord:
    result = await conn.execute(
        invitations.insert()
        .values(
            code_hash=code_hash,
            role=role,
            email=email,
            created_by=created_by,
            created_at=now,
            expires_at=expires_at,
        )
        .returning(*invitations.c)
    )
    return _record(result.one())


async def by_code_hash(conn: AsyncConnection, code_hash: str) -> InvitationRecord | None:
    query = invitations.select().where(invitations.c.code_hash == code_hash)
    row = (await conn.execute(query)).first()
    return _record(row) if row else None


async def list_pending(conn: AsyncConnection, *, now: int) -> list[InvitationRecord]:
    query = (
        invitations.select()
        .where(
            invitations.c.used_at.is_(None),
            invitations.c.revoked_at.is_(None),
            invitations.c.expires_at > now,
        )
        .order_by(invitations.c.created_at, invitations.c.id)
    )
    return [_record(row) for row in (await conn.execute(query)).all()]


async def claim(conn: AsyncConnection, invitation_id: int, *, now: int) -> bool:
    """Mark an invitation used if it still is usable. False means someone else won."""
    query = (
        invitations.update()
        .where(
            invitations.c.id == invitation_id,
            invitations.c.used_at.is_(None),
            invitations.c.revoked_at.is_(None),
            invitations.c.expires_at > now,
        )
        .values(used_at=now)
    )
    return (await conn.execute(query)).rowcount == 1


async def set_used_by(conn: AsyncConnection, invitation_id: int, user_id: int) -> None:
    await conn.execute(
        invitations.update().where(invitations.c.id == invitation_id).values(used_by=user_id)
    )


async def revoke(conn: AsyncConnection, invitation_id: int, *, now: int) -> bool:
    query = (
        invitations.update()
        .where(
            invitations.c.id == invitation_id,
            invitations.c.used_at.is_(None),
            invitations.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return (await conn.execute(query)).rowcount == 1


async def revoke_unused_admin_setups(conn: AsyncConnection, *, now: int) -> None:
    """First-run links are replaced at each start, so only the newest one works."""
    await conn.execute(
        invitations.update()
        .where(
            invitations.c.role == "admin",
            invitations.c.created_by.is_(None),
            invitations.c.used_at.is_(None),
            invitations.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
