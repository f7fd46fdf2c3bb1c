"""Presence end to end: sockets, timers, notifications, visibility, REST and SSE."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from collab.appkeys import PRESENCE
from tests.chat_helpers import Person, Socket
from tests.conftest import FakeClock

MIN = 60


async def presence_of(ws: Socket, username: str, timeout: float = 5) -> dict[str, Any]:
    """The next presence event about ``username`` (snapshots count too)."""
    async with asyncio.timeout(timeout):
        while True:
            event = await ws.events.get()
            if event["type"] == "presence" and event["username"] == username:
                return event
            if event["type"] == "presence.snapshot":
                for user in event["users"]:
                    if user["username"] == username:
                        return user


async def no_presence(ws: Socket, username: str, wait: float = 0.5) -> None:
    try:
        event = await presence_of(ws, username, timeout=wait)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected presence of {username}: {event}")


async def no_status_change(ws: Socket, username: str, status: str, wait: float = 0.5) -> None:
    """No event says ``username`` left ``status``; repeats of the known state may arrive
    (the snapshot and the live event can both carry the same change)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while (left := deadline - loop.time()) > 0:
        try:
            event = await presence_of(ws, username, timeout=left)
        except TimeoutError:
            return
        if event["status"] != status:
            raise AssertionError(f"unexpected presence of {username}: {event}")


async def wait_status(ws: Socket, username: str, status: str) -> dict[str, Any]:
    while True:
        event = await presence_of(ws, username)
        if event["status"] == status:
            return event


async def test_two_devices_idle_away_and_back(
    client: TestClient[Any, Any], clock: FakeClock
) -> None:
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    await ana.room("channel", "team", ["bob"])
    watcher = await bob.socket()
    phone, laptop = await ana.socket(), await ana.socket()
    await wait_status(watcher, "ana", "available")
    presence = client.app[PRESENCE]

    clock.advance(9 * MIN)
    assert (await laptop.command("presence.activity"))["ok"]
    clock.advance(2 * MIN)  # the phone is idle 11 min, the laptop 2 min
    presence.poke_timers()
    await no_status_change(watcher, "ana", "available")

    clock.advance(9 * MIN)  # now both are idle
    presence.poke_timers()
    away = await wait_status(watcher, "ana", "away")
    assert away["reason"].startswith("idle since ")

    await phone.command("presence.activity")
    back = await wait_status(watcher, "ana", "available")
    assert back["reason"] is None

    await phone.close()
    await laptop.close()
    offline = await wait_status(watcher, "ana", "offline")
    assert offline["last_seen"] == clock.now
    for ws in (watcher,):
        await ws.close()


async def test_manual_busy_with_an_end_and_custom_text(
    client: TestClient[Any, Any], clock: FakeClock
) -> None:
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    await ana.room("channel", "team", ["bob"])
    watcher = await bob.socket()
    ana_ws = await ana.socket()
    await wait_status(watcher, "ana", "available")
    answer = await ana_ws.command(
        "presence.set",
        status="busy",
        until=clock.now + 30 * MIN * 1000,
        text="Dentist, back at 2",
        emoji="🦷",
        text_until=clock.now + 10 * MIN * 1000,
    )
    assert answer["presence"]["status"] == "busy"
    busy = await wait_status(watcher, "ana", "busy")
    assert busy["text"] == "Dentist, back at 2" and busy["until"] == clock.now + 30 * MIN * 1000
    clock.advance(11 * MIN)
    client.app[PRESENCE].poke_timers()
    cleared = await presence_of(watcher, "ana")
    assert (cleared["status"], cleared["text"]) == ("busy", None)
    clock.advance(20 * MIN)
    await ana_ws.command("presence.activity")
    assert (await wait_status(watcher, "ana", "available"))["text"] is None
    # The choice survives reconnecting.
    await ana_ws.command("presence.set", status="dnd")
    await ana_ws.close()
    again = await ana.socket()
    snapshot = await wait_status(watcher, "ana", "dnd")
    assert snapshot["status"] == "dnd"
    bad = await again.command("presence.set", status="sleeping")
    assert bad["error"]["code"] == "invalid_field"
    await again.close()
    await watcher.close()


async def test_a_call_makes_the_user_busy(client: TestClient[Any, Any]) -> None:
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    await ana.room("channel", "team", ["bob"])
    watcher = await bob.socket()
    ana_ws = await ana.socket()
    await wait_status(watcher, "ana", "available")
    await client.app[PRESENCE].set_in_call(ana.user_id, "call-1")
    assert (await wait_status(watcher, "ana", "busy"))["reason"] == "in a call"
    await client.app[PRESENCE].set_in_call(ana.user_id, None)
    await wait_status(watcher, "ana", "available")
    await ana_ws.close()
    await watcher.close()


