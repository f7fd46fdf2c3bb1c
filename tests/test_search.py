"""Message search: SQLite FTS5 and PostgreSQL ``tsvector`` must find the same things.

Tests that take ``database_url`` run twice, on SQLite and on a real
PostgreSQL; where the two backends differ on purpose (accents), the test
says which does what, as ``collab/search/service.py`` documents.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from collab.appkeys import STORE
from collab.search.service import MAX_TERMS, highlight, search_terms
from collab.store import search as search_sql
from collab.store.search import fts5_match, pg_tsquery
from tests.chat_helpers import Person
from tests.conftest import FakeClock


@pytest.fixture
async def client(
    aiohttp_client: Any, make_app: Any, database_url: str
) -> AsyncIterator[TestClient[Any, Any]]:
    yield await aiohttp_client(make_app(database_url=database_url))


@pytest.fixture
async def people(client: TestClient[Any, Any]) -> AsyncIterator[dict[str, Person]]:
    found = {
        "ana": await Person.create(client, "ana"),
        "bob": await Person.create(client, "bob"),
        "cid": await Person.create(client, "cid"),
        "gus": await Person.create(client, "gus", role="guest"),
        "root": await Person.create(client, "root", role="admin"),
    }
    yield found
    for person in found.values():
        await person.close()


def _dialect(client: TestClient[Any, Any]) -> str:
    return client.app[STORE].dialect


async def search(person: Person, expect: int = 200, **params: Any) -> Any:
    return await person.call("GET", "/api/v1/search", expect, params=params)


async def found_ids(person: Person, **params: Any) -> list[int]:
    body = await search(person, **params)
    return [hit["message"]["id"] for hit in body["results"]]


async def test_finds_by_word_and_by_prefix_newest_first(
    people: dict[str, Person], clock: FakeClock
) -> None:
    ana, bob = people["ana"], people["bob"]
    room = await ana.room("channel", "general", ["bob"])
    first = await ana.post(room["id"], "Deploy finished on staging")
    clock.advance(1)
    second = await bob.post(room["id"], "The deployment failed, again")
    clock.advance(1)
    lunch = await ana.post(room["id"], "Lunch at noon?")

    assert await found_ids(bob, q="deploy") == [second["id"], first["id"]]
    assert await found_ids(bob, q="deployment") == [second["id"]]
    assert await found_ids(bob, q="deploy finished") == [first["id"]]
    assert await found_ids(bob, q="stag") == [first["id"]]
    assert await found_ids(bob, q="NOON lunch") == [lunch["id"]]
    assert await found_ids(bob, q="deploy lunch") == []
    assert await found_ids(bob, q="nothing-like-this") == []

    body = await search(bob, q="finished")
    [hit] = body["results"]
    assert body["next_offset"] is None
    assert hit["room"] == {"id": room["id"], "kind": "channel", "name": "general"}
    assert hit["message"]["seq"] == first["seq"]
    assert hit["message"]["body"] == "Deploy finished on staging"
    assert hit["message"]["sender"]["username"] == "ana"
    assert hit["highlight"] == "Deploy finished on staging"

    # The result leads to the message in its room's history.
    page = await bob.call(
        "GET",
        f"/api/v1/rooms/{hit['room']['id']}/messages",
        200,
        params={"after": hit["message"]["seq"] - 1, "limit": 1},
    )
    assert [m["id"] for m in page["messages"]] == [first["id"]]


async def test_only_rooms_the_user_is_in(people: dict[str, Person]) -> None:
    ana, bob, gus, root = people["ana"], people["bob"], people["gus"], people["root"]
    general = await ana.room("channel", "general", ["bob"])
    hidden = await ana.room("channel", "plans")  # public, but bob has not joined
    inner = await ana.room("private", "inner", ["gus"])
    dm = await ana.room("dm", members=["cid"])
    in_general = await ana.post(general["id"], "zebra crossing")
    in_hidden = await ana.post(hidden["id"], "zebra plans")
    in_inner = await ana.post(inner["id"], "zebra inner circle")
    in_dm = await ana.post(dm["id"], "zebra between us")

    assert sorted(await found_ids(ana, q="zebra")) == sorted(
        [in_general["id"], in_hidden["id"], in_inner["id"], in_dm["id"]]
    )
    assert await found_ids(bob, q="zebra") == [in_general["id"]]
    assert await found_ids(bob, q="zebra", room=hidden["id"]) == []
    assert await found_ids(bob, q="zebra", room=inner["id"]) == []
    assert await found_ids(gus, q="zebra") == [in_inner["id"]]
    assert await found_ids(people["cid"], q="zebra") == [in_dm["id"]]
    # Administrators search their own rooms too, not everyone's.
    assert await found_ids(root, q="zebra") == []

    await bob.call("POST", f"/api/v1/rooms/{hidden['id']}/join", 200)
    assert await found_ids(bob, q="zebra") == [in_hidden["id"], in_general["id"]]
    await bob.call("POST", f"/api/v1/rooms/{hidden['id']}/leave", 204)
    assert await found_ids(bob, q="zebra") == [in_general["id"]]


async def test_filters_by_room_sender_and_date_and_pages(
    people: dict[str, Person], clock: FakeClock
) -> None:
    ana, bob = people["ana"], people["bob"]
    one = await ana.room("channel", "one", ["bob"])
    two = await ana.room("channel", "two", ["bob"])
    start = clock.now
    posted = []
    for i in range(6):
        room, author = (one, ana) if i % 2 == 0 else (two, bob)
        posted.append(await author.post(room["id"], f"report number {i}"))
        clock.advance(10)
    ids = [m["id"] for m in posted]
    newest_first = list(reversed(ids))

    assert await found_ids(bob, q="report") == newest_first
    assert await found_ids(bob, q="report", room=one["id"]) == [ids[4], ids[2], ids[0]]
    assert await found_ids(bob, q="report", sender="bob") == [ids[5], ids[3], ids[1]]
    assert await found_ids(bob, q="report", sender="@Ana", room=two["id"]) == []
    assert await found_ids(bob, q="report", sender="nobody") == []
    # after/before are exclusive bounds on created_at (ms).
    assert await found_ids(bob, q="report", after=start + 10_000) == [
        ids[5],
        ids[4],
        ids[3],
        ids[2],
    ]
    assert await found_ids(bob, q="report", before=start + 20_000) == [ids[1], ids[0]]
    assert await found_ids(bob, q="report", after=start + 10_000, before=start + 40_000) == [
        ids[3],
        ids[2],
    ]
    await search(bob, 400, q="report", after=start + 5, before=start + 5)

    page = await search(bob, q="report", limit=4)
    assert [h["message"]["id"] for h in page["results"]] == newest_first[:4]
    assert page["next_offset"] == 4
    page = await search(bob, q="report", limit=4, offset=4)
    assert [h["message"]["id"] for h in page["results"]] == newest_first[4:]
    assert page["next_offset"] is None
    await search(bob, 400, q="report", limit=101)
    await search(bob, 400, q="report", limit=0)


async def test_edited_deleted_and_system_messages(people: dict[str, Person]) -> None:
    ana, bob = people["ana"], people["bob"]
    room = await ana.room("channel", "general", ["bob"])
    message = await ana.post(room["id"], "banana split")
    assert await found_ids(bob, q="banana") == [message["id"]]

    await ana.call("PATCH", f"/api/v1/messages/{message['id']}", 200, json={"body": "apple pie"})
    assert await found_ids(bob, q="banana") == []
    body = await search(bob, q="apple")
    assert [h["message"]["body"] for h in body["results"]] == ["apple pie"]

    await ana.call("DELETE", f"/api/v1/messages/{message['id']}", 200)
    assert await found_ids(bob, q="apple") == []
    assert await found_ids(bob, q="pie") == []

    # System messages ("Ana added Cid") are in history but never found.
    await ana.call("POST", f"/api/v1/rooms/{room['id']}/members", 200, json={"username": "cid"})
    history = await bob.call("GET", f"/api/v1/rooms/{room['id']}/messages", 200)
    system = [m for m in history["messages"] if m["kind"] == "system"]
    assert system and "added" in system[-1]["body"]
    assert await found_ids(bob, q="added") == []


HOSTILE = [
    '"',
    "*",
    "NEAR(",
    "OR",
    "-",
    "AND",
    "')",
    "\\",
    "''",
    "()",
    ":*",
    "!",
    "&|",
    "^",
    "{}",
    "\x00",
    "zebra OR",
    'zebra" OR "x',
    "NEAR(zebra, crossing)",
    "zebra*",
    "-zebra",
    "zebra:*",
    "zebra & crossing",
    "zebra' | 'x",
    "body:zebra",
    "\\zebra\\",
    "zebra)",
    "a" * 500,
    "a " * 250,
    "日本語",
    "🎉",
    "Ünïcödé",
    "e\u0301",
    "\u0301",
    "\u0301\u0301 x\u0301",
    "\u200b\u200e",
    "\U0001f600zebra",
    "שלום",
    "ǅemal",
    "\uff05",  # FULLWIDTH PERCENT SIGN
    "'; DROP TABLE messages; --",
]


async def test_hostile_queries_never_fail(people: dict[str, Person]) -> None:
    ana = people["ana"]
    room = await ana.room("channel", "general")
    crossing = await ana.post(room["id"], "zebra crossing")
    for query in HOSTILE:
        response = await ana.http.get("/api/v1/search", params={"q": query})
        body = await response.json()
        assert response.status in (200, 400), (query, response.status, body)
        if response.status == 400:
            assert body["error"]["code"] in ("empty_query", "invalid_field"), (query, body)
        else:
            assert isinstance(body["results"], list)
    for query in ("zebra OR", 'zebra" OR "cross', "NEAR(zebra, crossing)", "zebra*", "-zebra"):
        assert await found_ids(ana, q=query) == [crossing["id"]], query

    too_many = " ".join(f"w{i}" for i in range(MAX_TERMS + 1))
    body = await search(ana, 400, q=too_many)
    assert body["error"]["code"] == "too_many_terms"
    body = await search(ana, 400, q="a" * 501)
    assert body["error"]["code"] == "invalid_field"
    body = await search(ana, 400)
    assert body["error"]["code"] == "empty_query"
    for params in ({"sender": "x\x00"}, {"sender": "'; --"}, {"room": "abc"}, {"room": "0"}):
        body = await search(ana, 400, q="zebra", **params)
        assert body["error"]["code"] == "invalid_field", params
    body = await search(ana, 400, q="zebra", colour="red")
    assert body["error"]["code"] == "unknown_field"


async def test_quoting_holds_even_for_terms_the_service_never_makes(
    client: TestClient[Any, Any], people: dict[str, Person]
) -> None:
    """The SQL quotes whatever terms it is given; the service only passes plain words."""
    ana = people["ana"]
    room = await ana.room("channel", "general")
    await ana.post(room["id"], "it is fine")
    nasty = ['a"b', "it's", "back\\slash", "OR", "NEAR(x", "*", "')--", ":*"]
    async with client.app[STORE].read() as conn:
        for term in nasty:
            for terms in ([term], [term, "fine"], ["fine", term]):
                await search_sql.search(conn, user_id=ana.user_id, terms=terms, limit=10)


async def test_unicode_words(people: dict[str, Person]) -> None:
    ana = people["ana"]
    room = await ana.room("channel", "general")
    japanese = await ana.post(room["id"], "日本語のテキスト")
    accented = await ana.post(room["id"], "Ünïcödé rocks")
    assert await found_ids(ana, q="日本語") == [japanese["id"]]
    assert await found_ids(ana, q="ünïcödé") == [accented["id"]]
    assert await found_ids(ana, q="ÜNÏCÖDÉ ROCKS") == [accented["id"]]


async def test_accents(client: TestClient[Any, Any], people: dict[str, Person]) -> None:
    """Both backends: case folds, accents as typed match, prefixes match. Only SQLite
    folds accents (remove_diacritics); PostgreSQL's 'simple' config keeps them."""
    ana = people["ana"]
    room = await ana.room("channel", "general")
    cafe = await ana.post(room["id"], "Café au lait")
    for query in ("café", "CAFÉ", "Café lait", "caf", "lait café"):
        assert await found_ids(ana, q=query) == [cafe["id"]], query
    folded = await found_ids(ana, q="cafe")
    assert folded == ([cafe["id"]] if _dialect(client) == "sqlite" else [])


