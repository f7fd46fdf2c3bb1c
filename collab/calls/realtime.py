"""Calls over the socket: the ``call.*`` commands, and which sockets hear a call.

Every command is a typed struct checked before the service runs, then
sent to the node that holds the call (the router). A socket that joins a
call listens to the call's topic (speaking, declines, moves) and to its own
participant topic (the media server's offers) before it asks to join, so
nothing said to it is lost wherever the call lives, and stops when it
leaves. A socket that closes leaves its calls after a grace period (the
service's rule), so a reconnecting client can rejoin.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import msgspec

from collab.accounts.models import Identity
from collab.api.fields import Id
from collab.calls.models import TrackId, TrackInfo
from collab.calls.relay import NodeRelay
from collab.calls.router import CallRouter, socket_key, socket_node
from collab.calls.service import CallService, call_topic, new_participant_id, peer_topic
from collab.realtime import socket_identity
from signaling.connection import Connection
from signaling.hub import Hub
from signaling.protocol import Command, encode
from signaling.ws import SocketServer

SOCKET_KEY = "calls.socket"
Routed = tuple[str, dict[str, Any]]  # the node holding the call, and its answer
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

    def __init__(self, calls: CallService, router: CallRouter, relay: NodeRelay, hub: Hub) -> None:
        self._calls = calls
        self._router = router
        self._relay = relay
        self._hub = hub
        self._sockets: dict[str, Connection] = {}
        # socket key → call → (node holding it, participant id) for this node's sockets
        self._joined: dict[str, dict[int, tuple[str, str]]] = {}

    def install(self, sockets: SocketServer) -> None:
        sockets.on_connect(self._on_connect)
        sockets.on_disconnect(self._on_disconnect)
        self._calls.on_gone.append(self._gone)
        self._relay.handle("gone", self._remote_gone)
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
        key = socket_key(self._relay.node, secrets.token_hex(8))
        conn.state[SOCKET_KEY] = key
        self._sockets[key] = conn
        states, rings = await self._router.calls_for(socket_identity(conn))
        for state in states:
            conn.push(encode({"type": "call.state", **state}))
        for ring in rings:
            conn.push(encode(ring))

    async def _on_disconnect(self, conn: Connection) -> None:
        key = conn.state.get(SOCKET_KEY)
        if isinstance(key, str):
            self._sockets.pop(key, None)
            joined = self._joined.pop(key, {})
            await self._router.socket_closed(key, {node for node, _ in joined.values()})

    def _gone(self, socket: str, call_id: int, participant_id: str, reason: str) -> None:
        """Tell the socket it is out of the call, wherever the socket is."""
        if socket in self._sockets:
            self._forget(socket, call_id, participant_id, reason)
        elif socket and socket_node(socket) != self._relay.node:
            args = {"socket": socket, "call": call_id, "participant": participant_id}
            args["reason"] = reason
            self._calls.spawn(self._relay.notify(socket_node(socket), "gone", args))

    async def _remote_gone(self, args: dict[str, Any]) -> None:
        self._forget(args["socket"], int(args["call"]), args["participant"], args["reason"])

    def _forget(self, socket: str, call_id: int, participant_id: str, reason: str) -> None:
        """Straight to the socket (it stops listening to the call's topics at once),
        with no word if it left by itself."""
        conn = self._sockets.get(socket)
        calls = self._joined.get(socket, {})
        if conn is None or calls.get(call_id, ("", participant_id))[1] != participant_id:
            return  # gone already, or it joined the call again since
        calls.pop(call_id, None)
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

    async def _joining(
        self,
        conn: Connection,
        call_id: int | None,
        ask: Callable[[Identity, str, str], Awaitable[Routed]],
    ) -> dict[str, Any]:
        """Listen first, then ask the call's node; on a refusal stop listening again.
        A socket joining a call again drops its previous participant's topic."""
        identity = socket_identity(conn)
        key = self._key(conn)
        participant = new_participant_id(identity.user.id)
        await self._hub.listen(conn, peer_topic(participant))
        if call_id is not None:
            await self._hub.listen(conn, call_topic(call_id))
        calls = self._joined.setdefault(key, {})
        previous = calls.get(call_id) if call_id is not None else None
        if call_id is not None:
            # The old participant is replaced, not gone: no call.left for this socket.
            calls[call_id] = (previous[0] if previous else "", participant)
        try:
            node, answer = await ask(identity, key, participant)
        except BaseException:
            self._hub.unlisten_now(conn, peer_topic(participant))
            if call_id is not None:
                if previous is None:
                    calls.pop(call_id, None)
                    self._hub.unlisten_now(conn, call_topic(call_id))
                else:
                    calls[call_id] = previous
            raise
        joined_call = int(answer["call"]["call"])
        await self._hub.listen(conn, call_topic(joined_call))
        if previous is not None:
            self._hub.unlisten_now(conn, peer_topic(previous[1]))
        calls[joined_call] = (node, participant)
        return dict(answer)

    async def _start(self, conn: Connection, cmd: Start) -> dict[str, Any]:
        async def ask(identity: Identity, key: str, participant: str) -> Routed:
            return await self._router.start(identity, key, cmd.room, cmd.video, participant)

        return await self._joining(conn, None, ask)

    async def _join(self, conn: Connection, cmd: Join) -> dict[str, Any]:
        async def ask(identity: Identity, key: str, participant: str) -> Routed:
            return await self._router.join(identity, key, cmd.call, participant)

        return await self._joining(conn, cmd.call, ask)

    async def _decline(self, conn: Connection, cmd: Decline) -> dict[str, Any]:
        await self._router.decline(socket_identity(conn), cmd.call, cmd.text)
        return {}

    async def _cancel(self, conn: Connection, cmd: Leave) -> dict[str, Any]:
        await self._router.cancel(socket_identity(conn), cmd.call)
        return {}

    async def _leave(self, conn: Connection, cmd: Leave) -> dict[str, Any]:
        await self._router.leave(socket_identity(conn), self._key(conn), cmd.call)
        return {}

    async def _signal(self, conn: Connection, cmd: Signal) -> dict[str, Any]:
        candidate = msgspec.structs.asdict(cmd.candidate) if cmd.candidate else None
        return await self._router.signal(
            socket_identity(conn),
            self._key(conn),
            cmd.call,
            pc=cmd.pc,
            kind=cmd.kind,
            sdp=cmd.sdp,
            candidate=candidate,
        )

    async def _tracks(self, conn: Connection, cmd: Tracks) -> dict[str, Any]:
        return await self._router.set_tracks(
            socket_identity(conn), self._key(conn), cmd.call, cmd.tracks
        )
