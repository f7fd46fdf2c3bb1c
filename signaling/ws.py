"""The WebSocket endpoint: one per browser tab, at ``/ws``.

Authentication happens before the upgrade (the app's middleware resolves the
cookie or bearer token). The fabric then joins the connection to the hub,
lets the product subscribe it to what it needs, greets with ``hello``, keeps
it alive with heartbeats, and dispatches commands: each frame is checked
(size, JSON, envelope, the command's own typed struct, the user's rate)
before a handler sees it. A bad frame gets an error answer; the socket stays
usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from signaling import protocol
from signaling.connection import Connection
from signaling.hub import Hub
from signaling.ratelimit import PerKeyBuckets

log = logging.getLogger(__name__)

Handler = Callable[[Connection, Any], Awaitable[dict[str, Any] | None]]
ConnectHook = Callable[[Connection], Awaitable[None]]

FIRST_COMMAND_WAIT_S = 2.0
_START_TIMER = "ws.start_timer"


def _keep_all(_frame: bytes) -> bool:
    return True


# Frames up to this size are read and answered with frame_too_large; bigger
# ones close the socket (1009) because aiohttp would have to buffer them.
READ_LIMIT = 1024 * 1024


class _Command:
    def __init__(self, struct: type[Any], handler: Handler) -> None:
        self.decoder = msgspec.json.Decoder(struct)
        self.handler = handler


class Ping(protocol.Command):
    pass


class SocketServer:
    """Accepts sockets, tracks them through the hub, dispatches their commands."""

    def __init__(
        self,
        node_id: str,
        hub: Hub,
        *,
        heartbeat: float = 25.0,
        commands_per_second: float = 20.0,
        command_burst: float = 60.0,
    ) -> None:
        self.node_id = node_id
        self.hub = hub
        self.heartbeat = heartbeat
        self._commands: dict[str, _Command] = {}
        self._connect_hooks: list[ConnectHook] = []
        self._disconnect_hooks: list[ConnectHook] = []
        self._rates = PerKeyBuckets(commands_per_second, command_burst)
        self._closing = False
        self.on_count: list[Callable[[int], None]] = []
        # Turns an unexpected exception into an error answer the client can act on
        # (e.g. "unavailable" when the database is down), or None for "internal".
        self.error_mapper: Callable[[Exception], protocol.CommandError | None] | None = None
        self.register("ping", Ping, self._ping)

    def register(self, command_type: str, struct: type[Any], handler: Handler) -> None:
        """Route ``command_type`` frames, decoded into ``struct``, to ``handler``."""
        if command_type in self._commands:
            raise ValueError(f"a handler for {command_type!r} is already registered")
        self._commands[command_type] = _Command(struct, handler)

    def on_connect(self, hook: ConnectHook) -> None:
        """Run for each new connection before ``hello`` (e.g. listen to the user's rooms)."""
        self._connect_hooks.append(hook)

    def on_disconnect(self, hook: ConnectHook) -> None:
        """Run when a connection has ended, whatever the reason."""
        self._disconnect_hooks.append(hook)

    @property
    def accepting(self) -> bool:
        return not self._closing

    @property
    def open_count(self) -> int:
        return len(self.hub.connections)

    async def _ping(self, conn: Connection, command: Ping) -> dict[str, Any]:
        return {"server_time": int(time.time() * 1000)}

    def _count_changed(self) -> None:
        count = self.open_count
        for callback in self.on_count:
            callback(count)

    async def handle(
        self,
        request: web.Request,
        *,
        user_id: int,
        username: str,
        credential: str,
        hello: dict[str, Any],
        context: object = None,
    ) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.heartbeat, max_msg_size=READ_LIMIT, compress=False
        )
        await ws.prepare(request)
        conn = Connection(
            ws, user_id=user_id, username=username, credential=credential, context=context
        )
        conn.start()
        # hello goes first; commands are read only once the product's hooks have
        # subscribed the connection, so a `sync` never races its subscriptions.
        conn.push(
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
        # Live events wait until the client's first command: if that is `sync`, its
        # answer comes first and events it already contains are dropped, so a
        # resuming client sees no gap and no repeat. Clients that never sync get
        # their events after FIRST_COMMAND_WAIT_S.
        conn.hold()
        release_timer = asyncio.get_running_loop().call_later(
            FIRST_COMMAND_WAIT_S, lambda: conn.release(_keep_all)
        )
        conn.state[_START_TIMER] = release_timer
        await self.hub.add(conn)
        self._count_changed()
        try:
            for hook in self._connect_hooks:
                await hook(conn)
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._dispatch(conn, message.data)
                elif message.type == WSMsgType.BINARY:
                    conn.push_answer(
                        protocol.error(None, "bad_frame", "Send commands as JSON text frames.")
                    )
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            release_timer.cancel()
            await conn.stop()
            await self.hub.remove(conn)
            self._count_changed()
            for hook in self._disconnect_hooks:
                try:
                    await hook(conn)
                except Exception:
                    log.exception("disconnect hook failed for %s", conn.username)
        return ws

    async def _dispatch(self, conn: Connection, raw: str) -> None:
        command_id: str | None = None
        try:
            envelope, data = protocol.parse_envelope(raw)
            command_id = envelope.id
            timer = conn.state.pop(_START_TIMER, None)
            if isinstance(timer, asyncio.TimerHandle):
                timer.cancel()  # the first command decides; the timer must not undo a sync
            if conn.held and envelope.type != "sync":
                conn.release(_keep_all)
            command = self._commands.get(envelope.type)
            if command is None:
                raise protocol.FrameError(
                    "unknown_type", f"There is no command '{envelope.type}'.", command_id
                )
            wait = self._rates.take(conn.user_id)
            if wait:
                conn.push_answer(
                    protocol.error(
                        command_id,
                        "rate_limited",
                        "Too many commands; slow down.",
                        retry_after_ms=int(wait * 1000) + 1,
                    )
                )
                return
            try:
                parsed = command.decoder.decode(data)
            except msgspec.ValidationError as exc:
                raise protocol.FrameError(
                    "invalid_field",
                    f"The '{envelope.type}' command is not valid: {exc}.",
                    command_id,
                ) from None
            result = await command.handler(conn, parsed)
            conn.push_answer(protocol.ok(envelope.id, **(result or {})))
        except protocol.FrameError as exc:
            conn.push_answer(protocol.error(exc.command_id or command_id, exc.code, exc.message))
        except protocol.CommandError as exc:
            conn.push_answer(protocol.error(command_id, exc.code, exc.message, **exc.extra))
        except Exception as exc:
            mapped = self.error_mapper(exc) if self.error_mapper else None
            if mapped is not None:
                log.warning("socket command %s failed: %s", command_id, exc)
                conn.push_answer(protocol.error(command_id, mapped.code, mapped.message))
            else:
                log.exception("socket command failed user=%s", conn.username)
                conn.push_answer(
                    protocol.error(command_id, "internal", "The server could not do this command.")
                )
        finally:
            callbacks, conn.after_answer = conn.after_answer, []
            for callback in callbacks:
                callback()

    def stop_accepting(self) -> None:
        """New upgrades are refused from now on (the node is draining or stopping)."""
        self._closing = True

    async def send_away(self, conn: Connection, frame: bytes, code: int, reason: bytes) -> None:
        """Send ``frame`` as the socket's last frame, then close it with ``code``.

        Frames still queued for it are dropped, as for any 4000 close: the client
        reconnects and asks for what it missed with ``sync``."""
        await conn.stop()
        with contextlib.suppress(ConnectionResetError, RuntimeError):  # gone: nothing to tell
            await conn.ws.send_frame(frame, WSMsgType.TEXT)
        await conn.ws.close(code=code, message=reason)

    async def close_all(self) -> None:
        """Tell every client this node is going away, so they reconnect elsewhere."""
        self.stop_accepting()
        await asyncio.gather(
            *(
                conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                for conn in self.hub.connections
            ),
            return_exceptions=True,
        )
