"""Chat over the socket: the commands, and keeping each connection on its rooms' topics.

A connection listens to ``room:<id>`` for every room its user is in. When
the user is added to or removed from a room (on any node), the
``room.joined`` / ``room.left`` event on their user topic moves the
subscription; messages that raced the move are found by ``sync``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from collab.api.fields import BigId, Id, Seq
from collab.chat.service import MAX_PAGE, ChatService, SyncPoint, room_topic
from collab.realtime import socket_identity
from collab.search import service as search_rules
from signaling.connection import Connection
from signaling.hub import Hub
from signaling.protocol import Command
from signaling.tasks import BackgroundTasks
from signaling.ws import SocketServer

Body = Annotated[str, msgspec.Meta(max_length=20_000)]


class Send(Command):
    room: Id
    body: Body = ""
    client_msg_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    reply_to: BigId | None = None
    files: Annotated[list[Id], msgspec.Meta(max_length=10)] = []


class Edit(Command):
    message: BigId
    body: Body


class Delete(Command):
    message: BigId


class React(Command):
    message: BigId
    emoji: Annotated[str, msgspec.Meta(max_length=64)]
    on: bool = True


class History(Command):
    room: Id
    before: Seq | None = None
    after: Seq | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)] = 50


class Read(Command):
    room: Id
    seq: Seq


class Typing(Command):
    room: Id


class Sync(Command):
    rooms: Annotated[list[SyncPoint], msgspec.Meta(max_length=5000)] = []


class _Event(msgspec.Struct):
    type: str = ""
    room: Any = None
    seq: int | None = None


class ChatSockets:
    """Registers chat commands on the socket server and keeps subscriptions right."""

    def __init__(self, chat: ChatService, hub: Hub) -> None:
        self._chat = chat
        self._hub = hub
        self._tasks = BackgroundTasks()

    def install(self, sockets: SocketServer) -> None:
        sockets.on_connect(self._on_connect)
        self._hub.add_user_watcher(self._watch_membership)
        sockets.register("chat.send", Send, self._send)
        sockets.register("chat.edit", Edit, self._edit)
        sockets.register("chat.delete", Delete, self._delete)
        sockets.register("chat.react", React, self._react)
        sockets.register("chat.history", History, self._history)
        sockets.register("chat.read", Read, self._read)
        sockets.register("chat.typing", Typing, self._typing)
        sockets.register("sync", Sync, self._sync)

    async def _on_connect(self, conn: Connection) -> None:
        identity = socket_identity(conn)
        for summary in await self._chat.my_rooms(identity):
            await self._hub.listen(conn, room_topic(summary.room.id))

    def _watch_membership(self, conn: Connection, payload: bytes) -> bool:
        if b'"room.' not in payload[:32]:
            return True
        try:
            event = msgspec.json.decode(payload, type=_Event)
        except msgspec.MsgspecError:
            return True
        if event.type == "room.joined" and isinstance(event.room, dict):
            self._spawn(self._hub.listen(conn, room_topic(int(event.room["id"]))))
        elif event.type == "room.left" and isinstance(event.room, int):
            self._hub.unlisten_now(conn, room_topic(event.room))
        return True

    def _spawn(self, coro: Any) -> None:
        self._tasks.spawn(coro)

    async def _send(self, conn: Connection, cmd: Send) -> dict[str, Any]:
        message, created = await self._chat.send(
            socket_identity(conn),
            cmd.room,
            cmd.body,
            client_msg_id=cmd.client_msg_id,
            reply_to=cmd.reply_to,
            file_ids=cmd.files,
        )
        return {"message": message, "duplicate": not created}

    async def _edit(self, conn: Connection, cmd: Edit) -> dict[str, Any]:
        return {"message": await self._chat.edit(socket_identity(conn), cmd.message, cmd.body)}

    async def _delete(self, conn: Connection, cmd: Delete) -> dict[str, Any]:
        return {"message": await self._chat.delete(socket_identity(conn), cmd.message)}

    async def _react(self, conn: Connection, cmd: React) -> dict[str, Any]:
        message = await self._chat.react(socket_identity(conn), cmd.message, cmd.emoji, on=cmd.on)
        return {"message": message}

    async def _history(self, conn: Connection, cmd: History) -> dict[str, Any]:
        messages, more = await self._chat.history(
            socket_identity(conn),
            cmd.room,
            before=cmd.before,
            after=cmd.after,
            limit=cmd.limit,
        )
        return {"messages": messages, "more": more}

    async def _read(self, conn: Connection, cmd: Read) -> dict[str, Any]:
        return {"seq": await self._chat.mark_read(socket_identity(conn), cmd.room, cmd.seq)}

    async def _typing(self, conn: Connection, cmd: Typing) -> dict[str, Any]:
        await self._chat.typing(socket_identity(conn), cmd.room)
        return {}

    async def _sync(self, conn: Connection, cmd: Sync) -> dict[str, Any]:
        """What the client missed, then live events: held back meanwhile, without repeats."""
        conn.hold()
        try:
            result = await self._chat.sync(socket_identity(conn), cmd.rooms)
        except BaseException:
            conn.release(lambda _frame: True)
            raise
        for summary in result["rooms"]:
            await self._hub.listen(conn, room_topic(summary.room.id))
        newest = {
            m["room"]: max((v.seq for v in m["messages"]), default=0) for m in result["missed"]
        }

        def not_seen(frame: bytes) -> bool:
            if not frame.startswith(b'{"type":"chat.message",'):
                return True
            try:
                event = msgspec.json.decode(frame, type=_Event)
            except msgspec.MsgspecError:
                return True
            return event.seq is None or event.seq > newest.get(event.room, 0)

        conn.after_answer.append(lambda: conn.release(not_seen))
        return result


class Search(Command):
    """``chat.search``: the fields of ``GET /api/v1/search``."""

    q: search_rules.Query = ""
    room: search_rules.RoomId | None = None
    sender: search_rules.Sender | None = None
    after: search_rules.Millis | None = None
    before: search_rules.Millis | None = None
    limit: search_rules.Limit = 20
    offset: search_rules.Offset = 0


def install_search(sockets: SocketServer, search: search_rules.SearchService) -> None:
    """Register ``chat.search``; apart from ChatSockets because search is its own service."""

    async def handle(conn: Connection, cmd: Search) -> dict[str, Any]:
        identity = socket_identity(conn)
        fields = msgspec.structs.asdict(cmd)
        del fields["id"], fields["type"]
        page = await search.search(identity, search_rules.SearchQuery(**fields))
        return {"results": page.results, "next_offset": page.next_offset}

    sockets.register("chat.search", Search, handle)
