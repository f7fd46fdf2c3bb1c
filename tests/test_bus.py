"""The event bus: in-process, and over a real redis-server that we stop and restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from signaling.bus import BusUnavailable, LocalBus, RedisBus
from tests.servers import RedisServer


class Inbox:
    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self.changed = asyncio.Event()

    def __call__(self, topic: str, payload: bytes) -> None:
        self.items.append((topic, payload))
        self.changed.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.items) < count:
                self.changed.clear()
                await self.changed.wait()


async def test_local_bus_delivers_to_listeners_of_the_topic_only() -> None:
    bus = LocalBus()
    await bus.start()
    room, user = Inbox(), Inbox()
    sub = await bus.subscribe("room:1", room)
    await bus.subscribe("user:1", user)
    await bus.publish("room:1", b"hello")
    await bus.publish("room:2", b"elsewhere")
    assert room.items == [("room:1", b"hello")]
    assert user.items == []
    await sub.close()
    await sub.close()  # closing twice is harmless
    await bus.publish("room:1", b"after")
    assert room.items == [("room:1", b"hello")]
    assert bus.topics == frozenset({"user:1"})
    await bus.close()


async def test_a_failing_listener_does_not_stop_the_others() -> None:
    bus = LocalBus()
    inbox = Inbox()

    def broken(topic: str, payload: bytes) -> None:
        raise RuntimeError("listener bug")

    await bus.subscribe("t", broken)
    await bus.subscribe("t", inbox)
    await bus.publish("t", b"x")
    assert inbox.items == [("t", b"x")]


@pytest.fixture
async def buses(redis_server: RedisServer) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    node_a, node_b = RedisBus(redis_server.url), RedisBus(redis_server.url)
    await node_a.start()
    await node_b.start()
    yield node_a, node_b
    await node_a.close()
    await node_b.close()


async def _numsub(url: str, topic: str) -> int:
    client: Any = aioredis.Redis.from_url(url)
    try:
        [(_, count)] = await client.pubsub_numsub(topic)
        return int(count)
    finally:
        await client.aclose()


async def test_redis_bus_carries_events_between_nodes(
    buses: tuple[RedisBus, RedisBus], redis_server: RedisServer
) -> None:
    node_a, node_b = buses
    inbox = Inbox()
    await node_b.subscribe("room:7", inbox)
    await node_a.publish("room:7", b'{"type":"chat.message"}')
    await inbox.wait_for(1)
    assert inbox.items == [("room:7", b'{"type":"chat.message"}')]


async def test_a_node_subscribes_once_per_topic_and_only_while_needed(
    buses: tuple[RedisBus, RedisBus], redis_server: RedisServer
) -> None:
    node_a, _ = buses
    first = await node_a.subscribe("room:9", Inbox())
    second = await node_a.subscribe("room:9", Inbox())
    assert await _numsub(redis_server.url, "room:9") == 1
    await first.close()
    assert await _numsub(redis_server.url, "room:9") == 1
    await second.close()
    assert await _numsub(redis_server.url, "room:9") == 0


async def test_redis_bus_resubscribes_after_redis_restarts(
    buses: tuple[RedisBus, RedisBus], redis_server: RedisServer
) -> None:
    node_a, node_b = buses
    inbox = Inbox()
    gaps: list[str] = []
    node_b.add_gap_listener(lambda: gaps.append("gap"))
    await node_b.subscribe("room:1", inbox)

    redis_server.stop()
    with pytest.raises(BusUnavailable):
        await node_a.publish("room:1", b"lost while down")
    with pytest.raises(BusUnavailable):
        await node_b.ping()
    redis_server.start()

    async with asyncio.timeout(15):
        while True:
            try:
                await node_b.ping()
                break
            except BusUnavailable:
                await asyncio.sleep(0.1)
    assert gaps == ["gap"]
    await node_a.publish("room:1", b"after restart")
    await inbox.wait_for(1)
    assert inbox.items == [("room:1", b"after restart")]


async def test_redis_bus_starts_while_redis_is_down_and_connects_later() -> None:
    server = RedisServer()
    bus = RedisBus(server.url)
    await bus.start()
    try:
        with pytest.raises(BusUnavailable):
            await bus.ping()
        inbox = Inbox()
        await bus.subscribe("t", inbox)
        server.start()
        async with asyncio.timeout(15):
            while True:
                try:
                    await bus.ping()
                    break
                except BusUnavailable:
                    await asyncio.sleep(0.1)
        await bus.publish("t", b"x")
        await inbox.wait_for(1)
    finally:
        await bus.close()
        server.stop()


async def test_many_connections_listening_at_once_make_one_subscription(
    redis_server: RedisServer,
) -> None:
    """A race here once made every event arrive twice on a Redis-backed node."""
    from unittest.mock import MagicMock

    from signaling.hub import Hub

    bus = RedisBus(redis_server.url)
    await bus.start()
    hub = Hub(bus)
    received: list[bytes] = []
    conns = []
    for _ in range(5):
        conn = MagicMock()
        conn.topics = set()
        conn.push = lambda frame: received.append(frame) or True
        conns.append(conn)
    try:
        await asyncio.gather(*(hub.listen(c, "room:1") for c in conns))
        assert await _numsub(redis_server.url, "room:1") == 1
        publisher = RedisBus(redis_server.url)
        await publisher.publish("room:1", b"x")
        async with asyncio.timeout(5):
            while len(received) < 5:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert received == [b"x"] * 5  # once per connection, not more
        await asyncio.gather(*(hub.unlisten(c, "room:1") for c in conns))
        assert await _numsub(redis_server.url, "room:1") == 0
        await publisher.close()
    finally:
        await bus.close()
