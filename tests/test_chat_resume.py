"""Reconnecting without losing or repeating anything, and the socket fabric's limits."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from collab.appkeys import BUS
from signaling.protocol import RESUME_CLOSE_CODE
from tests.chat_helpers import Person


async def test_resume_gets_exactly_what_was_missed_then_live(
    client: TestClient[Any, Any],
) -> None:
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    room = await ana.room("channel", "team", ["bob"])
    bob_ws = await bob.socket()
    for i in range(3):
        await ana.post(room["id"], f"before {i}")
    seen = [(await bob_ws.next_event("chat.message"))["seq"] for _ in range(3)]
    assert seen == [1, 2, 3]
    await bob_ws.close()

    # Offline: new messages and an edit of one bob already has.
    for i in range(5):
        await ana.post(room["id"], f"while away {i}")
    first = (await ana.call("GET", f"/api/v1/rooms/{room['id']}/messages?limit=1&after=0", 200))[
        "messages"
    ][0]
    await ana.call("PATCH", f"/api/v1/messages/{first['id']}", 200, json={"body": "edited"})

    bob_ws = await bob.socket()

    # Messages keep coming while bob's sync is being answered.
    async def send_during() -> None:
        for i in range(15):
            await ana.post(room["id"], f"during {i}")

    sender = asyncio.create_task(send_during())
    answer = await bob_ws.command(
        "sync", rooms=[{"room": room["id"], "seq": 3, "change": first["change"]}]
    )
    await sender
    [missed] = answer["missed"]
    assert missed["room"] == room["id"] and missed["complete"] is True
    assert [m["body"] for m in missed["updated"]] == ["edited"]
    got = [m["seq"] for m in missed["messages"]]
    while True:
        try:
            event = await bob_ws.next_event("chat.message", timeout=1)
        except TimeoutError:
            break
        got.append(event["seq"])
    assert got == list(range(4, 4 + 5 + 15)), got  # in order, no gap, no repeat
    summary = answer["rooms"][0]
    assert summary["room"]["id"] == room["id"]
    await bob_ws.close()
    await ana.close()
    await bob.close()


async def test_sync_reports_rooms_the_user_left_and_new_ones(
    client: TestClient[Any, Any],
) -> None:
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    old = await ana.room("private", "old", ["bob"])
    await ana.call("DELETE", f"/api/v1/rooms/{old['id']}/members/bob", 204)
    new = await ana.room("private", "new", ["bob"])
    ws = await bob.socket()
    answer = await ws.command("sync", rooms=[{"room": old["id"], "seq": 0}])
    assert answer["gone"] == [old["id"]]
    assert [r["room"]["id"] for r in answer["rooms"]] == [new["id"]]
    assert answer["missed"] == []
    await ws.close()
    await ana.close()
    await bob.close()


async def test_a_client_that_stops_reading_is_cut_off_and_others_keep_up(
    client: TestClient[Any, Any],
) -> None:
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    room = await ana.room("channel", "team", ["bob"])
    reader = await ana.socket()
    await reader.command("ping")  # the first command starts live events at once
    # bob's socket starts, then never reads: aiohttp stops taking bytes from the
    # kernel, the kernel buffers fill, and the server's queue for bob fills up.
    stalled = await bob.http.ws_connect("/ws")
    await stalled.send_json({"id": "go", "type": "ping"})
    await asyncio.sleep(0.2)
    payload = b'{"type":"chat.message","room":%d,"seq":0,"body":"%s"}' % (room["id"], b"x" * 8000)
    bus = client.app[BUS]
    for _ in range(2000):
        await bus.publish(f"room:{room['id']}", payload)
        await asyncio.sleep(0)

    async def read_all() -> int:
        for _ in range(2000):
            await reader.next_event("chat.message")
        return 2000

    async def drain_stalled() -> tuple[int, int | None]:
        frames = 0
        async for message in stalled:
            if message.type == aiohttp.WSMsgType.TEXT:
                frames += 1
            else:
                break
        return frames, stalled.close_code

    async with asyncio.timeout(60):
        received, (frames, close_code) = await asyncio.gather(read_all(), drain_stalled())
    assert received == 2000
    assert close_code == RESUME_CLOSE_CODE
    assert frames < 2000  # it was cut off, not served everything
    await reader.close()
    await ana.close()
    await bob.close()


async def test_commands_are_rate_limited_per_user_and_the_socket_survives(
    client: TestClient[Any, Any],
) -> None:
    ana = await Person.create(client, "ana")
    ws = await ana.socket()
    answers = await asyncio.gather(*(ws.command("ping") for _ in range(120)))
    limited = [a for a in answers if "error" in a]
    assert limited, "120 commands at once must hit the limit"
    assert all(a["error"]["code"] == "rate_limited" for a in limited)
    assert all(a["error"]["retry_after_ms"] > 0 for a in limited)
    await asyncio.sleep(max(a["error"]["retry_after_ms"] for a in limited[:1]) / 1000 + 0.1)
    assert (await ws.command("ping"))["ok"] is True
    await ws.close()
    await ana.close()


async def test_bad_chat_commands_get_errors_and_the_socket_stays(
    client: TestClient[Any, Any],
) -> None:
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    private = await ana.room("private", "mine")
    ws = await bob.socket()
    cases = [
        ({"room": "one", "body": "x"}, "invalid_field"),
        ({"body": "x"}, "invalid_field"),
        ({"room": private["id"], "body": "x", "extra": 1}, "invalid_field"),
        ({"room": private["id"], "body": "x"}, "room_not_found"),
        ({"room": private["id"], "body": "x" * 20_001}, "invalid_field"),
    ]
    for fields, code in cases:
        answer = await ws.command("chat.send", **fields)
        assert answer["error"]["code"] == code, fields
        assert answer["error"]["message"]
    history = await ws.command("chat.history", room=private["id"])
    assert history["error"]["code"] == "room_not_found"
    typing = await ws.command("chat.typing", room=private["id"])
    assert typing["error"]["code"] == "room_not_found"
    read = await ws.command("chat.read", room=private["id"], seq=-1)
    assert read["error"]["code"] == "invalid_field"
    assert (await ws.command("ping"))["ok"] is True
    await ws.close()
    await ana.close()
    await bob.close()


async def test_a_silent_socket_is_closed_within_two_heartbeats(
    aiohttp_client: Any, make_app: Any
) -> None:
    client = await aiohttp_client(make_app(ws_heartbeat=1.0))
    ana = await Person.create(client, "ana")
    # autoping=False: the client does not answer the server's pings, like a dead peer.
    ws = await ana.http.ws_connect("/ws", autoping=False)
    started = asyncio.get_running_loop().time()
    async with asyncio.timeout(5):
        async for message in ws:
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break
    # Two intervals, plus slack for a busy machine.
    assert asyncio.get_running_loop().time() - started < 2 * 1.0 + 1.0
    assert ws.closed
    await ana.close()
