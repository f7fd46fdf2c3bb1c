"""Incoming webhooks: a secret URL per room that posts as a named bot.

The main path runs on SQLite and PostgreSQL (``database_url``); the rest on
SQLite, since it tests rules rather than SQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from collab.appkeys import STORE
from collab.store.schema import webhooks
from tests.chat_helpers import Person

# http, not https: an https public URL makes session cookies Secure, and tests speak http.
PUBLIC_URL = "http://chat.example.com:8080"


@pytest.fixture
async def client(aiohttp_client: Any, make_app: Any) -> TestClient[Any, Any]:
    return await aiohttp_client(make_app(public_url=PUBLIC_URL))


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


async def make_hook(person: Person, room_id: int, name: str = "Deploy bot") -> tuple[dict, str]:
    body = await person.call(
        "POST", f"/api/v1/rooms/{room_id}/webhooks", 201, json={"bot_name": name}
    )
    return body["webhook"], urlsplit(body["url"]).path


async def hook_post(client: TestClient[Any, Any], path: str, **body: Any) -> tuple[int, Any]:
    """Post as a script would: no cookie, no CSRF token, just the URL."""
    response = await client.post(path, json=body)
    return response.status, await response.json()


async def error(client: TestClient[Any, Any], path: str, **kw: Any) -> tuple[int, str]:
    response = await client.post(path, **kw)
    return response.status, (await response.json())["error"]["code"]


async def test_a_webhook_posts_as_its_bot(
    aiohttp_client: Any, make_app: Any, database_url: str
) -> None:
    client = await aiohttp_client(make_app(public_url=PUBLIC_URL, database_url=database_url))
    ana = await Person.create(client, "ana")
    bob = await Person.create(client, "bob")
    room = await ana.room("channel", "general", ["bob"])
    created = await ana.call(
        "POST", f"/api/v1/rooms/{room['id']}/webhooks", 201, json={"bot_name": " Deploy  bot "}
    )
    hook, url = created["webhook"], created["url"]
    assert url.startswith(f"{PUBLIC_URL}/hooks/")
    secret = url.rsplit("/", 1)[1]
    assert hook["room"] == room["id"] and hook["bot_name"] == "Deploy bot"
    assert hook["created_by"]["username"] == "ana"
    assert set(hook) == {"id", "room", "bot_name", "created_at", "created_by"}

    bob_ws = await bob.socket()
    status, body = await hook_post(client, urlsplit(url).path, text="Build 42 is live @bob")
    assert status == 201
    assert body["message"]["room"] == room["id"] and body["message"]["seq"] == 1
    event = await bob_ws.next_event("chat.message")
    assert event["kind"] == "bot" and event["bot_name"] == "Deploy bot"
    assert event["body"] == "Build 42 is live @bob" and event["mentions"] == ["bob"]
    assert event["sender"]["username"] == "ana"
    await bob_ws.close()

    history = await bob.call("GET", f"/api/v1/rooms/{room['id']}/messages", 200)
    [message] = history["messages"]
    assert message["id"] == body["message"]["id"]
    assert message["kind"] == "bot" and message["bot_name"] == "Deploy bot"

    # The secret was shown once: it is stored only as its digest and never listed.
    listed = await bob.call("GET", f"/api/v1/rooms/{room['id']}/webhooks", 200)
    assert [h["id"] for h in listed["webhooks"]] == [hook["id"]]
    assert set(listed["webhooks"][0]) == {"id", "room", "bot_name", "created_at", "created_by"}
    assert secret not in str(listed)
    async with client.app[STORE].read() as conn:
        [stored] = (await conn.execute(sa.select(webhooks))).all()
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(tuple(stored))

    await ana.call("DELETE", f"/api/v1/rooms/{room['id']}/webhooks/{hook['id']}", 204)
    assert await error(client, urlsplit(url).path, json={"text": "again"}) == (
        404,
        "webhook_not_found",
    )
    await ana.close()
    await bob.close()


async def test_idempotent_with_client_msg_id(
    client: TestClient[Any, Any], people: dict[str, Person]
) -> None:
    ana = people["ana"]
    room = await ana.room("channel", "general")
    _, path = await make_hook(ana, room["id"])
    _, other_path = await make_hook(ana, room["id"], "Other bot")
    status, first = await hook_post(client, path, text="deployed", client_msg_id="build-42")
    assert status == 201
    status, again = await hook_post(client, path, text="deployed", client_msg_id="build-42")
    assert status == 200 and again["message"]["id"] == first["message"]["id"]
    # Each hook's ids are its own, and apart from the creator's own messages.
    status, other = await hook_post(client, other_path, text="other", client_msg_id="build-42")
    assert status == 201 and other["message"]["id"] != first["message"]["id"]
    own = await ana.post(room["id"], "by hand", client_msg_id="build-42")
    assert own["id"] not in {first["message"]["id"], other["message"]["id"]}
    history = await ana.call("GET", f"/api/v1/rooms/{room['id']}/messages", 200)
    assert [m["body"] for m in history["messages"]] == ["deployed", "other", "by hand"]
    status, body = await hook_post(client, path, text="x", client_msg_id="bad id!")
    assert status == 400 and body["error"]["code"] == "invalid_field"


async def test_a_new_webhook_on_a_reused_id_starts_afresh(
    client: TestClient[Any, Any], people: dict[str, Person]
) -> None:
    """SQLite hands a deleted webhook's id to the next one: the new one must neither
    find the old one's messages by client_msg_id nor inherit its rate-limit bucket."""
    ana = people["ana"]
    room = await ana.room("channel", "general")
    hooks = f"/api/v1/rooms/{room['id']}/webhooks"
    old, old_path = await make_hook(ana, room["id"])
    status, first = await hook_post(client, old_path, text="old", client_msg_id="build-1")
    assert status == 201
    for i in range(30):
        if (await client.post(old_path, json={"text": f"drain {i}"})).status == 429:
            break
    else:
        pytest.fail("never rate limited")
    await ana.call("DELETE", f"{hooks}/{old['id']}", 204)
    new, new_path = await make_hook(ana, room["id"])
    assert new["id"] == old["id"]  # the case this test is about
    status, fresh = await hook_post(client, new_path, text="new", client_msg_id="build-1")
    assert status == 201 and fresh["message"]["id"] != first["message"]["id"]
    history = await ana.call("GET", f"/api/v1/rooms/{room['id']}/messages", 200)
    assert history["messages"][-1]["id"] == fresh["message"]["id"]
    assert history["messages"][-1]["body"] == "new"


