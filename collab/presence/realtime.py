"""Presence over the socket: connections count as online, activity keeps them there,
and each connection hears the presence of the people it shares a room with.

A connection listens to ``presence:<id>`` for each peer, so a change is
published once and reaches, on every node, only the sockets that may see it.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec

from collab.api.errors import BadRequest
from collab.api.fields import Id, Millis
from collab.chat.service import ChatService
from collab.presence.service import PresenceService, presence_topic
from collab.realtime import socket_identity
from signaling.connection import Connection
from signaling.hub import Hub
from signaling.protocol import Command, encode
from signaling.tasks import BackgroundTasks
from signaling.ws import SocketServer

log = logging.getLogger(__name__)

ACTIVITY_MIN_INTERVAL_MS = 30_000
KEY = "presence.key"
LAST_TOUCH = "presence.last_touch"
REFRESHING = "presence.refreshing"

Text = Annotated[str, msgspec.Meta(max_length=100)]
Emoji = Annotated[str, msgspec.Meta(max_length=64)]


class SetPresence(Command):
    status: Annotated[str, msgspec.Meta(max_length=16)]
    until: Millis | None = None
    text: Text | None = None
    emoji: Emoji | None = None
    text_until: Millis | None = None


class Activity(Command):
    pass


class GetPresence(Command):
    users: Annotated[list[Id], msgspec.Meta(max_length=500)]


class _RoomEvent(msgspec.Struct):
    type: str = ""
    room: Any = None


def choice_from_status(status: str) -> str:
    """What people pick ("available", "busy", ...) as the stored choice."""
    if status in ("available", "auto"):
        return "auto"
    if status in ("busy", "dnd", "away"):
        return status
    raise BadRequest(
        "status is available, busy, dnd or away.", code="invalid_field", field="status"
    )


class PresenceSockets:
    def __init__(self, presence: PresenceService, chat: ChatService, hub: Hub, clock: Any) -> None:
        self._presence = presence
        self._chat = chat
        self._hub = hub
        self._clock = clock
        self._tasks = BackgroundTasks()

    def install(self, sockets: SocketServer) -> None:
        sockets.on_connect(self._on_connect)
        sockets.on_disconnect(self._on_disconnect)
        self._hub.add_user_watcher(self._watch_rooms)
        self._hub.add_room_change_watcher(self._room_changed)
        sockets.register("presence.set", SetPresence, self._set)
        sockets.register("presence.activity", Activity, self._activity)
        sockets.register("presence.get", GetPresence, self._get)

    async def _on_connect(self, conn: Connection) -> None:
        key = self._presence.new_connection_key()
        conn.state[KEY] = key
        conn.state[LAST_TOUCH] = self._clock()
        await self._presence.connected(conn.user_id, key)
        peers = await self._presence.peers(conn.user_id)
        for peer in peers:
            await self._hub.listen(conn, presence_topic(peer))
        await self._send_snapshot(conn, sorted(peers))

    async def _send_snapshot(self, conn: Connection, user_ids: list[int]) -> None:
        """Tell the current presence of these users; live changes follow as events."""
        try:
            snapshot = await self._presence.presence_of(user_ids)
        except Exception as exc:
            # Presence must not cost the socket; the client can ask with presence.get.
            log.warning("presence snapshot for %s failed: %s", conn.username, exc)
            return
        conn.push(encode({"type": "presence.snapshot", "users": list(snapshot.values())}))

    async def _on_disconnect(self, conn: Connection) -> None:
        key = conn.state.get(KEY)
        if isinstance(key, str):
            await self._presence.disconnected(conn.user_id, key)

    def _watch_rooms(self, conn: Connection, payload: bytes) -> bool:
        if b'"room.' not in payload[:32]:
            return True
        try:
            event = msgspec.json.decode(payload, type=_RoomEvent)
        except msgspec.MsgspecError:
            return True
        if event.type in ("room.joined", "room.left"):
            self._spawn(self._refresh_peers(conn))
        return True

    def _room_changed(self, conn: Connection, payload: bytes) -> bool:
        """Someone joined or left a room this connection is in: follow the right people."""
        if not conn.state.get(REFRESHING):
            conn.state[REFRESHING] = True
            self._spawn(self._refresh_peers(conn))
        return True

    def _spawn(self, coro: Any) -> None:
        self._tasks.spawn(coro)

    async def _refresh_peers(self, conn: Connection) -> None:
        """After a room change: listen to new peers (and tell their status), drop old ones."""
        conn.state[REFRESHING] = False
        peers = await self._presence.peers(conn.user_id)
        current = {int(t.split(":", 1)[1]) for t in conn.topics if t.startswith("presence:")}
        for gone in current - peers:
            await self._hub.unlisten(conn, presence_topic(gone))
        new = sorted(peers - current)
        for peer in new:
            await self._hub.listen(conn, presence_topic(peer))
        if new:
            await self._send_snapshot(conn, new)

    async def _set(self, conn: Connection, cmd: SetPresence) -> dict[str, Any]:
        identity = socket_identity(conn)
        await self._presence.set_choice(
            identity.user.id,
            choice=choice_from_status(cmd.status),
            until=cmd.until,
            text=cmd.text,
            emoji=cmd.emoji,
            text_until=cmd.text_until,
        )
        mine = await self._presence.presence_of([identity.user.id])
        return {"presence": mine[identity.user.id]}

    async def _activity(self, conn: Connection, cmd: Activity) -> dict[str, Any]:
        now = self._clock()
        last = conn.state.get(LAST_TOUCH)
        key = conn.state.get(KEY)
        # Reports closer together than this change nothing worth a write.
        if isinstance(key, str) and not (
            isinstance(last, int) and now - last < ACTIVITY_MIN_INTERVAL_MS
        ):
            conn.state[LAST_TOUCH] = now
            await self._presence.activity(conn.user_id, key)
        return {}

    async def _get(self, conn: Connection, cmd: GetPresence) -> dict[str, Any]:
        await self._presence.check_visible(socket_identity(conn), cmd.users)
        found = await self._presence.presence_of(list(cmd.users))
        return {"users": list(found.values())}
