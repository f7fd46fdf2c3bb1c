"""SQL for full-text search of messages: SQLite FTS5 on one node, ``tsvector`` on PostgreSQL.

The search structures are made by migration 0002: on SQLite an external-content
FTS5 table ``messages_fts(body)`` (tokenizer ``unicode61 remove_diacritics 2``)
that triggers keep in step with ``messages.body``, so edits and deletions
(which blank the body) leave the index at once; on PostgreSQL a GIN index on
``to_tsvector('simple', body)``. The query below repeats that expression
exactly, or the planner cannot use the index.

Callers pass *terms*: words already cut out of the user's text (letters,
digits and combining marks only, see ``collab.search.service.search_terms``).
Both backends then ask the same thing: every term must be a word of the
message, and the last one may be the beginning of a word (so results appear
while the user is still typing). The expressions are built here, with each
term quoted, so nothing the user typed is ever read as query syntax.

Who may read what is part of the SQL, not a filter afterwards: the join on
``room_members`` keeps only rooms the searcher is in, so a page is always
full and nothing from other rooms is read into memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.messages import MessageRecord
from collab.store.schema import messages, room_members, rooms, users

# The FTS5 table exists only in the SQLite migration, so it is not in ``schema``.
_messages_fts = sa.table("messages_fts", sa.column("rowid", sa.Integer))

# A literal, not a bound parameter: the expression must read exactly like the
# index's ``to_tsvector('simple'::regconfig, body)`` for PostgreSQL to use it.
_SIMPLE = sa.literal_column("'simple'::regconfig")


class FoundMessage(msgspec.Struct, frozen=True):
    """A matching message with what a result shows of its room."""

    message: MessageRecord
    room_kind: str
    room_name: str | None


def fts5_match(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression: every term a quoted string, the last one a prefix.

    Inside an FTS5 string only ``"`` is special (written twice), so operators
    (``AND``, ``NEAR``, ``*``, ``^``, ``:``, parentheses) in a term are text.
    Strings next to each other are ANDed.
    """
    if not terms:
        raise ValueError("a search needs at least one term")
    quoted = ['"' + term.replace('"', '""') + '"' for term in terms]
    quoted[-1] += "*"
    return " ".join(quoted)


def pg_tsquery(terms: Sequence[str]) -> str:
    """Text for ``to_tsquery('simple', ...)``: quoted lexemes ANDed, the last a prefix.

    In tsquery text a quoted lexeme may hold anything once ``'`` is doubled and
    ``\\`` escaped; ``to_tsquery`` then runs it through the same parser and
    dictionary as ``to_tsvector`` (lower case, no stemming with 'simple').
    """
    if not terms:
        raise ValueError("a search needs at least one term")
    quoted = ["'" + term.replace("\\", "\\\\").replace("'", "''") + "'" for term in terms]
    quoted[-1] += ":*"
    return " & ".join(quoted)


def _matches(dialect: str, terms: Sequence[str]) -> sa.ColumnElement[bool]:
    if dialect == "sqlite":
        match = sa.literal_column("messages_fts").op("MATCH")(
            sa.bindparam("fts_match", fts5_match(terms), type_=sa.String)
        )
        return messages.c.id.in_(sa.select(_messages_fts.c.rowid).where(match))
    if dialect == "postgresql":
        document = sa.func.to_tsvector(_SIMPLE, messages.c.body)
        wanted = sa.func.to_tsquery(
            _SIMPLE, sa.bindparam("ts_query", pg_tsquery(terms), type_=sa.String)
        )
        return document.op("@@")(wanted)
    raise NotImplementedError(f"no full-text search for {dialect}")


async def search(
    conn: AsyncConnection,
    *,
    user_id: int,
    terms: Sequence[str],
    room_id: int | None = None,
    sender: str | None = None,
    after: int | None = None,
    before: int | None = None,
    limit: int,
    offset: int = 0,
) -> list[FoundMessage]:
    """Messages matching ``terms`` in the rooms ``user_id`` is in, newest first.

    Leaves out system messages and deleted ones. ``sender`` is a username
    (lower case); an unknown one matches nothing. ``after``/``before`` bound
    ``created_at`` (milliseconds), both exclusive.
    """
    query = (
        sa.select(
            messages,
            rooms.c.kind.label("room_kind"),
            rooms.c.name.label("room_name"),
        )
        .join(
            room_members,
            sa.and_(
                room_members.c.room_id == messages.c.room_id,
                room_members.c.user_id == user_id,
            ),
        )
        .join(rooms, rooms.c.id == messages.c.room_id)
        .where(
            _matches(conn.dialect.name, terms),
            messages.c.kind != "system",
            messages.c.deleted_at.is_(None),
        )
    )
    if room_id is not None:
        query = query.where(messages.c.room_id == room_id)
    if sender is not None:
        sender_id = sa.select(users.c.id).where(users.c.username == sender).scalar_subquery()
        query = query.where(messages.c.sender_id == sender_id)
    if after is not None:
        query = query.where(messages.c.created_at > after)
    if before is not None:
        query = query.where(messages.c.created_at < before)
    query = (
        query.order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    found = []
    for row in (await conn.execute(query)).all():
        data: dict[str, Any] = dict(row._mapping)
        found.append(
            FoundMessage(
                message=MessageRecord(**{c.name: data[c.name] for c in messages.c}),
                room_kind=data["room_kind"],
                room_name=data["room_name"],
            )
        )
    return found