async def test_who_may_make_list_and_delete(
    client: TestClient[Any, Any], people: dict[str, Person]
) -> None:
    ana, bob, cid, gus, root = (people[n] for n in ("ana", "bob", "cid", "gus", "root"))
    channel = await ana.room("channel", "general", ["bob"])
    private = await ana.room("private", "inner", ["gus"])

    # Strangers cannot make, list or delete; guests cannot make.
    body = await cid.call(
        "POST", f"/api/v1/rooms/{channel['id']}/webhooks", 403, json={"bot_name": "x"}
    )
    assert body["error"]["code"] == "not_a_member"
    body = await cid.call(
        "POST", f"/api/v1/rooms/{private['id']}/webhooks", 404, json={"bot_name": "x"}
    )
    assert body["error"]["code"] == "room_not_found"
    await cid.call("GET", f"/api/v1/rooms/{private['id']}/webhooks", 404)
    await gus.call("POST", f"/api/v1/rooms/{private['id']}/webhooks", 403, json={"bot_name": "x"})
    body = await ana.call(
        "POST", f"/api/v1/rooms/{channel['id']}/webhooks", 400, json={"bot_name": "  "}
    )
    assert body["error"]["code"] == "missing_field"
    await ana.call("POST", f"/api/v1/rooms/{channel['id']}/webhooks", 400, json={})

    anas, _ = await make_hook(ana, channel["id"])
    bobs, _ = await make_hook(bob, channel["id"], "Bob's bot")
    base = f"/api/v1/rooms/{channel['id']}/webhooks"
    # A member who is neither its creator nor the owner may not delete it.
    await bob.call("DELETE", f"{base}/{anas['id']}", 403)
    await cid.call("DELETE", f"{base}/{anas['id']}", 404)
    await cid.call("DELETE", f"/api/v1/rooms/{private['id']}/webhooks/{anas['id']}", 404)
    # The owner may delete anyone's; the creator their own; an admin any.
    await ana.call("DELETE", f"{base}/{bobs['id']}", 204)
    await ana.call("DELETE", f"{base}/{bobs['id']}", 404)
    await root.call("DELETE", f"{base}/{anas['id']}", 204)
    again, _ = await make_hook(bob, channel["id"], "Bob again")
    await bob.call("DELETE", f"{base}/{again['id']}", 204)
    listed = await ana.call("GET", base, 200)
    assert listed["webhooks"] == []
    await ana.call("DELETE", f"{base}/abc", 400)