async def test_search_over_the_socket(people: dict[str, Person]) -> None:
    ana, bob = people["ana"], people["bob"]
    room = await ana.room("channel", "general", ["bob"])
    message = await ana.post(room["id"], "socket search works")
    ws = await bob.socket()
    try:
        answer = await ws.command("chat.search", q="sock", room=room["id"], limit=5)
        assert answer["ok"] is True
        assert [h["message"]["id"] for h in answer["results"]] == [message["id"]]
        assert answer["results"][0]["room"]["name"] == "general"
        assert answer["next_offset"] is None
        answer = await ws.command("chat.search", q="***")
        assert answer["error"]["code"] == "empty_query"
        answer = await ws.command("chat.search", q="x", limit=1000)
        assert "error" in answer
    finally:
        await ws.close()


# -- the pieces, without a database ------------------------------------------------


def test_search_terms() -> None:
    assert search_terms('deploy "prod" NEAR( staging*') == ["deploy", "prod", "staging"]
    assert search_terms("it's-a_test") == ["it", "s", "a", "test"]
    assert search_terms("a b a") == ["b", "a"]
    assert search_terms("or and not") == ["or", "and", "not"]
    assert search_terms("cafe\u0301") == ["café"]
    for empty in ("", "   ", '"', "OR AND NOT", "*:()", "🎉"):
        with pytest.raises(Exception, match="word"):
            search_terms(empty)


def test_expressions_quote_every_term() -> None:
    assert fts5_match(["a", "b"]) == '"a" "b"*'
    assert fts5_match(['x"y']) == '"x""y"*'
    assert pg_tsquery(["a", "b"]) == "'a' & 'b':*"
    assert pg_tsquery(["it's", "a\\b"]) == "'it''s' & 'a\\\\b':*"


def test_highlight_is_plain_text_around_the_match() -> None:
    body = "word " * 40 + "<b>needle</b> & more " + "tail " * 60
    text = highlight(body, ["needle"])
    assert text is not None
    assert "<b>needle</b> & more" in text
    assert text.startswith("…") and text.endswith("…")
    assert len(text) <= 210
    assert highlight("Crème brûlée\nfor two", ["brulee"]) == "Crème brûlée for two"
    assert highlight("", ["x"]) is None
    assert highlight("no match here", ["zzz"]) == "no match here"
