"""Chat, presence and a three-way call on a real cluster, and the call surviving the
death of its media node.

Four ``collab serve`` processes share one PostgreSQL and a real redis-server.
Ana, Bob and Cy each hold a socket on a different node; the call's media
lives on whichever node the placement picks (the least loaded), and each
aiortc participant decodes the others' audio and video through it. Then
that node is killed with SIGKILL: its lease runs out, another node takes
the call over, and everyone is back in the call with frames flowing.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collab.appkeys import STORE
from collab.store import Store
from collab.store import calls as call_sql
from tests.chat_helpers import Person
from tests.cluster_calls import PASSWORD, CallPeer
from tests.helpers import add_user
from tests.servers import RedisServer
from tests.test_cli import Node

NAMES = ("ana", "bob", "cy")


@dataclass
class Cluster:
    nodes: list[Node]
    ids: list[str]
    peers: list[CallPeer]
    room: int
    owner: Person
    store: Store  # the cluster's PostgreSQL, through the in-process app


@pytest.fixture
async def cluster(
    aiohttp_client: Any, make_app: Any, pg_url: str, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[Cluster]:
    setup = await aiohttp_client(make_app(database_url=pg_url, data_dir=tmp_path / "setup"))
    owner = await Person.create(setup, "owner")
    for name in NAMES:
        await add_user(setup.app, name, password=PASSWORD)
    room = (await owner.room("channel", "standup", list(NAMES)))["id"]
    ids = [f"node-{n}" for n in range(4)]

    def start() -> list[Node]:
        nodes = [
            Node(
                *("--database-url", pg_url, "--redis-url", redis_server.url),
                *("--data-dir", str(tmp_path / "data"), "--log-level", "warning"),
                *("--presence-node-ttl", "3", "--node-id", node_id),
            )
            for node_id in ids
        ]
        for node in nodes:
            node.wait_ready()
        return nodes

    nodes = await asyncio.to_thread(start)
    addresses = [f"http://127.0.0.1:{node.port}" for node in nodes]
    peers = [CallPeer(name, addresses, n) for n, name in enumerate(NAMES)]
    try:
        setup_url = str(setup.make_url("/")).rstrip("/")
        for peer in peers:
            await peer.sign_in(setup_url)
            await peer.connect()
        yield Cluster(nodes, ids, peers, room, owner, setup.app[STORE])
    finally:
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
        for node in nodes:
            await asyncio.to_thread(node.stop, signal.SIGKILL)
        await owner.close()


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.1)


def _each_sees_each(peers: list[CallPeer], since: dict[str, dict[str, dict[str, int]]]) -> bool:
    """Every peer decoded new audio and video frames from every other peer."""
    for peer in peers:
        now = peer.decoded()
        before = since.get(peer.username, {})
        for other in peers:
            if other is peer:
                continue
            for kind in ("audio", "video"):
                grown = now.get(other.username, {}).get(kind, 0)
                grown -= before.get(other.username, {}).get(kind, 0)
                if grown < 5:
                    return False
    return True


async def _media_node(cluster: Cluster, call_id: int) -> str:
    """The call's media node as the database records it."""
    async with cluster.store.read() as conn:
        record = await call_sql.by_id(conn, call_id)
    assert record is not None
    return record.node


async def _three_way_call(cluster: Cluster) -> int:
    ana, bob, cy = cluster.peers
    call_id = await ana.start_call(cluster.room)
    for peer in (bob, cy):
        ring = await _wait_event(peer, "call.ring")
        assert ring["call"] == call_id and ring["caller"]["username"] == "ana"
        await peer.join(call_id)
    await _until(lambda: _each_sees_each(cluster.peers, {}), 30, "frames from each to each")
    return call_id


async def _wait_event(peer: CallPeer, kind: str, timeout: float = 10) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [e for e in peer.events if e["type"] == kind]
        return bool(found)

    await _until(seen, timeout, f"{peer.username} hears {kind}")
    return found[0]


