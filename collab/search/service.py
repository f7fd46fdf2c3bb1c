"""The rules of message search: what a query means, who sees what, what a hit shows.

A search covers only the rooms the user is in, now (the SQL joins on
membership), so guests find only what they were let into, and leaving a
room takes its messages out of one's results. System messages and deleted
messages are never found; an edit takes the old words out of the index.

The query is plain words, never syntax. It is cut into words the way the
SQLite tokenizer (``unicode61``) cuts text: runs of letters, digits and
combining marks; everything else separates words. Every word must occur in
a message; the last one may be the start of a word (``depl`` finds
``deployment``), so results can follow typing. ``AND``/``OR``/``NOT``/``NEAR``
written in capitals are dropped (they are operators elsewhere, and people
type them expecting one); in lower case they are ordinary words.

The two backends agree on ordinary words, case and prefixes. Where they
differ, by decision rather than accident:

* Accents: SQLite folds them (``remove_diacritics 2``), so ``cafe`` finds
  ``café`` and back; PostgreSQL's ``simple`` configuration keeps them, so
  only ``café`` finds ``café``. Folding there too needs the ``unaccent``
  extension and a new index: a later migration, if clusters ask for it.
* Compound tokens: PostgreSQL's parser keeps e-mail addresses, host names,
  URLs and dotted numbers (``3.14``, ``v1.2.3``) as single words, where
  SQLite splits them; searching for a part of one finds it only on SQLite.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Annotated

import msgspec

from collab.accounts.models import Identity
from collab.api import fields
from collab.api.errors import BadRequest
from collab.chat.models import MessageView
from collab.chat.service import ChatService
from collab.store import Store
from collab.store import search as search_sql

MAX_LIMIT = 100
MAX_OFFSET = 10_000
MAX_QUERY_CHARS = 500
MAX_TERMS = 16
SNIPPET_BEFORE = 60
SNIPPET_CHARS = 200
OPERATORS = frozenset({"AND", "OR", "NOT", "NEAR"})
_SENDER = re.compile(r"^@?[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")

Query = Annotated[str, msgspec.Meta(max_length=MAX_QUERY_CHARS)]
Sender = Annotated[str, msgspec.Meta(max_length=64)]
Millis = fields.Millis
RoomId = fields.Id
Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=MAX_OFFSET)]


class SearchQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the REST query string and the ``chat.search`` command both carry."""

    q: Query = ""
    room: RoomId | None = None
    sender: Sender | None = None
    after: Millis | None = None
    before: Millis | None = None
    limit: Limit = 20
    offset: Offset = 0


class RoomRef(msgspec.Struct, frozen=True):
    id: int
    kind: str
    name: str | None


class SearchHit(msgspec.Struct, frozen=True):
    """One result. ``message.room`` and ``message.seq`` say where it is in its room's
    history: ``GET /api/v1/rooms/{room}/messages?after={seq - 25}&limit=50`` (or
    ``chat.history``) opens the page around it. ``highlight`` is plain text."""

    message: MessageView
    room: RoomRef
    highlight: str | None


class SearchPage(msgspec.Struct, frozen=True):
    results: list[SearchHit]
    next_offset: int | None


def _is_word_char(ch: str) -> bool:
    """Letters, digits, combining marks and private-use characters: unicode61's token
    characters. Everything else (spaces, punctuation, symbols, emoji) separates."""
    category = unicodedata.category(ch)
    return category[0] in "LNM" or category == "Co"


def _words(text: str) -> Iterator[tuple[int, int]]:
    """Start and end of each run of word characters."""
    start = None
    for i, ch in enumerate(text):
        if _is_word_char(ch):
            if start is None:
                start = i
        elif start is not None:
            yield start, i
            start = None
    if start is not None:
        yield start, len(text)


