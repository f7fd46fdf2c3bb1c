"""The WebSocket endpoint: one per browser tab, at ``/ws``.

Authentication happens before the upgrade (the app's middleware resolves the
cookie or bearer token and hands the handler an identity). The fabric then
greets with ``hello``, keeps the socket alive with heartbeats, validates every
frame and dispatches commands to handlers the product registers by type. A
bad frame is answered with an error; it never ends the connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from signaling import protocol
from signaling.bus import Bus

log = logging.getLogger(__name__)

CommandHandler = Callable[["Connection", protocol.Envelope, bytes], Awaitable[dict[str, Any]]]


class Connection:
    """One live socket, who is on the other end, and the credential they used."""

    def __init__(
        self, ws: web.WebSocketResponse, user_id: int, username: str, credential: str
    ) -> None:
        self.ws = ws
        self.user_id = user_id
        self.username = username
        self.credential = credential

    async def send(self, frame: bytes) -> None:
        await self.ws.send_str(frame.decode())


class SocketServer:
    """Accepts sockets, tracks them, dispatches their commands."""

    def __init__(self, node_id: str, bus: Bus, heartbeat: float = 25.0) -> None:
        self.node_id = node_id
        self._bus = bus
        self._background: set[asyncio.Task[Any]] = set()
        self.heartbeat = heartbeat
        self._handlers: dict[str, CommandHandler] = {"ping": self._ping}
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self._closing = False
        self.on_open: list[Callable[[int], None]] = []
        self.on_close: list[Callable[[int], None]] = []

    def register(self, command_type: str, handler: CommandHandler) -> None:
        if command_type in self._handlers:
            raise ValueError(f"a handler for {command_type!r} is already registered")
        self._handlers[command_type] = handler

    @property
    def accepting(self) -> bool:
        return not self._closing

    @property
    def open_count(self) -> int:
        return len(self._sockets)

    async def _ping(
        self, conn: Connection, envelope: protocol.Envelope, raw: bytes
    ) -> dict[str, Any]:
        return {"server_time": int(time.time() * 1000)}

    async def handle(
        self,
        request: web.Request,
        *,
        user_id: int,
        username: str,
        credential: str,
        hello: dict[str, Any],
    ) -> web.WebSocketResponse:
        if self._closing:
            raise web.HTTPServiceUnavailable(reason="node is shutting down")
        ws = web.WebSocketResponse(
            heartbeat=self.heartbeat, max_msg_size=protocol.MAX_FRAME_BYTES * 2
        )
        await ws.prepare(request)
        self._sockets.add(ws)
        for callback in self.on_open:
            callback(len(self._sockets))
        conn = Connection(ws, user_id, username, credential)
        subscription = await self._bus.subscribe(
            protocol.user_topic(user_id), lambda _topic, payload: self._on_user_event(conn, payload)
        )
        try:
            await conn.send(
                protocol.encode(
                    {
                        "type": "hello",
                        "node": self.node_id,
                        "heartbeat": self.heartbeat,
                        "server_time": int(time.time() * 1000),
                        **hello,
                    }
                )
            )
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._dispatch(conn, message.data)
                elif message.type == WSMsgType.BINARY:
                    await conn.send(
                        protocol.error(None, "bad_frame", "Send commands as JSON text frames.")
                    )
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            await subscription.close()
            self._sockets.discard(ws)
            for callback in self.on_close:
                callback(len(self._sockets))
        return ws

    def _on_user_event(self, conn: Connection, payload: bytes) -> None:
        revocation = protocol.read_revocation(payload)
        if revocation is not None and revocation.ends(conn.credential):
            task = asyncio.create_task(
                conn.ws.close(code=protocol.SESSION_ENDED_CLOSE_CODE, message=b"session ended")
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _dispatch(self, conn: Connection, raw: str) -> None:
        command_id: str | None = None
        try:
            envelope, data = protocol.parse_envelope(raw)
            command_id = envelope.id
            handler = self._handlers.get(envelope.type)
            if handler is None:
                raise protocol.FrameError(
                    "unknown_type", f"There is no command '{envelope.type}'.", command_id
                )
            result = await handler(conn, envelope, data)
            await conn.send(protocol.ok(envelope.id, **result))
        except protocol.FrameError as exc:
            await conn.send(protocol.error(exc.command_id or command_id, exc.code, exc.message))
        except Exception:
            log.exception("socket command failed user=%s", conn.username)
            await conn.send(
                protocol.error(command_id, "internal", "The server could not do this command.")
            )

    async def close_all(self) -> None:
        """Tell every client this node is going away, so they reconnect elsewhere."""
        self._closing = True
        sockets = list(self._sockets)
        await asyncio.gather(
            *(
                ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                for ws in sockets
            ),
            return_exceptions=True,
        )
