"""Messages over REST and the socket: send, retry, edit, delete, react, reply, mention,
typing, read markers, history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.chat_helpers import Person, make_trio


@pytest.fixture
async def trio(
    aiohttp_client: Any, make_app: Any, database_url: str
) -> AsyncIterator[tuple[Person, Person, Person, dict[str, Any]]]:
    client = await aiohttp_client(make_app(database_url=database_url))
    root, ana, bob, room = await make_trio(client, ["bob", "root"])
    yield root, ana, bob, room
    for person in (root, ana, bob):
        await person.close()


async def test_sequence_numbers_are_gapless_under_concurrent_senders(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    root, ana, bob, room = trio
    sends = [p.post(room["id"], f"{p.username} {i}") for i in range(10) for p in (ana, bob, root)]
    sent = await asyncio.gather(*sends)
    assert sorted(m["seq"] for m in sent) == list(range(1, 31))
    history = await ana.call("GET", f"/api/v1/rooms/{room['id']}/messages?limit=200", 200)
    assert [m["seq"] for m in history["messages"]] == list(range(1, 31))


async def test_retried_send_returns_the_same_message(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    _, ana, bob, room = trio
    path = f"/api/v1/rooms/{room['id']}/messages"
    first = await ana.call("POST", path, 201, json={"body": "once", "client_msg_id": "abc-1"})
    retries = await asyncio.gather(
        *(ana.call("POST", path, json={"body": "once", "client_msg_id": "abc-1"}) for _ in range(5))
    )
    assert {r["message"]["id"] for r in retries} == {first["message"]["id"]}
    bob_ws = await bob.socket()
    answer = await bob_ws.command("chat.send", room=room["id"], body="x", client_msg_id="abc-1")
    assert answer["ok"] and answer["duplicate"] is False  # ids are per sender
    again = await bob_ws.command("chat.send", room=room["id"], body="x", client_msg_id="abc-1")
    assert again["duplicate"] is True and again["message"]["id"] == answer["message"]["id"]
    history = await ana.call("GET", path, 200)
    assert [m["body"] for m in history["messages"]] == ["once", "x"]
    other = await ana.room("channel", "elsewhere")
    reused = await ana.call(
        "POST",
        f"/api/v1/rooms/{other['id']}/messages",
        409,
        json={"body": "once", "client_msg_id": "abc-1"},
    )
    assert reused["error"]["code"] == "client_msg_id_reused"
    await bob_ws.close()


async def test_live_events_reach_members_and_not_others(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    root, ana, bob, room = trio
    private = await ana.room("private", "ana-root", ["root"])
    bob_ws = await bob.socket()
    root_ws = await root.socket()
    await ana.post(private["id"], "not for bob")
    sent = await ana.post(room["id"], "for everyone", client_msg_id="k1")
    event = await bob_ws.next_event("chat.message")
    assert event["room"] == room["id"]
    for key in ("id", "seq", "sender", "body", "created_at"):
        assert event[key] == sent[key], key
    assert event["sender"]["username"] == "ana"
    # root gets both, in order; bob never gets the private one.
    first = await root_ws.next_event("chat.message")
    second = await root_ws.next_event("chat.message")
    assert [first["body"], second["body"]] == ["not for bob", "for everyone"]
    await bob_ws.no_event("chat.message")
    await bob_ws.close()
    await root_ws.close()


async def test_edit_delete_react_reply_and_mentions(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    root, ana, bob, room = trio
    bob_ws = await bob.socket()
    original = await ana.post(room["id"], "hi @bob and @nobody")
    assert original["mentions"] == ["bob"] and original["mentions_room"] is False
    await bob_ws.next_event("chat.message")

    edited = await ana.call(
        "PATCH", f"/api/v1/messages/{original['id']}", 200, json={"body": "hi @room"}
    )
    assert edited["message"]["edited_at"] is not None
    assert edited["message"]["mentions"] == [] and edited["message"]["mentions_room"] is True
    update = await bob_ws.next_event("chat.message_updated")
    assert update["body"] == "hi @room" and update["change"] > original["change"]
    await bob.call("PATCH", f"/api/v1/messages/{original['id']}", 403, json={"body": "mine now"})

    reply = await bob.post(room["id"], "answer", reply_to=original["id"])
    assert reply["reply_to"]["id"] == original["id"]
    assert reply["reply_to"]["excerpt"] == "hi @room"

    reacted = await bob.call("PUT", f"/api/v1/messages/{original['id']}/reactions/👍", 200)
    await root.call("PUT", f"/api/v1/messages/{original['id']}/reactions/👍", 200)
    await root.call("PUT", f"/api/v1/messages/{original['id']}/reactions/👍", 200)  # idempotent
    answer = await bob_ws.command("chat.react", message=original["id"], emoji=":tada:")
    assert answer["ok"]
    reactions = answer["message"]["reactions"]
    assert {r["emoji"]: (r["count"], sorted(r["users"])) for r in reactions} == {
        "👍": (2, ["bob", "root"]),
        ":tada:": (1, ["bob"]),
    }
    assert reacted["message"]["reactions"][0]["count"] == 1
    removed = await bob.call("DELETE", f"/api/v1/messages/{original['id']}/reactions/👍", 200)
    assert {r["emoji"]: r["count"] for r in removed["message"]["reactions"]} == {
        "👍": 1,
        ":tada:": 1,
    }

    await bob.call("DELETE", f"/api/v1/messages/{original['id']}", 403)
    gone = await ana.call("DELETE", f"/api/v1/messages/{original['id']}", 200)
    assert gone["message"]["deleted"] is True and gone["message"]["body"] == ""
    assert gone["message"]["reactions"] == []
    history = await bob.call("GET", f"/api/v1/rooms/{room['id']}/messages", 200)
    tombstone, answer_message = history["messages"]
    assert tombstone["deleted"] is True and tombstone["body"] == ""
    assert answer_message["reply_to"]["deleted"] is True
    assert answer_message["reply_to"]["excerpt"] == ""
    await bob.call("PUT", f"/api/v1/messages/{original['id']}/reactions/x", 409)
    # An administrator may delete anyone's message.
    await root.call("DELETE", f"/api/v1/messages/{reply['id']}", 200)
    await bob_ws.close()


async def test_bad_messages_are_refused_with_a_code(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    _, ana, _, room = trio
    path = f"/api/v1/rooms/{room['id']}/messages"
    cases = [
        ({"body": "   "}, 400, "empty_message"),
        ({"body": "x" * 10_001}, 400, "too_long"),
        ({"body": "bell \x07"}, 400, "invalid_field"),
        ({"body": "ok", "client_msg_id": "has space"}, 400, "invalid_field"),
        ({"body": "ok", "reply_to": 999_999}, 400, "invalid_field"),
        ({"body": "ok", "files": [12345]}, 400, "invalid_field"),
        ({"body": 5}, 400, "invalid_field"),
        ({"text": "wrong field"}, 400, "unknown_field"),
    ]
    for body, status, code in cases:
        answer = await ana.call("POST", path, status, json=body)
        assert answer["error"]["code"] == code, body
    ok = await ana.post(room["id"], "x" * 10_000)
    assert len(ok["body"]) == 10_000
    history = await ana.call("GET", path, 200)
    assert len(history["messages"]) == 1
    await ana.call("GET", "/api/v1/rooms/abc/messages", 400)
    await ana.call("GET", f"{path}?limit=0", 400)
    await ana.call("GET", f"{path}?before=5&after=9", 400)
    await ana.call("GET", "/api/v1/rooms/99999/messages", 404)


async def test_history_pages_backwards_and_forwards(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    _, ana, bob, room = trio
    for i in range(25):
        await ana.post(room["id"], f"m{i}")
    path = f"/api/v1/rooms/{room['id']}/messages"
    latest = await bob.call("GET", f"{path}?limit=10", 200)
    assert [m["seq"] for m in latest["messages"]] == list(range(16, 26))
    assert latest["more"] is True
    older = await bob.call("GET", f"{path}?limit=10&before=16", 200)
    assert [m["seq"] for m in older["messages"]] == list(range(6, 16))
    oldest = await bob.call("GET", f"{path}?limit=10&before=6", 200)
    assert [m["seq"] for m in oldest["messages"]] == list(range(1, 6))
    assert oldest["more"] is False
    forward = await bob.call("GET", f"{path}?limit=10&after=20", 200)
    assert [m["seq"] for m in forward["messages"]] == list(range(21, 26))
    assert forward["more"] is False
    ws = await bob.socket()
    answer = await ws.command("chat.history", room=room["id"], after=3, limit=2)
    assert [m["seq"] for m in answer["messages"]] == [4, 5] and answer["more"] is True
    await ws.close()


async def test_typing_is_ephemeral_and_read_markers_follow_the_user(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    _, ana, bob, room = trio
    bob_phone, bob_laptop = await bob.socket(), await bob.socket()
    ana_ws = await ana.socket()
    assert (await ana_ws.command("chat.typing", room=room["id"]))["ok"]
    typing = await bob_phone.next_event("chat.typing")
    assert typing["user"]["username"] == "ana" and typing["expires_in_ms"] > 0
    history = await bob.call("GET", f"/api/v1/rooms/{room['id']}/messages", 200)
    assert history["messages"] == []  # never stored

    message = await ana.post(room["id"], "read me")
    await bob_phone.next_event("chat.message")
    answer = await bob_phone.command("chat.read", room=room["id"], seq=message["seq"])
    assert answer["seq"] == message["seq"]
    marker = await bob_laptop.next_event("chat.read")
    assert marker == {"type": "chat.read", "room": room["id"], "seq": message["seq"]}
    await ana_ws.no_event("chat.read")
    for ws in (bob_phone, bob_laptop, ana_ws):
        await ws.close()


async def test_membership_changes_move_live_subscriptions(
    trio: tuple[Person, Person, Person, dict[str, Any]],
) -> None:
    _, ana, bob, _ = trio
    bob_ws = await bob.socket()
    later = await ana.room("private", "later")
    await ana.call("POST", f"/api/v1/rooms/{later['id']}/members", 200, json={"username": "bob"})
    joined = await bob_ws.next_event("room.joined")
    assert joined["room"]["id"] == later["id"]
    await asyncio.sleep(0.1)  # the subscription is made as the event passes
    await ana.post(later["id"], "welcome bob")
    event = await bob_ws.next_event("chat.message")
    # The system message about bob joining may come first.
    while event["body"] != "welcome bob":
        event = await bob_ws.next_event("chat.message")
    await ana.call("DELETE", f"/api/v1/rooms/{later['id']}/members/bob", 204)
    left = await bob_ws.next_event("room.left")
    assert left["room"] == later["id"]
    await asyncio.sleep(0.1)
    await ana.post(later["id"], "bob is gone")
    await bob_ws.no_event("chat.message")
    await bob_ws.close()