async def test_presence_is_only_seen_by_people_who_share_a_room(
    client: TestClient[Any, Any],
) -> None:
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    carol = await Person.create(client, "carol")
    gus = await Person.create(client, "gus", role="guest")
    await ana.room("channel", "team", ["bob"])
    carol_ws, bob_ws = await carol.socket(), await bob.socket()
    ana_ws = await ana.socket()
    await wait_status(bob_ws, "ana", "available")
    await ana_ws.command("presence.set", status="busy")
    await wait_status(bob_ws, "ana", "busy")
    await no_presence(carol_ws, "ana")
    # Members may look anyone up explicitly; guests only their rooms' people.
    looked_up = await carol.call("GET", "/api/v1/users/ana/presence", 200)
    assert looked_up["status"] == "busy"
    await gus.call("GET", "/api/v1/users/ana/presence", 403)
    assert (await gus.call("GET", "/api/v1/users/gus/presence", 200))["status"] == "offline"
    # Once they share a room, the guest sees her too, live.
    gus_ws = await gus.socket()
    await ana.room("private", "with gus", ["gus"])
    event = await presence_of(gus_ws, "ana")
    assert event["status"] == "busy"
    for ws in (carol_ws, bob_ws, ana_ws, gus_ws):
        await ws.close()


async def test_notifications_follow_status_and_room_settings(
    client: TestClient[Any, Any], clock: FakeClock
) -> None:
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    channel = await ana.room("channel", "team", ["bob"])
    dm = await ana.call("POST", "/api/v1/rooms", 201, json={"kind": "dm", "members": ["bob"]})
    bob_ws = await bob.socket()
    await bob_ws.command("ping")

    await ana.post(channel["id"], "no one is named")
    await ana.post(dm["room"]["id"], "hello bob")
    notice = await bob_ws.next_event("notify")
    assert (notice["reason"], notice["silent"], notice["excerpt"]) == ("dm", False, "hello bob")
    await bob_ws.no_event("notify")

    await bob_ws.command("presence.set", status="dnd")
    await ana.post(channel["id"], "@bob look")
    quiet = await bob_ws.next_event("notify")
    assert (quiet["reason"], quiet["silent"]) == ("mention", True)

    await bob_ws.command("presence.set", status="busy")
    await ana.post(channel["id"], "@room standup")
    busy = await bob_ws.next_event("notify")
    assert (busy["reason"], busy["silent"]) == ("room", False)
    await bob.call("PATCH", "/api/v1/me/presence/settings", 200, json={"silence_when_busy": True})
    await ana.post(channel["id"], "@bob again")
    assert (await bob_ws.next_event("notify"))["silent"] is True

    await bob_ws.command("presence.set", status="available")
    await bob.call("PUT", f"/api/v1/rooms/{channel['id']}/notify", 200, json={"level": "mute"})
    await ana.post(channel["id"], "@bob muted room")
    await bob_ws.no_event("notify")
    await bob.call("PUT", f"/api/v1/rooms/{channel['id']}/notify", 200, json={"level": "all"})
    await ana.post(channel["id"], "anything")
    assert (await bob_ws.next_event("notify"))["reason"] == "all"

    # Quiet hours act as do-not-disturb for notifications.
    minute = (clock.now // 60_000) % (24 * 60)
    await bob.call(
        "PATCH",
        "/api/v1/me/presence/settings",
        200,
        json={"quiet_start": (minute - 5) % 1440, "quiet_end": (minute + 5) % 1440},
    )
    await ana.post(dm["room"]["id"], "late night")
    assert (await bob_ws.next_event("notify"))["silent"] is True

    rooms = {r["room"]["id"]: r for r in (await bob.call("GET", "/api/v1/rooms", 200))["rooms"]}
    assert rooms[channel["id"]]["unread"] == 6  # counts rise, muted or not
    assert rooms[channel["id"]]["mentions"] == 4
    await bob.call("PUT", f"/api/v1/rooms/{channel['id']}/notify", 400, json={"level": "loud"})
    await bob_ws.close()


async def test_rest_and_sse_with_a_token(client: TestClient[Any, Any]) -> None:
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    await ana.room("channel", "team", ["bob"])
    token = (await bob.call("POST", "/api/v1/tokens", 201, json={"name": "status light"}))["token"]
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base_url=str(client.make_url("/"))) as program:
        many = await (
            await program.get("/api/v1/presence?users=ana,bob,nobody", headers=auth)
        ).json()
        assert [(u["username"], u["status"]) for u in many["users"]] == [
            ("ana", "offline"),
            ("bob", "offline"),
        ]
        response = await program.get("/api/v1/presence/stream", headers=auth)
        assert response.headers["Content-Type"].startswith("text/event-stream")

        async def next_event() -> dict[str, Any]:
            data = None
            while True:
                line = (await response.content.readline()).decode().strip()
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and data is not None:
                    return data

        initial = {}
        for _ in range(2):
            event = await asyncio.wait_for(next_event(), 5)
            initial[event["username"]] = event["status"]
        assert initial == {"ana": "offline", "bob": "offline"}
        ana_ws = await ana.socket()
        change = await asyncio.wait_for(next_event(), 5)
        assert (change["username"], change["status"]) == ("ana", "available")
        await ana.call("PUT", "/api/v1/me/presence", 200, json={"status": "dnd", "text": "focus"})
        change = await asyncio.wait_for(next_event(), 5)
        assert (change["status"], change["text"]) == ("dnd", "focus")
        response.close()
        await ana_ws.close()
    single = await bob.call("GET", "/api/v1/users/ana/presence", 200)
    assert single["status"] == "offline" and single["last_seen"] is not None
    await bob.call("GET", "/api/v1/presence?users=", 400)
    await bob.call("PATCH", "/api/v1/me/presence/settings", 400, json={"time_zone": "Mars/Olympus"})
    settings = await bob.call(
        "PATCH", "/api/v1/me/presence/settings", 200, json={"time_zone": "Europe/Berlin"}
    )
    assert settings["time_zone"] == "Europe/Berlin"


