"""Calls over the socket: the ``call.*`` commands, and which sockets hear a call.

Every command is a typed struct checked before the service runs. A socket
that joins a call listens to the call's topic (speaking, declines) and to
its own participant topic (the media server's offers), and stops when it
leaves. A socket that closes leaves its calls after a grace period (the
service's rule), so a reconnecting client can rejoin.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

import msgspec

from collab.api.fields import Id
from collab.calls.models import TrackId, TrackInfo
from collab.calls.service import CallService, Joined, call_topic, peer_topic
from collab.realtime import socket_identity
from signaling.connection import Connection
from signaling.hub import Hub
from signaling.protocol import Command, encode
from signaling.ws import SocketServer

SOCKET_KEY = "calls.socket"
MAX_SDP = 60_000


class Start(Command):
    room: Id
    video: bool = False


class Join(Command):
    call: Id


class Decline(Command):
    call: Id
    text: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class Leave(Command):
    call: Id


class Candidate(msgspec.Struct, forbid_unknown_fields=True):
    """An ICE candidate as the browser's ``RTCIceCandidate.toJSON()`` gives it."""

    candidate: Annotated[str, msgspec.Meta(max_length=1000)]
    sdpMid: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    sdpMLineIndex: Annotated[int, msgspec.Meta(ge=0, le=1000)] | None = None
    usernameFragment: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class Signal(Command):
    call: Id
    pc: Literal["publish", "subscribe"]
    kind: Literal["offer", "answer", "candidate"]
    sdp: Annotated[str, msgspec.Meta(max_length=MAX_SDP)] | None = None
    candidate: Candidate | None = None  # null with kind "candidate": no more candidates


class Tracks(Command):
    call: Id
    tracks: Annotated[dict[TrackId, TrackInfo], msgspec.Meta(max_length=8)]


class CallSockets:
    """Registers the call commands and keeps each socket on the topics of its calls."""

    def __init__(self, calls: CallService, hub: Hub) -> None:
        self._calls = calls
        self._hub = hub
        self._sockets: dict[str, Connection] = {}

    def install(self, sockets: SocketServer) -> None:
        sockets.on_connect(self._on_connect)
        sockets.on_disconnect(self._on_disconnect)
        self._calls.on_joined.append(self._joined)
        self._calls.on_gone.append(self._gone)
        sockets.register("call.start", Start, self._start)
        sockets.register("call.accept", Join, self._join)
        sockets.register("call.join", Join, self._join)
        sockets.register("call.decline", Decline, self._decline)
        sockets.register("call.cancel", Leave, self._cancel)
        sockets.register("call.leave", Leave, self._leave)
        sockets.register("call.signal", Signal, self._signal)
        sockets.register("call.tracks", Tracks, self._tracks)

    @staticmethod
    def _key(conn: Connection) -> str:
        key = conn.state.get(SOCKET_KEY)
        assert isinstance(key, str)
        return key

    async def _on_connect(self, conn: Connection) -> None:
        key = secrets.token_hex(8)
        conn.state[SOCKET_KEY] = key
        self._sockets[key] = conn
        states, rings = await self._calls.calls_for(socket_identity(conn))
        for state in states:
            conn.push(encode({"type": "call.state", **msgspec.structs.asdict(state)}))
        for ring in rings:
            conn.push(encode(ring))

    async def _on_disconnect(self, conn: Connection) -> None:
        key = conn.state.get(SOCKET_KEY)
        if isinstance(key, str):
            self._sockets.pop(key, None)
            await self._calls.socket_closed(key)

    async def _joined(self, socket: str, call_id: int, participant_id: str) -> None:
        """Listen before the media server can say anything to the new participant."""
        conn = self._sockets.get(socket)
        if conn is not None:
            await self._hub.listen(conn, call_topic(call_id))
            await self._hub.listen(conn, peer_topic(participant_id))

    def _gone(self, socket: str, call_id: int, participant_id: str, reason: str) -> None:
        """Tell the socket it is out of the call (straight to it: it stops listening to
        the call's topics at once), unless it left by itself."""
        conn = self._sockets.get(socket)
        if conn is None:
            return
        if reason != "left":
            conn.push(
                encode(
                    {
                        "type": "call.left",
                        "call": call_id,
                        "participant": participant_id,
                        "reason": reason,
                    }
                )
            )
        self._hub.unlisten_now(conn, call_topic(call_id))
        self._hub.unlisten_now(conn, peer_topic(participant_id))

    @staticmethod
    def _joined_answer(joined: Joined) -> dict[str, Any]:
        return {
            "call": joined.call,
            "participant": joined.participant,
            "ice_servers": joined.ice_servers,
            "media": joined.media,
            "left": joined.left,
        }

    async def _start(self, conn: Connection, cmd: Start) -> dict[str, Any]:
        joined = await self._calls.start_call(
            socket_identity(conn), self._key(conn), cmd.room, cmd.video
        )
        return self._joined_answer(joined)

    async def _join(self, conn: Connection, cmd: Join) -> dict[str, Any]:
        joined = await self._calls.join(socket_identity(conn), self._key(conn), cmd.call)
        return self._joined_answer(joined)

    async def _decline(self, conn: Connection, cmd: Decline) -> dict[str, Any]:
        await self._calls.decline(socket_identity(conn), cmd.call, cmd.text)
        return {}

    async def _cancel(self, conn: Connection, cmd: Leave) -> dict[str, Any]:
        await self._calls.cancel(socket_identity(conn), cmd.call)
        return {}

    async def _leave(self, conn: Connection, cmd: Leave) -> dict[str, Any]:
        await self._calls.leave(socket_identity(conn), self._key(conn), cmd.call)
        return {}

    async def _signal(self, conn: Connection, cmd: Signal) -> dict[str, Any]:
        candidate = msgspec.structs.asdict(cmd.candidate) if cmd.candidate else None
        return await self._calls.signal(
            socket_identity(conn),
            self._key(conn),
            cmd.call,
            pc=cmd.pc,
            kind=cmd.kind,
            sdp=cmd.sdp,
            candidate=candidate,
        )

    async def _tracks(self, conn: Connection, cmd: Tracks) -> dict[str, Any]:
        view = await self._calls.set_tracks(
            socket_identity(conn), self._key(conn), cmd.call, cmd.tracks
        )
        return {"call": view}