async def test_users_on_three_nodes_chat_see_presence_and_call(cluster: Cluster) -> None:
    ana, bob, cy = cluster.peers
    assert len({ana.node, bob.node, cy.node}) == 3, "each person on another node"
    # Chat: a message sent on ana's node reaches the others on theirs.
    sent = await ana.command(
        "chat.send", room=cluster.room, body="Standup in 1", client_msg_id="m1"
    )
    assert sent.get("ok"), sent
    for peer in (bob, cy):
        message = await _wait_event(peer, "chat.message")
        assert (message["body"], message["sender"]["username"]) == ("Standup in 1", "ana")
    # Presence: cy goes busy on node 2, ana and bob see it on theirs.
    assert (await cy.command("presence.set", status="busy"))["ok"]
    for peer in (ana, bob):
        await _until(
            lambda p=peer: any(
                e["type"] == "presence" and e["username"] == "cy" and e["status"] == "busy"
                for e in p.events
            ),
            10,
            f"{peer.username} sees cy busy",
        )
    # A call with media through one node, whichever node each socket is on.
    call_id = await _three_way_call(cluster)
    media_node = await _media_node(cluster, call_id)
    assert media_node in cluster.ids
    for peer in cluster.peers:
        assert (await peer.command("call.leave", call=call_id))["ok"]
    ended = await _wait_event(ana, "call.ended")
    assert ended["outcome"] == "completed"


def _timelines(peers: list[CallPeer], since: float) -> str:
    """What each peer went through after ``since`` (printed when a step fails)."""
    lines = []
    for peer in peers:
        steps = [f"{t - since:+.1f} {what}" for t, what in peer.timeline if t > since]
        lines.append(f"{peer.username}: " + "; ".join(steps))
    return "\n".join(lines)


async def _media_back(cluster: Cluster, since: float, what: str) -> None:
    before = {p.username: p.decoded() for p in cluster.peers}
    try:
        await _until(lambda: _each_sees_each(cluster.peers, before), 30, what)
    except AssertionError:
        print(_timelines(cluster.peers, since))
        raise


async def test_a_call_moves_when_its_node_stops_and_again_when_the_next_one_dies(
    cluster: Cluster,
) -> None:
    call_id = await _three_way_call(cluster)

    # SIGTERM: the node hands the call over while draining, and exits in time.
    first = await _media_node(cluster, call_id)
    stopping = cluster.nodes[cluster.ids.index(first)]
    stopped_at = time.monotonic()
    await asyncio.to_thread(stopping.send, signal.SIGTERM)
    await _media_back(cluster, stopped_at, "frames after the hand-over")
    assert await asyncio.to_thread(stopping.stop) == 0, stopping.log
    second = await _media_node(cluster, call_id)
    assert second != first
    # Moved, not ended: everyone heard call.moved and nobody call.ended.
    assert all(any(e["type"] == "call.moved" for e in p.events) for p in cluster.peers)
    assert not any(e["type"] == "call.ended" for p in cluster.peers for e in p.events)

    # SIGKILL: the new media node dies; its lease runs out and a third node takes over.
    victim = cluster.nodes[cluster.ids.index(second)]
    killed_at = time.monotonic()
    await asyncio.to_thread(victim.stop, signal.SIGKILL)
    await _media_back(cluster, killed_at, "frames again after the kill")
    recovered_in = time.monotonic() - killed_at
    third = await _media_node(cluster, call_id)
    assert third not in (first, second)
    assert all(p.joins >= 3 for p in cluster.peers), "everyone rejoined twice"
    # Reported, not asserted (timing belongs in benchmarks): the issue asks for < 10 s.
    print(f"call back on {third} {recovered_in:.1f} s after {second} was killed")
    print(_timelines(cluster.peers, killed_at))
    for peer in cluster.peers:
        assert (await peer.command("call.leave", call=call_id))["ok"]
    ended = await _wait_event(cluster.peers[0], "call.ended", timeout=15)
    assert ended["outcome"] == "completed"