async def test_bad_requests_have_codes(
    client: TestClient[Any, Any], people: dict[str, Person]
) -> None:
    ana = people["ana"]
    room = await ana.room("channel", "general")
    _, path = await make_hook(ana, room["id"])
    headers = {"Content-Type": "application/json"}
    assert await error(client, path, data=b"{not json", headers=headers) == (400, "bad_json")
    assert await error(client, path, json={}) == (400, "missing_field")
    assert await error(client, path, json={"text": ""}) == (400, "invalid_field")
    assert await error(client, path, json={"text": 5}) == (400, "invalid_field")
    assert await error(client, path, json={"text": "x" * 10_001}) == (400, "invalid_field")
    assert await error(client, path, json={"text": "hi", "username": "x"}) == (
        400,
        "unknown_field",
    )
    assert await error(client, path, json={"text": "   "}) == (400, "empty_message")
    assert await error(client, path, data="text=hi") == (415, "unsupported_media_type")
    for wrong in ("/hooks/nope", f"{path}x", "/hooks/" + "A" * 43, "/hooks/%27%20OR%201=1"):
        assert await error(client, wrong, json={"text": "hi"}) == (404, "webhook_not_found")
    response = await client.get(path)
    assert response.status == 405


async def test_rate_limited_per_webhook(
    client: TestClient[Any, Any], people: dict[str, Person]
) -> None:
    ana = people["ana"]
    room = await ana.room("channel", "general")
    _, path = await make_hook(ana, room["id"])
    _, other_path = await make_hook(ana, room["id"], "Other bot")
    accepted = 0
    for i in range(60):
        response = await client.post(path, json={"text": f"spam {i}"})
        if response.status == 429:
            body = await response.json()
            assert body["error"]["code"] == "rate_limited"
            assert int(response.headers["Retry-After"]) >= 1
            break
        assert response.status == 201
        accepted += 1
    else:
        pytest.fail("never rate limited")
    assert accepted >= 20
    # Another webhook has its own bucket.
    status, _ = await hook_post(client, other_path, text="still fine")
    assert status == 201


async def test_stops_when_its_creator_leaves_or_is_switched_off(
    client: TestClient[Any, Any], people: dict[str, Person]
) -> None:
    ana, bob, root = people["ana"], people["bob"], people["root"]
    room = await ana.room("channel", "general", ["bob"])
    _, bobs_path = await make_hook(bob, room["id"], "Bob's bot")
    _, anas_path = await make_hook(ana, room["id"])
    assert (await hook_post(client, bobs_path, text="works"))[0] == 201

    await bob.call("POST", f"/api/v1/rooms/{room['id']}/leave", 204)
    assert await error(client, bobs_path, json={"text": "x"}) == (403, "webhook_disabled")

    await root.call("PATCH", "/api/v1/users/ana", 200, json={"active": False})
    assert await error(client, anas_path, json={"text": "x"}) == (403, "webhook_disabled")
    await root.call("PATCH", "/api/v1/users/ana", 200, json={"active": True})
    assert (await hook_post(client, anas_path, text="back"))[0] == 201


async def test_archived_rooms_take_no_webhook_posts(
    client: TestClient[Any, Any], people: dict[str, Person]
) -> None:
    ana = people["ana"]
    room = await ana.room("channel", "general")
    _, path = await make_hook(ana, room["id"])
    await ana.call("PATCH", f"/api/v1/rooms/{room['id']}", 200, json={"archived": True})
    assert await error(client, path, json={"text": "x"}) == (403, "archived")
    body = await ana.call(
        "POST", f"/api/v1/rooms/{room['id']}/webhooks", 403, json={"bot_name": "late"}
    )
    assert body["error"]["code"] == "archived"
