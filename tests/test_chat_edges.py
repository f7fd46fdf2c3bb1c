"""Hostile and odd input, and the corners of the chat rules. Runs on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.chat_helpers import Person, make_trio


@pytest.fixture
async def trio(
    aiohttp_client: Any, make_app: Any, database_url: str
) -> AsyncIterator[tuple[Person, Person, Person, dict[str, Any]]]:
    client = await aiohttp_client(make_app(database_url=database_url))
    root, ana, bob, room = await make_trio(client, ["bob"])
    yield root, ana, bob, room
    for person in (root, ana, bob):
        await person.close()


async def test_numbers_too_big_for_the_database_are_a_400(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    _, ana, _, room = trio
    huge, enormous = 2**31, 2**63
    for path in (f"/api/v1/rooms/{huge}", f"/api/v1/rooms/{huge}/messages"):
        answer = await ana.call("GET", path, 400)
        assert answer["error"]["code"] == "invalid_field"
    messages = f"/api/v1/rooms/{room['id']}/messages"
    for body in ({"body": "x", "reply_to": enormous}, {"body": "x", "files": [huge]}):
        assert (await ana.call("POST", messages, 400, json=body))["error"][
            "code"
        ] == "invalid_field"
    await ana.call("GET", f"{messages}?before={enormous}", 400)
    await ana.call("PATCH", f"/api/v1/messages/{enormous}", 400, json={"body": "x"})
    ws = await ana.socket()
    for command, fields in [
        ("chat.send", {"room": huge, "body": "x"}),
        ("sync", {"rooms": [{"room": room["id"], "seq": enormous}]}),
        ("chat.edit", {"message": enormous, "body": "x"}),
    ]:
        answer = await ws.command(command, **fields)
        assert answer["error"]["code"] == "invalid_field", command
    await ws.close()


async def test_nul_characters_are_refused_everywhere(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    _, ana, _, room = trio
    message = await ana.post(room["id"], r"a literal \u0000 in code is fine")
    assert message["body"] == r"a literal \u0000 in code is fine"
    for method, path, body in [
        ("POST", "/api/v1/rooms", {"kind": "dm", "members": ["a\u0000"]}),
        ("POST", f"/api/v1/rooms/{room['id']}/members", {"username": "a\u0000b"}),
        ("POST", f"/api/v1/rooms/{room['id']}/messages", {"body": "x\u0000y"}),
        ("PUT", f"/api/v1/messages/{message['id']}/reactions/%00", None),
        ("GET", "/api/v1/channels?q=%00", None),
        ("DELETE", f"/api/v1/rooms/{room['id']}/members/a%00", None),
    ]:
        answer = await ana.call(method, path, 400, json=body)
        assert answer["error"]["code"] == "invalid_field", path
    ws = await ana.socket()
    answer = await ws.command("chat.send", room=room["id"], body="x\u0000")
    assert answer["error"]["code"] == "bad_frame"
    assert (await ws.command("ping"))["ok"]
    await ws.close()


async def test_names_that_grow_when_lowercased(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    _, ana, _, _ = trio
    # 'İ'.lower() is two characters: 80 of them do not fit an 80-character key.
    answer = await ana.call(
        "POST", "/api/v1/rooms", 400, json={"kind": "channel", "name": "İ" * 80}
    )
    assert answer["error"]["code"] == "too_long"
    await ana.call("POST", "/api/v1/rooms", 201, json={"kind": "channel", "name": "İ" * 40})


async def test_archived_rooms_cannot_be_changed_by_the_side_door(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    _, ana, bob, room = trio
    path = f"/api/v1/rooms/{room['id']}"
    await ana.call("PATCH", path, 200, json={"archived": True})
    for body in ({"topic": "t", "archived": True}, {"name": "renamed"}, {"topic": "t"}):
        answer = await ana.call("PATCH", path, 403, json=body)
        assert answer["error"]["code"] == "archived"
    assert (await bob.call("POST", f"{path}/leave", 403))["error"]["code"] == "archived"
    await ana.call("DELETE", f"{path}/members/bob", 403)
    # Unarchiving and renaming in one go is fine.
    renamed = await ana.call("PATCH", path, 200, json={"archived": False, "name": "again"})
    assert renamed["room"]["name"] == "again" and renamed["room"]["archived"] is False


async def test_messages_in_other_peoples_rooms_look_like_missing_ones(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    root, ana, bob, _ = trio
    private = await ana.room("private", "ana only")
    secret = await ana.post(private["id"], "secret")
    for method, path, body in [
        ("PATCH", f"/api/v1/messages/{secret['id']}", {"body": "x"}),
        ("DELETE", f"/api/v1/messages/{secret['id']}", None),
        ("PUT", f"/api/v1/messages/{secret['id']}/reactions/x", None),
        ("PATCH", "/api/v1/messages/99999999", {"body": "x"}),
    ]:
        answer = await bob.call(method, path, 404, json=body)
        assert answer["error"]["code"] == "message_not_found", path
    # An administrator moderates without joining.
    removed = await root.call("DELETE", f"/api/v1/messages/{secret['id']}", 200)
    assert removed["message"]["deleted"] is True


async def test_removing_someone_not_in_the_room(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    root, ana, _, room = trio
    answer = await ana.call("DELETE", f"/api/v1/rooms/{room['id']}/members/root", 404)
    assert answer["error"]["code"] == "member_not_found"
    csrf = root.csrf
    await root.call("PATCH", "/api/v1/users/bob", 200, json={"active": False}, headers=csrf)
    other = await ana.room("private", "p")
    answer = await ana.call(
        "POST", f"/api/v1/rooms/{other['id']}/members", 400, json={"username": "bob"}
    )
    assert answer["error"]["code"] == "user_inactive"


async def test_no_event_when_nothing_changed(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    _, ana, bob, room = trio
    message = await ana.post(room["id"], "same")
    ws = await bob.socket()
    await ana.call("PATCH", f"/api/v1/messages/{message['id']}", 200, json={"body": "same"})
    await ana.call("DELETE", f"/api/v1/messages/{message['id']}/reactions/x", 200)
    await bob.call("POST", f"/api/v1/rooms/{room['id']}/join", 200)  # already a member
    await ws.no_event("chat.message_updated")
    await ws.no_event("room.updated")
    await ws.close()


async def test_a_removed_member_hears_nothing_more_from_the_room(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    _, ana, bob, room = trio
    ws = await bob.socket()
    await ana.call("DELETE", f"/api/v1/rooms/{room['id']}/members/bob", 204)
    await ws.next_event("room.left")
    await ana.call("PATCH", f"/api/v1/rooms/{room['id']}", 200, json={"topic": "after bob"})
    await ana.post(room["id"], "after bob")
    await ws.no_event("room.updated")
    await ws.no_event("chat.message")
    await ws.close()


async def test_replies_follow_the_message_they_quote(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    _, ana, bob, room = trio
    original = await ana.post(room["id"], "first version")
    reply = await bob.post(room["id"], "agreed", reply_to=original["id"])
    ws = await bob.socket()
    await ana.call("PATCH", f"/api/v1/messages/{original['id']}", 200, json={"body": "second"})
    updates = {(await ws.next_event("chat.message_updated"))["id"] for _ in range(2)}
    assert updates == {original["id"], reply["id"]}
    # A client that was away learns of the new quote through sync.
    answer = await ws.command(
        "sync", rooms=[{"room": room["id"], "seq": reply["seq"], "change": reply["change"]}]
    )
    [missed] = answer["missed"]
    quoted = {m["id"]: m for m in missed["updated"]}
    assert quoted[reply["id"]]["reply_to"]["excerpt"] == "second"
    assert missed["updated_complete"] is True
    await ws.close()


async def test_a_huge_sync_answer_still_arrives(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    _, ana, bob, room = trio
    for i in range(30):
        await ana.post(room["id"], f"{i} " + "x" * 9_990)
    ws = await bob.socket()
    answer = await ws.command("sync", rooms=[{"room": room["id"], "seq": 0}])
    assert len(answer["missed"][0]["messages"]) == 30
    assert (await ws.command("ping"))["ok"]
    await ws.close()
