"""Call commands sent to the node that holds the call.

A call lives on one media node. A socket on that node calls the service
directly; a socket elsewhere has its command carried there over the bus
(:mod:`collab.calls.relay`), with the user's id and the socket's key, and
the media node checks everything as it would for its own sockets. A new
call goes to the least loaded media node (the placement's choice).

Answers are the plain dictionaries the client gets, whichever way they came.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from collab.accounts.models import Identity
from collab.api.errors import Forbidden, Unavailable
from collab.calls.models import TrackId, TrackInfo
from collab.calls.placement import PlacementUnavailable
from collab.calls.relay import NodeRelay
from collab.calls.service import CallService, Joined
from collab.store import Store
from collab.store import users as user_sql

log = logging.getLogger(__name__)

SOCKET_SEPARATOR = "|"


def socket_key(node: str, token: str) -> str:
    """A socket's key names its node, so the call's node knows where to answer."""
    return f"{node}{SOCKET_SEPARATOR}{token}"


def socket_node(key: str) -> str:
    return key.rpartition(SOCKET_SEPARATOR)[0]


def joined_answer(joined: Joined) -> dict[str, Any]:
    return msgspec.to_builtins(
        {
            "call": joined.call,
            "participant": joined.participant,
            "ice_servers": joined.ice_servers,
            "media": joined.media,
            "left": joined.left,
        }
    )


class CallRouter:
    def __init__(self, calls: CallService, relay: NodeRelay, store: Store) -> None:
        self._calls = calls
        self._relay = relay
        self._store = store
        self.node = relay.node
        for op, handler in (
            ("start", self._remote_start),
            ("join", self._remote_join),
            ("decline", self._remote_decline),
            ("cancel", self._remote_cancel),
            ("leave", self._remote_leave),
            ("signal", self._remote_signal),
            ("tracks", self._remote_tracks),
            ("socket_closed", self._remote_socket_closed),
            ("calls_for", self._remote_calls_for),
            ("adopt", self._remote_adopt),
            ("leave_user", self._remote_leave_user),
        ):
            relay.handle(op, handler)

    # -- where a call is ------------------------------------------------------------

    async def node_of(self, call_id: int) -> str:
        """The node to ask about a call: this one when it holds it, or when the call
        is unknown or over (it answers the refusal), else the call's media node."""
        if self._calls.holds(call_id):
            return self.node
        record = await self._calls.record(call_id)
        if record is None or record.ended_at is not None or record.node == self.node:
            return self.node
        try:
            owner = (await self._calls.placement.leases([call_id]))[call_id]
        except PlacementUnavailable:
            owner = record.node
        if owner is None:
            raise Unavailable(
                "The call is moving to another server after a failure; try again in a few seconds.",
                code="call_moving",
                call=call_id,
            )
        return record.node

    async def _ask(self, node: str, op: str, identity: Identity, **args: Any) -> dict[str, Any]:
        return await self._relay.request(node, op, {"user": identity.user.id, **args})

    # -- the commands, from this node's sockets ----------------------------------------

    async def start(
        self, identity: Identity, socket: str, room_id: int, video: bool, participant: str
    ) -> tuple[str, dict[str, Any]]:
        """The node the call was started on, and the answer."""
        try:
            node = await self._calls.placement.pick() or self.node
        except PlacementUnavailable as exc:
            log.warning("no media node chosen (%s): the call stays here", exc)
            node = self.node
        if node == self.node:
            joined = await self._calls.start_call(identity, socket, room_id, video, participant)
            return node, joined_answer(joined)
        answer = await self._ask(
            node,
            "start",
            identity,
            socket=socket,
            room=room_id,
            video=video,
            participant=participant,
        )
        return node, answer

    async def join(
        self, identity: Identity, socket: str, call_id: int, participant: str
    ) -> tuple[str, dict[str, Any]]:
        """The node holding the call, and the answer."""
        node = await self.node_of(call_id)
        if node == self.node:
            joined = await self._calls.join(identity, socket, call_id, participant)
            return node, joined_answer(joined)
        answer = await self._ask(
            node, "join", identity, socket=socket, call=call_id, participant=participant
        )
        return node, answer

    async def decline(self, identity: Identity, call_id: int, text: str | None) -> None:
        node = await self.node_of(call_id)
        if node == self.node:
            await self._calls.decline(identity, call_id, text)
        else:
            await self._ask(node, "decline", identity, call=call_id, text=text)

    async def cancel(self, identity: Identity, call_id: int) -> None:
        node = await self.node_of(call_id)
        if node == self.node:
            await self._calls.cancel(identity, call_id)
        else:
            await self._ask(node, "cancel", identity, call=call_id)

    async def leave(self, identity: Identity, socket: str, call_id: int) -> None:
        node = await self.node_of(call_id)
        if node == self.node:
            await self._calls.leave(identity, socket, call_id)
        else:
            await self._ask(node, "leave", identity, socket=socket, call=call_id)

    async def signal(
        self, identity: Identity, socket: str, call_id: int, **fields: Any
    ) -> dict[str, Any]:
        node = await self.node_of(call_id)
        if node == self.node:
            return await self._calls.signal(identity, socket, call_id, **fields)
        return await self._ask(node, "signal", identity, socket=socket, call=call_id, **fields)

    async def set_tracks(
        self, identity: Identity, socket: str, call_id: int, tracks: dict[str, TrackInfo]
    ) -> dict[str, Any]:
        node = await self.node_of(call_id)
        if node == self.node:
            view = await self._calls.set_tracks(identity, socket, call_id, tracks)
            return {"call": msgspec.to_builtins(view)}
        return await self._ask(
            node,
            "tracks",
            identity,
            socket=socket,
            call=call_id,
            tracks=msgspec.to_builtins(tracks),
        )

    async def socket_closed(self, socket: str, nodes: set[str]) -> None:
        await self._calls.socket_closed(socket)
        for node in nodes - {self.node}:
            await self._relay.notify(node, "socket_closed", {"socket": socket})

    async def calls_for(self, identity: Identity) -> tuple[list[Any], list[dict[str, Any]]]:
        """The ongoing calls of the user's rooms and the rings for them, from every
        running node that holds one (one that does not answer at once is skipped)."""
        states, rings, elsewhere = await self._calls.calls_for(identity)
        found: list[Any] = [msgspec.to_builtins(s) for s in states]
        try:
            elsewhere = await self._calls.placement.alive(elsewhere)
        except PlacementUnavailable:
            return found, rings
        answers = await asyncio.gather(
            *(
                self._relay.request(node, "calls_for", {"user": identity.user.id}, timeout_s=1.0)
                for node in sorted(elsewhere)
            ),
            return_exceptions=True,
        )
        for answer in answers:
            if isinstance(answer, dict):
                found += answer.get("states", [])
                rings += answer.get("rings", [])
        return found, rings

    # -- the same commands, asked by other nodes ----------------------------------------

    async def _identity(self, args: dict[str, Any]) -> Identity:
        async with self._store.read() as conn:
            user = await user_sql.by_id(conn, int(args["user"]))
        if user is None or not user.active:
            raise Forbidden("This account is deactivated.", code="deactivated")
        return Identity(user=user)

    async def _remote_start(self, args: dict[str, Any]) -> dict[str, Any]:
        joined = await self._calls.start_call(
            await self._identity(args),
            args["socket"],
            int(args["room"]),
            bool(args["video"]),
            args["participant"],
        )
        return joined_answer(joined)

    async def _remote_join(self, args: dict[str, Any]) -> dict[str, Any]:
        joined = await self._calls.join(
            await self._identity(args), args["socket"], int(args["call"]), args["participant"]
        )
        return joined_answer(joined)

    async def _remote_decline(self, args: dict[str, Any]) -> None:
        await self._calls.decline(await self._identity(args), int(args["call"]), args["text"])

    async def _remote_cancel(self, args: dict[str, Any]) -> None:
        await self._calls.cancel(await self._identity(args), int(args["call"]))

    async def _remote_leave(self, args: dict[str, Any]) -> None:
        await self._calls.leave(await self._identity(args), args["socket"], int(args["call"]))

    async def _remote_signal(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self._calls.signal(
            await self._identity(args),
            args["socket"],
            int(args["call"]),
            pc=args["pc"],
            kind=args["kind"],
            sdp=args.get("sdp"),
            candidate=args.get("candidate"),
        )

    async def _remote_tracks(self, args: dict[str, Any]) -> dict[str, Any]:
        tracks = msgspec.convert(args["tracks"], dict[TrackId, TrackInfo])
        view = await self._calls.set_tracks(
            await self._identity(args), args["socket"], int(args["call"]), tracks
        )
        return {"call": msgspec.to_builtins(view)}

    async def _remote_socket_closed(self, args: dict[str, Any]) -> None:
        await self._calls.socket_closed(args["socket"])

    async def _remote_calls_for(self, args: dict[str, Any]) -> dict[str, Any]:
        states, rings, _ = await self._calls.calls_for(await self._identity(args))
        return {"states": msgspec.to_builtins(states), "rings": rings}

    async def _remote_adopt(self, args: dict[str, Any]) -> None:
        await self._calls.adopt(int(args["call"]))

    async def _remote_leave_user(self, args: dict[str, Any]) -> None:
        await self._calls.remove_user(int(args["call"]), int(args["user"]), reason="moved")
