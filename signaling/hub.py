"""This node's live connections and the topics each listens to.

The hub subscribes to a bus topic when its first local connection starts
listening and unsubscribes when the last one stops. An event arrives from
the bus once per node as bytes and is queued, as the same bytes, on every
local connection that listens: encoded once, sent many times.

Products can watch events on ``user:<id>`` topics before they are sent
(``add_user_watcher``): to close sockets whose sign-in ended, or to start
listening to a room the user was just added to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from signaling.bus import Bus, Subscription
from signaling.connection import Connection
from signaling.protocol import (
    RESUME_CLOSE_CODE,
    SESSION_ENDED_CLOSE_CODE,
    encode,
    read_revocation,
    user_topic,
)

log = logging.getLogger(__name__)

# Returns False to keep the event from being sent to this connection.
UserWatcher = Callable[[Connection, bytes], bool]


class Hub:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._listeners: dict[str, set[Connection]] = {}
        self._subscriptions: dict[str, asyncio.Future[Subscription]] = {}
        self._by_user: dict[int, set[Connection]] = {}
        self._user_watchers: list[UserWatcher] = [self._end_revoked]
        self._room_watchers: list[UserWatcher] = []
        self.delivered = 0
        self._background: set[asyncio.Task[None]] = set()
        bus.add_gap_listener(self._tell_everyone_to_sync)

    def add_user_watcher(self, watcher: UserWatcher) -> None:
        self._user_watchers.append(watcher)

    @property
    def connections(self) -> list[Connection]:
        return [conn for conns in self._by_user.values() for conn in conns]

    def connections_of(self, user_id: int) -> set[Connection]:
        return self._by_user.get(user_id, set())

    async def add(self, conn: Connection) -> None:
        self._by_user.setdefault(conn.user_id, set()).add(conn)
        await self.listen(conn, user_topic(conn.user_id))

    async def remove(self, conn: Connection) -> None:
        for topic in tuple(conn.topics):
            await self.unlisten(conn, topic)
        users = self._by_user.get(conn.user_id)
        if users is not None:
            users.discard(conn)
            if not users:
                del self._by_user[conn.user_id]

    async def listen(self, conn: Connection, topic: str) -> None:
        if topic in conn.topics:
            return
        conn.topics.add(topic)
        listeners = self._listeners.setdefault(topic, set())
        listeners.add(conn)
        pending = self._subscriptions.get(topic)
        if pending is None:
            # One subscription per topic, even when many connections ask at the
            # same moment: the first starts it, the others wait for the same one.
            pending = asyncio.ensure_future(self._bus.subscribe(topic, self._deliver))
            self._subscriptions[topic] = pending
        await asyncio.shield(pending)

    async def unlisten(self, conn: Connection, topic: str) -> None:
        subscription = self._detach(conn, topic)
        if subscription is not None:
            await self._release(subscription)

    def unlisten_now(self, conn: Connection, topic: str) -> None:
        """Stop delivering ``topic`` to ``conn`` before the next event (from a bus callback);
        the bus unsubscription, if it was the last listener, follows in the background."""
        subscription = self._detach(conn, topic)
        if subscription is not None:
            task = asyncio.get_running_loop().create_task(self._release(subscription))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    @staticmethod
    async def _release(pending: asyncio.Future[Subscription]) -> None:
        try:
            subscription = await pending
        except Exception:
            return  # it never came to be; nothing to close
        await subscription.close()

    def _detach(self, conn: Connection, topic: str) -> asyncio.Future[Subscription] | None:
        conn.topics.discard(topic)
        listeners = self._listeners.get(topic)
        if listeners is None:
            return None
        listeners.discard(conn)
        if listeners:
            return None
        del self._listeners[topic]
        return self._subscriptions.pop(topic, None)

    def add_room_change_watcher(self, watcher: UserWatcher) -> None:
        """Called for each local listener of a room when the room changes (its members,
        name, topic): e.g. to start following the presence of someone who joined."""
        self._room_watchers.append(watcher)

    def _deliver(self, topic: str, payload: bytes) -> None:
        listeners = self._listeners.get(topic)
        if not listeners:
            return
        if self._room_watchers and payload.startswith(b'{"type":"room.updated"'):
            for conn in tuple(listeners):
                for room_watcher in self._room_watchers:
                    room_watcher(conn, payload)
        watch = topic.startswith("user:")
        for conn in tuple(listeners):
            if watch and not all(watcher(conn, payload) for watcher in self._user_watchers):
                continue
            if conn.push(payload):
                self.delivered += 1

    def _tell_everyone_to_sync(self) -> None:
        """The bus may have dropped events (Redis was away): every client asks for them."""
        notice = encode({"type": "sync.needed", "reason": "bus_gap"})
        for conn in self.connections:
            conn.push(notice)

    @staticmethod
    def _end_revoked(conn: Connection, payload: bytes) -> bool:
        revocation = read_revocation(payload)
        if revocation is None:
            return True
        if revocation.renews:
            conn.close_soon(RESUME_CLOSE_CODE, b"account changed; reconnect")
        elif revocation.ends(conn.credential):
            conn.close_soon(SESSION_ENDED_CLOSE_CODE, b"session ended")
        return False
