"""Rooms: channels, private rooms, DMs and group DMs, membership and who may do what.

Runs on SQLite and on PostgreSQL (``database_url``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.chat_helpers import Person


@pytest.fixture
async def people(
    aiohttp_client: Any, make_app: Any, database_url: str
) -> AsyncIterator[dict[str, Person]]:
    client = await aiohttp_client(make_app(database_url=database_url))
    crowd = {
        "root": await Person.create(client, "root", role="admin"),
        "ana": await Person.create(client, "ana"),
        "bob": await Person.create(client, "bob"),
        "cy": await Person.create(client, "cy"),
        "gus": await Person.create(client, "gus", role="guest"),
    }
    yield crowd
    for person in crowd.values():
        await person.close()


async def test_channel_life(people: dict[str, Person]) -> None:
    ana, bob, cy = people["ana"], people["bob"], people["cy"]
    room = await ana.room("channel", "General", ["bob"])
    assert room["kind"] == "channel" and room["name"] == "General" and room["member_count"] == 2

    listing = await cy.call("GET", "/api/v1/channels?q=gen", 200)
    assert [(c["name"], c["joined"], c["member_count"]) for c in listing["channels"]] == [
        ("General", False, 2)
    ]
    # Not a member yet: the channel is visible but its messages are not.
    await cy.call("GET", f"/api/v1/rooms/{room['id']}/messages", 403)
    joined = await cy.call("POST", f"/api/v1/rooms/{room['id']}/join", 200)
    assert joined["room"]["member_count"] == 3
    history = await cy.call("GET", f"/api/v1/rooms/{room['id']}/messages", 200)
    assert [m["meta"] for m in history["messages"]] == [{"event": "joined", "user": "cy"}]
    assert history["messages"][0]["kind"] == "system"

    renamed = await ana.call(
        "PATCH", f"/api/v1/rooms/{room['id']}", 200, json={"name": "Everyone", "topic": "Hi"}
    )
    assert renamed["room"]["name"] == "Everyone" and renamed["room"]["topic"] == "Hi"
    # Only the owner (or an admin) renames; any member sets the topic.
    await bob.call("PATCH", f"/api/v1/rooms/{room['id']}", 403, json={"name": "Mine"})
    await bob.call("PATCH", f"/api/v1/rooms/{room['id']}", 200, json={"topic": "Bob's"})

    await cy.call("POST", f"/api/v1/rooms/{room['id']}/leave", 204)
    await cy.call("GET", f"/api/v1/rooms/{room['id']}/messages", 403)
    events = [
        m["meta"]["event"]
        for m in (await ana.call("GET", f"/api/v1/rooms/{room['id']}/messages", 200))["messages"]
    ]
    assert events == ["joined", "renamed", "topic", "topic", "left"]


async def test_channel_names_are_unique_regardless_of_case(people: dict[str, Person]) -> None:
    await people["ana"].room("channel", "Random")
    clash = await people["bob"].call(
        "POST", "/api/v1/rooms", 409, json={"kind": "channel", "name": "random"}
    )
    assert clash["error"]["code"] == "name_taken"
    # Private rooms may share names, so creating a channel reveals nothing about them.
    await people["bob"].call("POST", "/api/v1/rooms", 201, json={"kind": "private", "name": "Hush"})
    await people["cy"].call("POST", "/api/v1/rooms", 201, json={"kind": "private", "name": "hush"})
    await people["cy"].call("POST", "/api/v1/rooms", 201, json={"kind": "channel", "name": "HUSH"})
    nameless = await people["bob"].call("POST", "/api/v1/rooms", 400, json={"kind": "channel"})
    assert nameless["error"]["code"] == "missing_field"
    bad_kind = await people["bob"].call("POST", "/api/v1/rooms", 400, json={"kind": "lobby"})
    assert bad_kind["error"]["code"] == "invalid_field"


async def test_private_rooms_are_invisible_to_strangers(people: dict[str, Person]) -> None:
    ana, bob, cy = people["ana"], people["bob"], people["cy"]
    room = await ana.room("private", "Secret", ["bob"])
    listing = await cy.call("GET", "/api/v1/channels", 200)
    assert all(c["id"] != room["id"] for c in listing["channels"])
    for method, path, body in [
        ("GET", f"/api/v1/rooms/{room['id']}", None),
        ("GET", f"/api/v1/rooms/{room['id']}/messages", None),
        ("POST", f"/api/v1/rooms/{room['id']}/messages", {"body": "hi"}),
        ("POST", f"/api/v1/rooms/{room['id']}/join", None),
        ("GET", f"/api/v1/rooms/{room['id']}/members", None),
        ("POST", f"/api/v1/rooms/{room['id']}/members", {"username": "cy"}),
    ]:
        answer = await cy.call(method, path, 404, json=body)
        assert answer["error"]["code"] == "room_not_found", path
    # A member may invite; the invited person then sees everything.
    added = await bob.call(
        "POST", f"/api/v1/rooms/{room['id']}/members", 200, json={"username": "cy"}
    )
    assert added["room"]["member_count"] == 3
    await cy.call("GET", f"/api/v1/rooms/{room['id']}/messages", 200)
    again = await bob.call(
        "POST", f"/api/v1/rooms/{room['id']}/members", 409, json={"username": "cy"}
    )
    assert again["error"]["code"] == "already_member"
    # Only the owner or an admin removes people.
    await bob.call("DELETE", f"/api/v1/rooms/{room['id']}/members/cy", 403)
    await ana.call("DELETE", f"/api/v1/rooms/{room['id']}/members/cy", 204)
    await cy.call("GET", f"/api/v1/rooms/{room['id']}/messages", 404)


async def test_direct_messages_are_found_again_not_doubled(people: dict[str, Person]) -> None:
    ana, bob, cy = people["ana"], people["bob"], people["cy"]
    first = await ana.call("POST", "/api/v1/rooms", 201, json={"kind": "dm", "members": ["bob"]})
    again = await bob.call("POST", "/api/v1/rooms", 200, json={"kind": "dm", "members": ["ana"]})
    assert first["room"]["id"] == again["room"]["id"]
    assert first["room"]["kind"] == "dm"
    assert sorted(u["username"] for u in first["room"]["members"]) == ["ana", "bob"]
    await cy.call("GET", f"/api/v1/rooms/{first['room']['id']}/messages", 404)

    group = await ana.call(
        "POST", "/api/v1/rooms", 201, json={"kind": "dm", "members": ["bob", "cy"]}
    )
    assert group["room"]["kind"] == "group"
    fixed = await ana.call(
        "POST", f"/api/v1/rooms/{group['room']['id']}/members", 400, json={"username": "root"}
    )
    assert fixed["error"]["code"] == "fixed_membership"
    await bob.call("POST", f"/api/v1/rooms/{group['room']['id']}/leave", 400)


async def test_group_dm_has_at_most_eight_people(aiohttp_client: Any, make_app: Any) -> None:
    client = await aiohttp_client(make_app())
    people = [await Person.create(client, f"p{i}") for i in range(9)]
    try:
        too_many = await people[0].call(
            "POST",
            "/api/v1/rooms",
            400,
            json={"kind": "dm", "members": [p.username for p in people[1:]]},
        )
        assert too_many["error"]["code"] == "too_many_members"
        eight = await people[0].call(
            "POST",
            "/api/v1/rooms",
            201,
            json={"kind": "dm", "members": [p.username for p in people[1:8]]},
        )
        assert eight["room"]["member_count"] == 8
    finally:
        for person in people:
            await person.close()


async def test_guests_only_see_rooms_they_are_put_in(people: dict[str, Person]) -> None:
    ana, gus = people["ana"], people["gus"]
    channel = await ana.room("channel", "Open")
    await gus.call("GET", "/api/v1/channels", 403)
    await gus.call("POST", f"/api/v1/rooms/{channel['id']}/join", 403)
    await gus.call("POST", "/api/v1/rooms", 403, json={"kind": "dm", "members": ["ana"]})
    refused = await ana.call(
        "POST", f"/api/v1/rooms/{channel['id']}/members", 400, json={"username": "gus"}
    )
    assert refused["error"]["code"] == "guest_not_allowed"
    shared = await ana.room("private", "With partner", ["gus"])
    rooms = await gus.call("GET", "/api/v1/rooms", 200)
    assert [r["room"]["id"] for r in rooms["rooms"]] == [shared["id"]]
    await gus.post(shared["id"], "hello from outside")


async def test_archived_rooms_are_read_only(people: dict[str, Person]) -> None:
    ana, bob = people["ana"], people["bob"]
    room = await ana.room("channel", "Old", ["bob"])
    await bob.call("PATCH", f"/api/v1/rooms/{room['id']}", 403, json={"archived": True})
    archived = await ana.call("PATCH", f"/api/v1/rooms/{room['id']}", 200, json={"archived": True})
    assert archived["room"]["archived"] is True
    refused = await bob.call(
        "POST", f"/api/v1/rooms/{room['id']}/messages", 403, json={"body": "anyone?"}
    )
    assert refused["error"]["code"] == "archived"
    history = await bob.call("GET", f"/api/v1/rooms/{room['id']}/messages", 200)
    assert history["messages"][-1]["meta"] == {"event": "archived"}
    listing = await people["cy"].call("GET", "/api/v1/channels", 200)
    assert listing["channels"] == []
    await people["root"].call("PATCH", f"/api/v1/rooms/{room['id']}", 200, json={"archived": False})
    await bob.post(room["id"], "back again")


async def test_room_list_has_unread_mentions_and_last_message(people: dict[str, Person]) -> None:
    ana, bob = people["ana"], people["bob"]
    room = await ana.room("channel", "Team", ["bob"])
    await ana.post(room["id"], "morning")
    await ana.post(room["id"], "@bob can you look?")
    await ana.post(room["id"], "@room standup in 5")
    await bob.post(room["id"], "sure")
    summary = (await bob.call("GET", "/api/v1/rooms", 200))["rooms"][0]
    assert summary["unread"] == 3  # bob's own message does not count
    assert summary["mentions"] == 2
    assert summary["last_message"]["body"] == "sure"
    marker = await bob.call("POST", f"/api/v1/rooms/{room['id']}/read", 200, json={"seq": 2})
    assert marker == {"seq": 2}
    summary = (await bob.call("GET", "/api/v1/rooms", 200))["rooms"][0]
    assert (summary["unread"], summary["mentions"], summary["last_read_seq"]) == (1, 1, 2)
    # The marker never moves back and never passes the end.
    read = f"/api/v1/rooms/{room['id']}/read"
    assert (await bob.call("POST", read, 200, json={"seq": 1}))["seq"] == 2
    assert (await bob.call("POST", read, 200, json={"seq": 999}))["seq"] == 4
    summary = (await bob.call("GET", "/api/v1/rooms", 200))["rooms"][0]
    assert (summary["unread"], summary["mentions"]) == (0, 0)
