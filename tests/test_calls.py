"""Calls end to end over real sockets: ringing, answering, leaving, the room's history,
presence and the call log. Tests taking ``database_url`` run on SQLite and PostgreSQL.

The node runs its real media server; ``test_calls_media.py`` sends audio and
video through it with aiortc peers. These tests are about the call's life.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from typing import Any

from aiohttp.test_utils import TestClient

from collab.appkeys import CALLS
from tests.call_helpers import ana_and_bob_online
from tests.chat_helpers import Person, Socket
from tests.conftest import FakeClock, NodePair

RING = 0.6  # seconds: the ring timeout these tests run with
GRACE = 0.4


async def node(aiohttp_client: Any, make_app: Any, database_url: str, **settings: Any) -> Any:
    settings.setdefault("call_ring_timeout", RING)
    settings.setdefault("call_rejoin_grace", GRACE)
    return await aiohttp_client(make_app(database_url=database_url, **settings))


async def people(client: TestClient[Any, Any], *names: str) -> list[Person]:
    return [await Person.create(client, name) for name in names]


async def wait_status(ws: Socket, username: str, status: str, timeout: float = 5) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            event = await ws.events.get()
            found = []
            if event["type"] == "presence" and event["username"] == username:
                found = [event]
            elif event["type"] == "presence.snapshot":
                found = [u for u in event["users"] if u["username"] == username]
            for presence in found:
                if presence["status"] == status:
                    return presence


async def history_meta(person: Person, room_id: int) -> list[dict[str, Any]]:
    body = await person.call("GET", f"/api/v1/rooms/{room_id}/messages", 200)
    return [m["meta"] for m in body["messages"] if m["kind"] == "system"]


async def state_with(ws: Socket, predicate: Any, timeout: float = 5) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            event = await ws.next_event("call.state", timeout=timeout)
            if predicate(event):
                return event


def names(state: dict[str, Any]) -> list[str]:
    return sorted(p["user"]["username"] for p in state["participants"])


async def test_ring_accept_decline_and_end_with_duration(
    aiohttp_client: Any, make_app: Any, database_url: str, clock: FakeClock
) -> None:
    client = await node(aiohttp_client, make_app, database_url, call_ring_timeout=30)
    ana, bob, cy = await people(client, "ana", "bob", "cy")
    room = await ana.room("private", "team", ["bob", "cy"])
    ana_ws, bob_phone, bob_laptop, cy_ws = (
        await ana.socket(),
        await bob.socket(),
        await bob.socket(),
        await cy.socket(),
    )
    for ws in (ana_ws, bob_phone, bob_laptop, cy_ws):
        await ws.command("ping")
    await wait_status(cy_ws, "bob", "available")

    started = await ana_ws.command("call.start", room=room["id"], video=True)
    assert started["ok"], started
    call_id = started["call"]["call"]
    assert names(started["call"]) == ["ana"]
    assert sorted(u["username"] for u in started["call"]["ringing"]) == ["bob", "cy"]
    assert started["media"] is True and started["ice_servers"] == []
    assert started["participant"].startswith(f"{call_id}.")

    # Every socket of every callee rings, out loud.
    for ws in (bob_phone, bob_laptop, cy_ws):
        ring = await ws.next_event("call.ring")
        assert ring["call"] == call_id and ring["room"] == room["id"]
        assert ring["caller"]["username"] == "ana" and ring["video"] is True
        assert ring["quiet"] is False and ring["room_name"] == "team"
        assert ring["expires_at"] == ring["started_at"] + 30_000

    # Bob answers on his phone: his laptop stops ringing.
    accepted = await bob_phone.command("call.accept", call=call_id)
    assert accepted["ok"] and names(accepted["call"]) == ["ana", "bob"]
    stopped = await bob_laptop.next_event("call.ring_ended")
    assert stopped == {"type": "call.ring_ended", "call": call_id, "reason": "answered"}
    assert (await wait_status(cy_ws, "bob", "busy"))["reason"] == "in a call"

    # Cy declines with a line of text, which the people in the call see.
    assert (await cy_ws.command("call.decline", call=call_id, text="  In a meeting "))["ok"]
    declined = await ana_ws.next_event("call.declined")
    assert declined["user"]["username"] == "cy" and declined["text"] == "In a meeting"
    assert (await cy_ws.next_event("call.ring_ended"))["reason"] == "declined"
    again = await cy_ws.command("call.decline", call=call_id)
    assert again["error"]["code"] == "not_ringing"

    # The room sees who is in the call.
    state = await state_with(cy_ws, lambda s: s["ringing"] == [])
    assert names(state) == ["ana", "bob"] and state["answered_at"] is not None

    clock.advance(75)
    assert (await bob_phone.command("call.leave", call=call_id))["ok"]
    await wait_status(cy_ws, "bob", "available")
    assert (await ana_ws.command("call.leave", call=call_id))["ok"]
    ended = await cy_ws.next_event("call.ended")
    assert ended["call"] == call_id and ended["outcome"] == "completed"
    assert ended["duration_ms"] == 75_000
    assert sorted(p["username"] for p in ended["participants"]) == ["ana", "bob"]

    metas = await history_meta(cy, room["id"])
    assert metas[-2] == {"event": "call_started", "call": call_id, "video": True}
    assert metas[-1] == {
        "event": "call_ended",
        "call": call_id,
        "video": True,
        "duration_ms": 75_000,
        "participants": ["ana", "bob"],
    }
    body = await cy.call("GET", f"/api/v1/rooms/{room['id']}/messages", 200)
    assert body["messages"][-1]["body"] == "Call ended after 1 min 15 s, with ana and bob"

    log = await cy.call("GET", f"/api/v1/rooms/{room['id']}/calls", 200)
    [entry] = log["calls"]
    assert entry["id"] == call_id and entry["outcome"] == "completed" and entry["video"]
    assert entry["ended_at"] - entry["started_at"] == 75_000
    assert [(s["user"]["username"], s["left_at"] is not None) for s in entry["participants"]] == [
        ("ana", True),
        ("bob", True),
    ]
    for ws in (ana_ws, bob_phone, bob_laptop, cy_ws):
        await ws.close()
    for person in (ana, bob, cy):
        await person.close()


async def test_dnd_is_not_rung_and_the_call_rings_out_as_missed(
    aiohttp_client: Any, make_app: Any, database_url: str
) -> None:
    client = await node(aiohttp_client, make_app, database_url)
    ana, bob, [dm], ana_ws, bob_ws = await ana_and_bob_online(client, client)
    assert (await bob_ws.command("presence.set", status="dnd"))["ok"]

    started = await ana_ws.command("call.start", room=dm["id"])
    call_id = started["call"]["call"]
    assert started["call"]["ringing"] == []  # bob is on dnd: not rung at all
    await bob_ws.no_event("call.ring", wait=RING / 2)
    ended = await ana_ws.next_event("call.ended", timeout=RING * 5)
    assert (ended["call"], ended["outcome"], ended["reason"]) == (call_id, "missed", "no_answer")
    assert ended["duration_ms"] == 0

    last = (await history_meta(bob, dm["id"]))[-1]
    assert last == {
        "event": "call_missed",
        "call": call_id,
        "video": False,
        "reason": "no_answer",
        "missed": ["bob"],
        "declined": [],
    }
    log = await ana.call("GET", f"/api/v1/rooms/{dm['id']}/calls", 200)
    assert log["calls"][0]["outcome"] == "missed" and log["calls"][0]["answered_at"] is None
    await ana_ws.close()
    await bob_ws.close()


async def test_ring_out_tells_every_callee_socket(
    aiohttp_client: Any, make_app: Any, database_url: str
) -> None:
    client = await node(aiohttp_client, make_app, database_url)
    _ana, _bob, [dm], ana_ws, bob_ws = await ana_and_bob_online(client, client)
    call_id = (await ana_ws.command("call.start", room=dm["id"]))["call"]["call"]
    assert (await bob_ws.next_event("call.ring"))["call"] == call_id
    stopped = await bob_ws.next_event("call.ring_ended", timeout=RING * 5)
    assert stopped["reason"] == "timeout"
    ended = await bob_ws.next_event("call.ended")
    assert ended["outcome"] == "missed"
    # The call is over: answering now is refused.
    late = await bob_ws.command("call.accept", call=call_id)
    assert late["error"]["code"] == "call_ended"
    await ana_ws.close()
    await bob_ws.close()


async def test_declined_by_everyone_ends_at_once_and_cancel_while_ringing(
    aiohttp_client: Any, make_app: Any, database_url: str
) -> None:
    client = await node(aiohttp_client, make_app, database_url, call_ring_timeout=30)
    _ana, bob, [dm], ana_ws, bob_ws = await ana_and_bob_online(client, client)

    first = (await ana_ws.command("call.start", room=dm["id"]))["call"]["call"]
    await bob_ws.next_event("call.ring")
    assert (await bob_ws.command("call.decline", call=first, text="Can't talk"))["ok"]
    assert (await ana_ws.next_event("call.declined"))["text"] == "Can't talk"
    ended = await ana_ws.next_event("call.ended")
    assert (ended["call"], ended["outcome"]) == (first, "declined")

    second = (await ana_ws.command("call.start", room=dm["id"]))["call"]["call"]
    await bob_ws.next_event("call.ring")
    refused = await bob_ws.command("call.cancel", call=second)
    assert refused["error"]["code"] == "forbidden"  # only the caller cancels
    assert (await ana_ws.command("call.cancel", call=second))["ok"]
    stopped = await bob_ws.next_event("call.ring_ended")
    assert stopped == {"type": "call.ring_ended", "call": second, "reason": "cancelled"}
    assert (await bob_ws.next_event("call.ended"))["outcome"] == "cancelled"

    metas = await history_meta(bob, dm["id"])
    assert [(m["event"], m.get("reason")) for m in metas] == [
        ("call_started", None),
        ("call_missed", "declined"),
        ("call_started", None),
        ("call_missed", "cancelled"),
    ]
    assert metas[1]["declined"] == ["bob"] and metas[3]["missed"] == ["bob"]
    body = await bob.call("GET", f"/api/v1/rooms/{dm['id']}/messages", 200)
    assert [m["body"] for m in body["messages"]] == [
        "ana started a call",
        "ana's call was declined",
        "ana started a call",
        "Missed call from ana",
    ]
    log = await bob.call("GET", f"/api/v1/rooms/{dm['id']}/calls", 200)
    assert [c["outcome"] for c in log["calls"]] == ["cancelled", "declined"]
    page = await bob.call("GET", f"/api/v1/rooms/{dm['id']}/calls?limit=1&before={second}", 200)
    assert [c["id"] for c in page["calls"]] == [first]
    await ana_ws.close()
    await bob_ws.close()


async def test_a_second_call_rings_quietly_and_answering_moves_the_user(
    aiohttp_client: Any, make_app: Any, database_url: str
) -> None:
    client = await node(aiohttp_client, make_app, database_url, call_ring_timeout=30)
    ana, bob, cy = await people(client, "ana", "bob", "cy")
    team = await bob.room("private", "team", ["cy"])
    dm = await ana.room("dm", members=["bob"])
    ana_ws, bob_ws, cy_ws = await ana.socket(), await bob.socket(), await cy.socket()

    team_call = (await bob_ws.command("call.start", room=team["id"]))["call"]["call"]
    assert (await cy_ws.command("call.accept", call=team_call))["ok"]

    dm_call = (await ana_ws.command("call.start", room=dm["id"]))["call"]["call"]
    ring = await bob_ws.next_event("call.ring")
    assert ring["call"] == dm_call and ring["quiet"] is True

    moved = await bob_ws.command("call.accept", call=dm_call)
    assert moved["ok"] and moved["left"] == team_call
    assert names(moved["call"]) == ["ana", "bob"]
    team_state = await state_with(cy_ws, lambda s: s["call"] == team_call and names(s) == ["cy"])
    assert team_state["participants"][0]["connected"] is True
    # Bob is in one call only: leaving the team call now is refused.
    assert (await bob_ws.command("call.leave", call=team_call))["error"]["code"] == "not_in_call"
    for ws in (ana_ws, bob_ws, cy_ws):
        await ws.close()


async def test_join_an_ongoing_call_and_tracks_show_in_the_state(
    aiohttp_client: Any, make_app: Any, database_url: str
) -> None:
    client = await node(aiohttp_client, make_app, database_url, call_ring_timeout=30)
    ana, bob, cy = await people(client, "ana", "bob", "cy")
    room = await ana.room("channel", "all-hands", ["bob"])
    ana_ws, bob_ws = await ana.socket(), await bob.socket()
    call_id = (await ana_ws.command("call.start", room=room["id"]))["call"]["call"]
    assert (await bob_ws.command("call.join", call=call_id))["ok"]

    # Cy joins the channel later and walks into the call, unrung.
    await cy.call("POST", f"/api/v1/rooms/{room['id']}/join", 200)
    cy_ws = await cy.socket()
    snapshot = await cy_ws.next_event("call.state")
    assert snapshot["call"] == call_id and names(snapshot) == ["ana", "bob"]
    joined = await cy_ws.command("call.join", call=call_id)
    assert names(joined["call"]) == ["ana", "bob", "cy"]

    tracks = await bob_ws.command(
        "call.tracks",
        call=call_id,
        tracks={"mic-1": {"source": "mic", "muted": True}, "cam-1": {"source": "camera"}},
    )
    assert tracks["ok"]
    state = await state_with(
        cy_ws,
        lambda s: any(p["tracks"] for p in s["participants"] if p["user"]["id"] == bob.user_id),
    )
    [bob_view] = [p for p in state["participants"] if p["user"]["username"] == "bob"]
    assert bob_view["tracks"]["cam-1"] == {"source": "camera", "muted": False}
    assert (bob_view["muted"], bob_view["camera"], bob_view["screen"]) == (True, True, False)

    exists = await cy_ws.command("call.start", room=room["id"])
    assert exists["error"]["code"] == "call_exists" and exists["error"]["call"] == call_id
    for ws in (ana_ws, bob_ws, cy_ws):
        await ws.close()


async def test_refusals_are_error_answers(
    aiohttp_client: Any, make_app: Any, database_url: str
) -> None:
    client = await node(aiohttp_client, make_app, database_url, call_ring_timeout=30)
    ana, bob, eve = await people(client, "ana", "bob", "eve")
    room = await ana.room("private", "secret", ["bob"])
    ana_ws, bob_ws, eve_ws = await ana.socket(), await bob.socket(), await eve.socket()
    call_id = (await ana_ws.command("call.start", room=room["id"]))["call"]["call"]

    async def code(ws: Socket, type_: str, **fields: Any) -> str:
        answer = await ws.command(type_, **fields)
        assert "error" in answer, answer
        return str(answer["error"]["code"])

    # Not a member: the call and the room do not exist for eve.
    assert await code(eve_ws, "call.start", room=room["id"]) == "room_not_found"
    assert await code(eve_ws, "call.join", call=call_id) == "call_not_found"
    assert await code(eve_ws, "call.decline", call=call_id) == "call_not_found"
    offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    signal = {"call": call_id, "pc": "publish", "kind": "offer", "sdp": offer}
    assert await code(eve_ws, "call.signal", **signal) == "call_not_found"
    assert (await eve.call("GET", f"/api/v1/rooms/{room['id']}/calls", 404))["error"][
        "code"
    ] == "room_not_found"
    # Unknown calls, malformed frames.
    assert await code(ana_ws, "call.join", call=999_999) == "call_not_found"
    candidate = {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}
    assert (
        await code(
            ana_ws, "call.signal", call=999_999, pc="publish", kind="candidate", candidate=candidate
        )
        == "call_not_found"
    )
    assert await code(ana_ws, "call.start") == "invalid_field"
    assert await code(ana_ws, "call.start", room="one") == "invalid_field"
    assert await code(ana_ws, "call.join", call=0) == "invalid_field"
    assert (
        await code(ana_ws, "call.signal", call=call_id, pc="both", kind="offer") == "invalid_field"
    )
    assert (
        await code(ana_ws, "call.signal", call=call_id, pc="subscribe", kind="offer", sdp=offer)
        == "invalid_field"
    )
    bad_sdp = {"call": call_id, "pc": "publish", "kind": "offer", "sdp": "hello"}
    assert await code(ana_ws, "call.signal", **bad_sdp) == "invalid_sdp"
    assert (
        await code(ana_ws, "call.signal", call=call_id, pc="publish", kind="offer") == "invalid_sdp"
    )
    odd = {**candidate, "extra": 1}
    assert (
        await code(
            ana_ws, "call.signal", call=call_id, pc="publish", kind="candidate", candidate=odd
        )
        == "invalid_field"
    )
    bad_tracks = {"t": {"source": "hologram"}}
    assert await code(ana_ws, "call.tracks", call=call_id, tracks=bad_tracks) == "invalid_field"
    many = {f"t{i}": {"source": "mic"} for i in range(9)}
    assert await code(ana_ws, "call.tracks", call=call_id, tracks=many) == "invalid_field"
    assert await code(ana_ws, "call.decline", call=call_id, text="x" * 201) == "invalid_field"
    # Bob is rung but not in the call: no signaling from him yet.
    assert await code(bob_ws, "call.signal", **signal) == "not_in_call"
    assert await code(bob_ws, "call.leave", call=call_id) == "not_in_call"
    # The media server refuses an SDP it cannot read (it has no media sections).
    assert await code(ana_ws, "call.signal", **signal) == "bad_sdp"
    bad_candidate = {**candidate, "candidate": "nonsense"}
    assert (
        await code(
            ana_ws,
            "call.signal",
            call=call_id,
            pc="publish",
            kind="candidate",
            candidate=bad_candidate,
        )
        == "bad_candidate"
    )
    assert (await ana_ws.command("ping"))["ok"]  # the socket is fine after all that
    for ws in (ana_ws, bob_ws, eve_ws):
        await ws.close()


async def test_a_closed_socket_leaves_after_the_grace_period_unless_it_rejoins(
    aiohttp_client: Any, make_app: Any, database_url: str
) -> None:
    client = await node(aiohttp_client, make_app, database_url, call_ring_timeout=30)
    ana, bob, [dm], ana_ws, bob_ws = await ana_and_bob_online(client, client)
    call_id = (await ana_ws.command("call.start", room=dm["id"]))["call"]["call"]
    first = await bob_ws.command("call.accept", call=call_id)

    # Bob's socket drops; he is shown as away from the call, then reconnects in time.
    await bob_ws.close()
    away = await state_with(ana_ws, lambda s: any(not p["connected"] for p in s["participants"]))
    assert names(away) == ["ana", "bob"]
    bob_ws = await bob.socket()
    rejoined = await bob_ws.command("call.join", call=call_id)
    assert rejoined["participant"] != first["participant"]
    assert all(p["connected"] for p in rejoined["call"]["participants"])
    await asyncio.sleep(GRACE * 2)
    log = await ana.call("GET", f"/api/v1/rooms/{dm['id']}/calls", 200)
    assert len(log["calls"][0]["participants"]) == 2  # one unbroken stint each

    # Now ana's socket drops for good: she leaves after the grace period, the call goes on.
    await ana_ws.close()
    alone = await state_with(bob_ws, lambda s: names(s) == ["bob"], timeout=GRACE * 10)
    assert alone["call"] == call_id
    assert (await bob_ws.command("call.leave", call=call_id))["ok"]
    assert (await bob_ws.next_event("call.ended"))["outcome"] == "completed"
    await bob_ws.close()


async def test_turn_credentials_follow_the_coturn_rest_scheme(
    aiohttp_client: Any, make_app: Any, database_url: str, clock: FakeClock
) -> None:
    client = await node(
        aiohttp_client,
        make_app,
        database_url,
        stun_urls=("stun:stun.example.com:3478",),
        turn_urls=("turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"),
        turn_secret="north-wind",
        turn_ttl=3600,
    )
    ana, _bob = await people(client, "ana", "bob")
    dm = await ana.room("dm", members=["bob"])
    ana_ws = await ana.socket()
    started = await ana_ws.command("call.start", room=dm["id"])
    stun, turn = started["ice_servers"]
    assert stun == {"urls": ["stun:stun.example.com:3478"]}
    assert turn["urls"] == [
        "turn:turn.example.com:3478?transport=udp",
        "turns:turn.example.com:5349",
    ]
    expiry, user = turn["username"].split(":")
    assert int(user) == ana.user_id and int(expiry) == clock.now // 1000 + 3600
    digest = hmac.new(b"north-wind", turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(digest).decode()
    await ana_ws.close()


async def test_the_ring_reaches_a_callee_on_another_node(node_pair: NodePair) -> None:
    nodes = await node_pair(call_ring_timeout=30)
    ana, bob, [dm], ana_ws, bob_ws = await ana_and_bob_online(*nodes)
    call_id = (await ana_ws.command("call.start", room=dm["id"]))["call"]["call"]
    ring = await bob_ws.next_event("call.ring")
    assert ring["call"] == call_id and ring["caller"]["username"] == "ana"
    # Equal loads: the call went to the first node by name. A socket opened on the other
    # node learns of it from there, and rings.
    assert nodes[0].app[CALLS].holds(call_id) and not nodes[1].app[CALLS].holds(call_id)
    late = await bob.socket()
    assert (await late.next_event("call.state"))["call"] == call_id
    assert (await late.next_event("call.ring"))["call"] == call_id
    await late.close()
    # The call lives on one node; bob's commands on node b are carried there.
    joined = await bob_ws.command("call.accept", call=call_id)
    assert joined["ok"], joined
    people = {p["user"]["username"] for p in joined["call"]["participants"]}
    assert people == {"ana", "bob"}
    assert (await ana_ws.next_event("call.state"))["call"] == call_id
    assert (await bob_ws.command("call.leave", call=call_id))["ok"]
    assert (await ana_ws.command("call.leave", call=call_id))["ok"]
    ended = await bob_ws.next_event("call.ended")
    assert ended["call"] == call_id and ended["outcome"] == "completed"
    # Refusals come back from the call's node with their codes, whichever node asks.
    again = (await ana_ws.command("call.start", room=dm["id"]))["call"]["call"]
    await bob_ws.next_event("call.ring")
    assert (await bob_ws.command("call.cancel", call=again))["error"]["code"] == "forbidden"
    declined = await bob_ws.command("call.decline", call=again, text="In a meeting")
    assert declined["ok"], declined
    assert (await bob_ws.command("call.decline", call=again))["error"]["code"] in (
        "not_ringing",
        "call_ended",
    )
    assert (await ana_ws.next_event("call.declined"))["text"] == "In a meeting"
    for ws in (ana_ws, bob_ws):
        await ws.close()
    for person in (ana, bob):
        await person.close()
