"""The parts that carry calls across nodes: requests between nodes, the media
node's load and leases in a real Redis, and a Redis restart that must not move
a call whose node is alive."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from collab.api.errors import ApiError, Conflict, Unavailable
from collab.appkeys import CALLS, PRESENCE, STORE
from collab.calls.placement import RedisPlacement
from collab.calls.relay import NodeRelay
from collab.store import calls as call_sql
from signaling.bus import LocalBus
from tests.call_helpers import ana_and_bob_online
from tests.chat_helpers import Person
from tests.conftest import NodePair
from tests.servers import RedisServer


async def test_a_request_is_answered_by_the_node_it_names() -> None:
    bus = LocalBus()
    await bus.start()
    a, b = NodeRelay(bus, "a", timeout_s=0.5), NodeRelay(bus, "b", timeout_s=0.5)
    seen: list[dict[str, Any]] = []

    async def echo(args: dict[str, Any]) -> dict[str, Any]:
        return {"echo": args["text"], "by": "b"}

    async def refuse(args: dict[str, Any]) -> None:
        raise Conflict("This call has ended.", code="call_ended", call=args["call"])

    async def crash(args: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    async def remember(args: dict[str, Any]) -> None:
        seen.append(args)

    for op, handler in (("echo", echo), ("refuse", refuse), ("crash", crash), ("tell", remember)):
        b.handle(op, handler)
    await a.start()
    await b.start()
    try:
        assert await a.request("b", "echo", {"text": "hi"}) == {"echo": "hi", "by": "b"}
        # A refusal comes back as itself: code, message, status and extra fields.
        with pytest.raises(ApiError) as refused:
            await a.request("b", "refuse", {"call": 7})
        assert (refused.value.code, refused.value.status) == ("call_ended", 409)
        assert refused.value.body()["error"] == {
            "code": "call_ended",
            "message": "This call has ended.",
            "call": 7,
        }
        with pytest.raises(ApiError) as crashed:
            await a.request("b", "crash", {})
        assert (crashed.value.code, crashed.value.status) == ("internal", 500)
        with pytest.raises(ApiError) as unknown:
            await a.request("b", "no_such_thing", {})
        assert unknown.value.code == "internal"
        # Nobody listens for node c: the asker hears "unavailable", not silence.
        with pytest.raises(Unavailable):
            await a.request("c", "echo", {"text": "anyone?"})
        await a.notify("b", "tell", {"n": 1})
        for _ in range(50):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen == [{"n": 1}]
        # Garbage on a node topic is ignored; the node still answers.
        await bus.publish("node:b", b"\xff not json")
        assert (await a.request("b", "echo", {"text": "still"}))["echo"] == "still"
    finally:
        await a.close()
        await b.close()
        await bus.close()


async def test_placement_picks_the_least_loaded_live_node_and_keeps_leases(
    redis_server: RedisServer,
) -> None:
    loads = {"a": 3.0, "b": 1.0, "c": 0.0}
    held: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    lost: list[tuple[str, int]] = []

    def placement(node: str, has_media: bool = True) -> RedisPlacement:
        return RedisPlacement(
            redis_server.url,
            node,
            has_media=has_media,
            load=lambda: loads[node],
            held=lambda: held[node],
            lost=lambda call: lost.append((node, call)),
            lease_s=1.0,
            renew_s=60,  # renewed by hand below
        )

    a, b, c = placement("a"), placement("b"), placement("c", has_media=False)
    for p in (a, b, c):
        await p.start()
    try:
        assert await c.pick() == "b"  # a node without a media server is never picked
        assert await c.pick(exclude=["b"]) == "a"
        loads["b"] = 5.0
        await b.renew()
        assert await a.pick() == "a"
        assert await a.alive(["a", "b", "c"]) == {"a", "b"}

        await a.claim(7)
        held["a"].append(7)
        assert await c.leases([7, 8]) == {7: "a", 8: None}
        # Redis restarts and forgets everything: the next renewal puts it all back.
        redis_server.stop()
        redis_server.start()
        assert await c.leases([7]) == {7: None}
        await a.renew()
        await b.renew()
        assert await c.leases([7]) == {7: "a"}
        assert await c.pick() == "a"
        # Exactly one node wins a takeover.
        assert [await p.take_over(7) for p in (b, c, a)] == [True, False, False]
        # The call was given to b meanwhile: a learns it lost the call and lets it go.
        await b.claim(7, "b")
        await a.renew()
        assert lost == [("a", 7)]
        assert await c.leases([7]) == {7: "b"}
        # A node that stops renewing drops out of the choice by itself.
        await asyncio.sleep(1.2)
        assert await c.pick() is None
    finally:
        for p in (a, b, c):
            await p.close()


async def test_a_redis_restart_moves_no_call(
    node_pair: NodePair, redis_server: RedisServer
) -> None:
    nodes = await node_pair()
    ana, bob, [room], ana_ws, bob_ws = await ana_and_bob_online(*nodes, "team")
    started = await ana_ws.command("call.start", room=room["id"])
    call_id = started["call"]["call"]
    assert (await bob_ws.command("call.join", call=call_id))["ok"]
    holder = next(n for n in nodes if n.app[CALLS].holds(call_id))

    redis_server.stop()
    await asyncio.sleep(1.5)
    redis_server.start()
    # Longer than a lease and the failover's confirmation together.
    await asyncio.sleep(6)
    assert holder.app[CALLS].holds(call_id)
    record = await holder.app[CALLS].record(call_id)
    assert record is not None and record.node == holder.app[CALLS].node
    for ws in (ana_ws, bob_ws):
        await ws.no_event("call.moved", wait=0.2)
    # And the call still works across the nodes.
    assert (await bob_ws.command("call.leave", call=call_id))["ok"]
    assert (await ana_ws.command("call.leave", call=call_id))["ok"]
    for ws in (ana_ws, bob_ws):
        await ws.close()
    for person in (ana, bob):
        await person.close()


async def test_a_single_node_ends_calls_left_under_another_name(client: Any) -> None:
    """A node id is host:port unless set: after a restart on another port, the calls
    of the old name must not stay 'ongoing' (blocking new calls in their rooms)."""
    ana = await Person.create(client, "ana")
    room = await ana.room("channel", "team", [])
    store, calls = client.app[STORE], client.app[CALLS]
    async with store.transaction() as conn:
        stale = await call_sql.insert(
            conn, room_id=room["id"], started_by=ana.user_id, video=False, node="host:8081", now=1
        )
    await calls.recover()
    record = await calls.record(stale.id)
    assert record is not None and record.ended_at is not None and record.outcome == "missed"
    ws = await ana.socket()
    assert (await ws.command("call.start", room=room["id"]))["ok"]
    await ws.close()
    await ana.close()


async def test_joining_a_call_on_another_node_leaves_the_first(node_pair: NodePair) -> None:
    """One call per person across the cluster too: the new call's node asks the old
    call's node to let the person go."""
    nodes = await node_pair()
    ana, bob, [team, later], ana_ws, bob_ws = await ana_and_bob_online(*nodes, "team", "later")
    first = (await ana_ws.command("call.start", room=team["id"]))["call"]["call"]
    assert (await bob_ws.command("call.join", call=first))["ok"]
    first_node = next(n for n in nodes if n.app[CALLS].holds(first))
    # The second call goes to the other node (the less loaded one).
    started = await ana_ws.command("call.start", room=later["id"])
    assert started["ok"], started
    second = started["call"]["call"]
    assert not first_node.app[CALLS].holds(second)
    assert started["left"] == first
    left = await ana_ws.next_event("call.left")
    assert (left["call"], left["reason"]) == (first, "moved")

    # Bob is still in the first call, alone now; ana is in the second.
    def people(state: dict[str, Any]) -> list[str]:
        return [p["user"]["username"] for p in state["participants"]]

    state = await bob_ws.next_event("call.state")
    while state["call"] != first or people(state) != ["bob"]:
        assert state["call"] != first or "ana" in people(state), state
        state = await bob_ws.next_event("call.state")
    assert await nodes[0].app[PRESENCE].call_of(ana.user_id) == str(second)
    for ws in (ana_ws, bob_ws):
        await ws.close()
    for person in (ana, bob):
        await person.close()