async def test_a_burst_of_changes_sends_one_event(client: TestClient[Any, Any]) -> None:
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    await ana.room("channel", "team", ["bob"])
    watcher = await bob.socket()
    ana_ws = await ana.socket()
    await wait_status(watcher, "ana", "available")
    presence = client.app[PRESENCE]
    presence.flush_delay_s = 1.0  # a window wide enough for a slow machine
    for status in ("busy", "dnd", "away", "busy"):
        await presence.set_choice(
            ana.user_id, choice=status, until=None, text=None, emoji=None, text_until=None
        )
    event = await presence_of(watcher, "ana")
    # Ana's arrival may be announced a second time, late, on a slow machine (the
    # snapshot already said it): that is from before the burst, which never says it.
    while event["status"] == "available":
        event = await presence_of(watcher, "ana")
    assert event["status"] == "busy"
    await no_presence(watcher, "ana", wait=1.5)
    # Flipping away and straight back within the window announces nothing at all.
    await presence.set_choice(
        ana.user_id, choice="dnd", until=None, text=None, emoji=None, text_until=None
    )
    await presence.set_choice(
        ana.user_id, choice="busy", until=None, text=None, emoji=None, text_until=None
    )
    await no_presence(watcher, "ana", wait=1.5)
    await ana_ws.close()
    await watcher.close()


async def test_a_newcomer_to_a_shared_room_is_followed_at_once(
    client: TestClient[Any, Any],
) -> None:
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    cy = await Person.create(client, "cy")
    room = await ana.room("channel", "team", ["bob"])
    bob_ws = await bob.socket()
    await bob_ws.command("ping")
    cy_ws = await cy.socket()
    await cy_ws.command("ping")
    await no_presence(bob_ws, "cy")  # no shared room yet
    await cy.call("POST", f"/api/v1/rooms/{room['id']}/join", 200)
    assert (await presence_of(bob_ws, "cy"))["status"] == "available"
    await cy_ws.command("presence.set", status="dnd")
    await wait_status(bob_ws, "cy", "dnd")
    # And once cy leaves again, bob stops hearing about cy.
    await cy.call("POST", f"/api/v1/rooms/{room['id']}/leave", 204)
    await asyncio.sleep(0.3)
    await cy_ws.command("presence.set", status="busy")
    await no_presence(bob_ws, "cy", wait=1.0)
    await bob_ws.close()
    await cy_ws.close()


async def test_status_text_refuses_control_characters(client: TestClient[Any, Any]) -> None:
    ana = await Person.create(client, "ana")
    for text in ("bell\u0007", "evil\u202etxt"):
        answer = await ana.call(
            "PUT", "/api/v1/me/presence", 400, json={"status": "busy", "text": text}
        )
        assert answer["error"]["code"] == "invalid_field"
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # joined by zero-width joiners
    ok = await ana.call("PUT", "/api/v1/me/presence", 200, json={"status": "busy", "emoji": family})
    assert ok["emoji"] == family


async def test_the_event_stream_ends_with_the_token(client: TestClient[Any, Any]) -> None:
    ana = await Person.create(client, "ana")
    made = await ana.call("POST", "/api/v1/tokens", 201, json={"name": "light"})
    async with aiohttp.ClientSession(base_url=str(client.make_url("/"))) as program:
        response = await program.get(
            "/api/v1/presence/stream", headers={"Authorization": f"Bearer {made['token']}"}
        )
        assert response.status == 200
        await ana.call("DELETE", f"/api/v1/tokens/{made['id']}", 204)
        async with asyncio.timeout(5):
            while await response.content.readline():
                pass  # read until the server ends the stream
        assert response.content.at_eof()


async def test_an_impossible_calendar_host_is_a_clear_error(client: TestClient[Any, Any]) -> None:
    ana = await Person.create(client, "ana")
    url = "http://" + "a" * 300 + ".example/cal.ics"
    answer = await ana.call("PUT", "/api/v1/me/calendar", 400, json={"url": url})
    assert answer["error"]["code"] == "calendar_bad_url"