def search_terms(query: str) -> list[str]:
    """The words of a query, ready to be quoted into FTS5 or tsquery text.

    Punctuation and symbols go (so no query syntax survives), repeated words
    count once, and the word typed last stays last: it is the prefix term.
    Raises ``empty_query`` when no word is left and ``too_many_terms`` above
    ``MAX_TERMS``.
    """
    text = unicodedata.normalize("NFC", query)
    words = [text[a:b] for a, b in _words(text)]
    words = [w for w in words if w not in OPERATORS]
    if not words:
        raise BadRequest("Type a word to search for.", code="empty_query", field="q")
    last = words[-1]
    terms = [w for w in dict.fromkeys(words[:-1]) if w != last] + [last]
    if len(terms) > MAX_TERMS:
        raise BadRequest(
            f"Search for at most {MAX_TERMS} words at once.", code="too_many_terms", field="q"
        )
    return terms


def _fold(text: str) -> tuple[str, list[int]]:
    """Case- and accent-folded text, and for each of its characters the index of the
    original character it came from (folding can change lengths: ß → ss)."""
    chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        for part in unicodedata.normalize("NFKD", ch.casefold()):
            if unicodedata.category(part) == "Mn":
                continue
            chars.append(part)
            origin.append(i)
    return "".join(chars), origin


def _first_match(body: str, terms: Sequence[str]) -> tuple[int, int] | None:
    """Where in ``body`` the first word matching a term is (the last term as a prefix)."""
    folded, origin = _fold(body)
    exact = {_fold(t)[0] for t in terms[:-1]}
    prefix = _fold(terms[-1])[0]
    for start, end in _words(folded):
        word = folded[start:end]
        if word in exact or word.startswith(prefix):
            return origin[start], origin[end - 1] + 1
    return None


def highlight(body: str, terms: Sequence[str]) -> str | None:
    """A plain-text excerpt of ``body`` around the first match, on one line.

    Never markup: the client shows it as text and marks the words itself if
    it likes. When the match is not found here (PostgreSQL split the text
    differently), the excerpt is the start of the message.
    """
    if not body.strip():
        return None
    found = _first_match(body, terms)
    match_start, match_end = found if found else (0, 0)
    start = max(0, match_start - SNIPPET_BEFORE)
    end = min(len(body), max(start + SNIPPET_CHARS, match_end))
    if start > 0:
        space = max(body.rfind(" ", start, match_start), body.rfind("\n", start, match_start))
        if space >= start:
            start = space + 1
    if end < len(body):
        space = max(body.rfind(" ", match_end, end), body.rfind("\n", match_end, end))
        if space > match_end:
            end = space
    text = " ".join(body[start:end].split())
    return ("…" if start > 0 else "") + text + ("…" if end < len(body) else "")


class SearchService:
    """Searches messages for one user at a time; knows no HTTP."""

    def __init__(self, store: Store, chat: ChatService) -> None:
        self._store = store
        self._chat = chat

    async def search(self, identity: Identity, query: SearchQuery) -> SearchPage:
        terms = search_terms(query.q)
        if query.after is not None and query.before is not None and query.after >= query.before:
            raise BadRequest(
                "after must be smaller than before.", code="invalid_field", field="after"
            )
        sender = None
        if query.sender is not None:
            if not _SENDER.match(query.sender.strip()):
                raise BadRequest("sender is a username.", code="invalid_field", field="sender")
            sender = query.sender.strip().lstrip("@").lower()
        async with self._store.read() as conn:
            found = await search_sql.search(
                conn,
                user_id=identity.user.id,
                terms=terms,
                room_id=query.room,
                sender=sender,
                after=query.after,
                before=query.before,
                limit=query.limit + 1,
                offset=query.offset,
            )
            more = len(found) > query.limit
            found = found[: query.limit]
            # The views are chat's own (sender, reactions, files...), so a hit looks
            # exactly like the message in history.
            views = await self._chat.views(conn, [f.message for f in found])
        results = [
            SearchHit(
                message=view,
                room=RoomRef(f.message.room_id, f.room_kind, f.room_name),
                highlight=highlight(f.message.body, terms),
            )
            for f, view in zip(found, views, strict=True)
        ]
        next_offset = query.offset + query.limit
        return SearchPage(results, next_offset if more and next_offset <= MAX_OFFSET else None)
