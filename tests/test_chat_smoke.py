from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.chat_helpers import Person


async def test_two_people_chat(client: TestClient[Any, Any]) -> None:
    ana = await Person.create(client, "ana")
    bob = await Person.create(client, "bob")
    room = await ana.room("channel", "general", ["bob"])
    bob_ws = await bob.socket()
    sent = await ana.post(room["id"], "hello @bob", client_msg_id="m1")
    assert sent["seq"] == 1
    event = await bob_ws.next_event("chat.message")
    assert event["body"] == "hello @bob" and event["seq"] == 1 and event["mentions"] == ["bob"]
    again = await ana.call(
        "POST",
        f"/api/v1/rooms/{room['id']}/messages",
        200,
        json={"body": "hello @bob", "client_msg_id": "m1"},
    )
    assert again["message"]["id"] == sent["id"]
    rooms = await bob.call("GET", "/api/v1/rooms", 200)
    assert rooms["rooms"][0]["unread"] == 1 and rooms["rooms"][0]["mentions"] == 1
    answer = await bob_ws.command("chat.send", room=room["id"], body="hi ana")
    assert answer["ok"] and answer["message"]["seq"] == 2
    sync = await bob_ws.command("sync", rooms=[{"room": room["id"], "seq": 0}])
    assert [m["seq"] for m in sync["missed"][0]["messages"]] == [1, 2]
    await bob_ws.close()
    await ana.close()
    await bob.close()
