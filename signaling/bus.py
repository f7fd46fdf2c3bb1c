"""Publish/subscribe between the parts of a node and between nodes.

Everything another user must see goes through a ``Bus``, even on one node,
so one code path serves one node and many. ``LocalBus`` keeps it in the
process; ``RedisBus`` carries it over Redis pub/sub. A node subscribes to a
topic only while something local listens to it (first listener subscribes,
last one unsubscribes), so Redis traffic grows with need, not with nodes.

Payloads are bytes: the publisher encodes an event once, and every local
listener receives the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], None]
GapListener = Callable[[], Awaitable[None] | None]


class BusUnavailable(Exception):
    """The bus cannot carry events right now (Redis is down)."""


class Subscription:
    """One listener on one topic; ``close()`` removes it."""

    def __init__(self, bus: _BaseBus, topic: str, handler: Handler) -> None:
        self._bus = bus
        self.topic = topic
        self.handler = handler
        self._closed = False

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._bus._remove(self)


class Bus(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def publish(self, topic: str, payload: bytes) -> None: ...
    async def subscribe(self, topic: str, handler: Handler) -> Subscription: ...
    async def ping(self) -> None: ...
    def add_gap_listener(self, listener: GapListener) -> None: ...


class _BaseBus:
    """Local bookkeeping of listeners shared by both implementations."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Subscription]] = {}
        self._gap_listeners: list[GapListener] = []

    def add_gap_listener(self, listener: GapListener) -> None:
        """Called after the bus may have dropped events (Redis reconnected)."""
        self._gap_listeners.append(listener)

    async def subscribe(self, topic: str, handler: Handler) -> Subscription:
        subscription = Subscription(self, topic, handler)
        listeners = self._listeners.setdefault(topic, [])
        listeners.append(subscription)
        if len(listeners) == 1:
            await self._topic_added(topic)
        return subscription

    async def _remove(self, subscription: Subscription) -> None:
        listeners = self._listeners.get(subscription.topic)
        if not listeners or subscription not in listeners:
            return
        listeners.remove(subscription)
        if not listeners:
            del self._listeners[subscription.topic]
            await self._topic_removed(subscription.topic)

    def _deliver(self, topic: str, payload: bytes) -> None:
        for subscription in tuple(self._listeners.get(topic, ())):
            try:
                subscription.handler(topic, payload)
            except Exception:
                log.exception("bus listener failed topic=%s", topic)

    async def _notify_gap(self) -> None:
        for listener in tuple(self._gap_listeners):
            try:
                result = listener()
                if result is not None:
                    await result
            except Exception:
                log.exception("bus gap listener failed")

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self._listeners)

    async def _topic_added(self, topic: str) -> None:
        return None

    async def _topic_removed(self, topic: str) -> None:
        return None


class LocalBus(_BaseBus):
    """The single-node bus: delivery is a function call in this process."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._listeners.clear()

    async def publish(self, topic: str, payload: bytes) -> None:
        self._deliver(topic, payload)

    async def ping(self) -> None:
        return None


class RedisBus(_BaseBus):
    """Redis pub/sub, with reconnection (back-off with jitter) and resubscription."""

    MIN_BACKOFF = 0.1
    MAX_BACKOFF = 5.0

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
        )
        self._pubsub: aioredis.client.PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closing = False

    async def start(self) -> None:
        try:
            await self._connect()
        except (RedisError, OSError) as exc:
            log.warning("redis bus cannot connect yet (%s); will keep trying", exc)
        self._reader = asyncio.create_task(self._read_forever(), name="redis-bus-reader")

    async def _connect(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        # A pubsub connection is only opened by a (p)subscribe; a private
        # keep-alive channel makes it open now and stay open with no topics.
        await pubsub.subscribe("collab:bus:keepalive")
        topics = sorted(self._listeners)
        if topics:
            await pubsub.subscribe(*topics)
        self._pubsub = pubsub
        self._ready.set()

    async def _read_forever(self) -> None:
        backoff = self.MIN_BACKOFF
        while not self._closing:
            if self._pubsub is None:
                await self._reconnect_with_backoff(backoff)
                await self._notify_gap()
                continue
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                backoff = self.MIN_BACKOFF
                if message and message["type"] == "message":
                    channel = message["channel"]
                    topic = channel.decode() if isinstance(channel, bytes) else channel
                    self._deliver(topic, message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self._closing:
                    return
                self._ready.clear()
                log.warning("redis bus lost connection (%s); reconnecting", exc)
                await self._reconnect_with_backoff(backoff)
                backoff = self.MIN_BACKOFF
                await self._notify_gap()

    async def _reconnect_with_backoff(self, backoff: float) -> None:
        while not self._closing:
            await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311
            try:
                async with self._lock:
                    if self._pubsub is not None:
                        with contextlib.suppress(Exception):
                            await self._pubsub.aclose()
                    self._pubsub = None
                    await self._connect()
                log.info("redis bus reconnected; resubscribed %d topics", len(self._listeners))
                return
            except (RedisError, OSError) as exc:
                log.debug("redis bus reconnect failed: %s", exc)
                backoff = min(backoff * 2, self.MAX_BACKOFF)

    async def _topic_added(self, topic: str) -> None:
        async with self._lock:
            if self._pubsub is not None and self._ready.is_set():
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.subscribe(topic)
                # On failure the reader reconnects and resubscribes every topic.

    async def _topic_removed(self, topic: str) -> None:
        async with self._lock:
            if self._pubsub is not None and self._ready.is_set():
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(topic)

    async def publish(self, topic: str, payload: bytes) -> None:
        try:
            await self._client.publish(topic, payload)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise BusUnavailable(f"redis is unreachable: {exc}") from exc

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise BusUnavailable(f"redis is unreachable: {exc}") from exc
        if not self._ready.is_set():
            raise BusUnavailable("redis bus is reconnecting")

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        await self._client.aclose()
        self._listeners.clear()


def create_bus(redis_url: str) -> LocalBus | RedisBus:
    return RedisBus(redis_url) if redis_url else LocalBus()
