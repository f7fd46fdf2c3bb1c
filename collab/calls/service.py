"""The rules of calls: ringing, who is in a call, and when a call ends.

A room holds at most one call at a time (a partial unique index in the
database says so, whichever node asks). A call lives on its media node
(chosen by the router when it starts; see ``router`` and ``placement``): its
live state (who is ringing, who is in it, their tracks) is kept in memory
there, next to the media server that carries its audio and video, and the
commands of sockets on other nodes are carried to it. The call log, the
stints of each participant and the system messages in the room's history are
stored, so they outlive the node; a call whose node stops or dies moves to
another node, which adopts it from the stored stints (``move``, ``adopt``).

Everything other people must see goes through the bus, even on one node:
``call.ring`` and ``call.ring_ended`` to each invitee's user topic (every
socket they have open, on every node), ``call.state`` and ``call.ended`` to
the room's topic, ``call.speaking`` and ``call.declined`` to the call's own
topic (its participants), and the media server's offers to the participant's
topic (the one socket that joined).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError

from collab.accounts.models import Identity
from collab.api.errors import BadRequest, Conflict, Forbidden, NotFound, Unavailable
from collab.calls.media import MediaPort, media_error_code
from collab.calls.models import (
    CallLogEntry,
    CallView,
    ParticipantView,
    StintView,
    TrackInfo,
    participant_flags,
)
from collab.calls.placement import LocalPlacement, Placement, PlacementUnavailable
from collab.calls.turn import IceServer, ice_servers
from collab.chat.models import UserRef
from collab.chat.service import ChatService, room_topic
from collab.presence.service import PresenceService
from collab.store import Store
from collab.store import calls as call_sql
from collab.store import rooms as room_sql
from collab.store import users as user_sql
from collab.store.calls import CallRecord
from signaling.bus import Bus, BusUnavailable
from signaling.protocol import CommandError, encode, user_topic
from signaling.tasks import BackgroundTasks

log = logging.getLogger(__name__)

MAX_RING = 25
"""Rooms with more members than this ring nobody: a call there is joined from the room."""
MAX_DECLINE_TEXT = 200
SPEAKING_MIN_INTERVAL_S = 0.25
MAX_TRACKS = 8


def call_topic(call_id: int) -> str:
    """The participants of a call (speaking, declines)."""
    return f"call:{call_id}"


def peer_topic(participant_id: str) -> str:
    """The one socket a participant joined from (the media server's offers to it)."""
    return f"callpeer:{participant_id}"


def _ref(user: Any) -> UserRef:
    return UserRef(user.id, user.username, user.display_name)


def _duration_text(ms: int) -> str:
    seconds = max(0, ms // 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"


def _names(people: list[UserRef]) -> str:
    names = [p.display_name for p in people]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def new_participant_id(user_id: int) -> str:
    """Made by the socket's node before it asks the call's node, so the socket listens
    to the participant's topic before the media server can say anything on it."""
    return f"{user_id}.{secrets.token_hex(6)}"


# Asks another node to do something for a call: (node, operation, arguments).
AskNode = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class Participant:
    id: str
    user: UserRef
    socket: str  # the key of the socket it joined from ("" until someone rejoins a moved call)
    joined_at: int
    tracks: dict[str, TrackInfo] = field(default_factory=dict)
    connected: bool = True
    quality: str | None = None
    grace: asyncio.TimerHandle | None = None

    def view(self) -> ParticipantView:
        muted, camera, screen = participant_flags(self.tracks)
        return ParticipantView(
            id=self.id,
            user=self.user,
            joined_at=self.joined_at,
            connected=self.connected,
            tracks=dict(self.tracks),
            muted=muted,
            camera=camera,
            screen=screen,
            quality=self.quality,
        )


@dataclass
class LiveCall:
    """A call held by this node."""

    record: CallRecord
    caller: UserRef | None
    room_kind: str
    room_name: str | None
    participants: dict[str, Participant] = field(default_factory=dict)
    ringing: dict[int, UserRef] = field(default_factory=dict)
    missed: dict[int, UserRef] = field(default_factory=dict)
    declined: dict[int, UserRef] = field(default_factory=dict)
    took_part: dict[int, UserRef] = field(default_factory=dict)
    answered_at: int | None = None
    ring_timer: asyncio.TimerHandle | None = None
    ended: bool = False
    media_tracks: Any = None
    speaking: list[str] = field(default_factory=list)
    speaking_sent_at: float = 0.0
    speaking_timer: asyncio.TimerHandle | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def id(self) -> int:
        return self.record.id

    def of_user(self, user_id: int) -> Participant | None:
        return next((p for p in self.participants.values() if p.user.id == user_id), None)


@dataclass(frozen=True)
class Joined:
    """What a socket needs after joining: the call, its own participant id, ICE servers."""

    call: CallView
    participant: str
    ice_servers: list[IceServer]
    media: bool
    left: int | None  # the call the user was in before and left to join this one


# Called when a participant stops being one, so the socket layer stops listening
# for it: (socket key, call id, participant id, reason: left, replaced, moved,
# disconnected, ended).
GoneHook = Callable[[str, int, str, str], None]


class CallService:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        chat: ChatService,
        presence: PresenceService,
        clock: Callable[[], int],
        *,
        node: str,
        ring_timeout_s: float = 45.0,
        rejoin_grace_s: float = 15.0,
        stun_urls: tuple[str, ...] = (),
        turn_urls: tuple[str, ...] = (),
        turn_secret: str = "",
        turn_ttl_s: int = 43200,
        media: MediaPort | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._chat = chat
        self._presence = presence
        self._clock = clock
        self.node = node
        self.ring_timeout_s = ring_timeout_s
        self.rejoin_grace_s = rejoin_grace_s
        self._stun_urls = stun_urls
        self._turn_urls = turn_urls
        self._turn_secret = turn_secret
        self._turn_ttl_s = turn_ttl_s
        self._live: dict[int, LiveCall] = {}
        self._in_call: dict[int, int] = {}  # user id → the call they are in on this node
        self._tasks = BackgroundTasks()
        self.on_gone: list[GoneHook] = []
        self._media: MediaPort | None = None
        if media is not None:
            self.attach_media(media)
        self.placement: Placement = LocalPlacement(node, True)
        self.ask_node: AskNode | None = None

    def attach_media(self, media: MediaPort) -> None:
        """Plug the media server in and take its callbacks."""
        self._media = media
        media.on_signal = self._media_signal
        media.on_tracks = self._media_tracks
        media.on_speaking = self._media_speaking
        media.on_quality = self._media_quality

    # -- lifecycle -------------------------------------------------------------------

    async def recover(self) -> None:
        """At start-up: calls this node held when it stopped (or crashed) ended with it.
        A single node ends every ongoing call: any other node named in the log was this
        one under another name (a node id is host:port unless set)."""
        async with self._store.read() as conn:
            stale = await call_sql.ongoing_on_node(conn, self.node)
            if isinstance(self.placement, LocalPlacement):
                stale += await call_sql.ongoing_elsewhere(conn, self.node)
        for record in stale:
            log.warning("call %s ended: its node restarted", record.id)
            await self.end_orphaned(record, reason="node_restarted")

    async def end_orphaned(self, record: CallRecord, *, reason: str) -> None:
        """End a call whose node is gone with its live state: log, room, presence."""
        now = self._clock()
        outcome = "completed" if record.answered_at is not None else "missed"
        async with self._store.transaction() as conn:
            stints = (await call_sql.stints(conn, [record.id]))[record.id]
            if not await call_sql.end(conn, record.id, now=now, outcome=outcome):
                return
        for user_id in {s.user_id for s in stints if s.left_at is None}:
            await self._presence.set_in_call(user_id, None)
        await self._publish(
            room_topic(record.room_id),
            {
                "type": "call.ended",
                "call": record.id,
                "room": record.room_id,
                "outcome": outcome,
                "reason": reason,
                "duration_ms": 0,
                "participants": [],
            },
        )

    async def hand_over(self) -> None:
        """The node is draining: its calls move to the least loaded other node (their
        clients are told to rejoin there); with no node to take them, they end."""
        await self.placement.withdraw()
        for live in list(self._live.values()):
            try:
                target = await self.placement.pick(exclude=[self.node])
            except PlacementUnavailable:
                target = None
            try:
                if target is None or self.ask_node is None:
                    await self._end(live, reason="node_stopped")
                elif await self.move(live.record, target):
                    await self.let_go(live.id)
            except Exception:
                log.exception("call %s not handed over", live.id)

    async def move(self, record: CallRecord, target: str) -> bool:
        """Give the call to the media node ``target``: record it, have it adopt the
        call, and tell the participants to rejoin there (``call.moved``). False if the
        call had moved or ended already."""
        async with self._store.transaction() as conn:
            if not await call_sql.move(conn, record.id, from_node=record.node, to_node=target):
                return False
        with contextlib.suppress(PlacementUnavailable):
            await self.placement.claim(record.id, target)
        if target == self.node:
            await self.adopt(record.id)
        elif self.ask_node is not None:
            await self.ask_node(target, "adopt", {"call": record.id})
        # To the room (every participant is a member, and one whose socket was on the
        # lost node hears it after reconnecting too).
        event = {"type": "call.moved", "call": record.id, "room": record.room_id}
        await self._publish(room_topic(record.room_id), event)
        log.warning("call %s moved from node %s to %s", record.id, record.node, target)
        return True

    async def adopt(self, call_id: int) -> LiveCall:
        """Hold a call that was moved here: its people are kept as not connected for
        the grace period, so the call goes on while they rejoin."""
        live = self._live.get(call_id)
        if live is not None:
            return live
        async with self._store.read() as conn:
            record = await call_sql.by_id(conn, call_id)
            if record is None or record.ended_at is not None or record.node != self.node:
                raise Conflict("This call has ended.", code="call_ended")
            room = await room_sql.by_id(conn, record.room_id)
            stints = [s for s in (await call_sql.stints(conn, [call_id]))[call_id]]
            people = await user_sql.by_ids(
                conn, {s.user_id for s in stints} | ({record.started_by} - {None})
            )
        live = self._live.get(call_id)  # adopted meanwhile by a concurrent request
        if live is not None:
            return live
        caller = people.get(record.started_by) if record.started_by else None
        live = LiveCall(
            record,
            _ref(caller) if caller else None,
            room.kind if room else "channel",
            room.name if room else None,
            answered_at=record.answered_at,
        )
        self._live[call_id] = live
        loop = asyncio.get_running_loop()
        for stint in stints:
            user = people.get(stint.user_id)
            if user is None:
                continue
            live.took_part[user.id] = _ref(user)
            if stint.left_at is not None or live.of_user(user.id) is not None:
                continue
            placeholder = Participant(
                id=new_participant_id(user.id),
                user=_ref(user),
                socket="",
                joined_at=stint.joined_at,
                connected=False,
            )
            placeholder.grace = loop.call_later(
                self.rejoin_grace_s,
                lambda p=placeholder: self.spawn(self._grace_over(live, p)),
            )
            live.participants[placeholder.id] = placeholder
            self._in_call[user.id] = call_id
        if live.answered_at is None:
            left = record.started_at / 1000 + self.ring_timeout_s - self._clock() / 1000
            live.ring_timer = loop.call_later(
                max(0.0, left), lambda: self.spawn(self._ring_out(live))
            )
        with contextlib.suppress(PlacementUnavailable):
            await self.placement.claim(call_id)
        if not live.participants and live.answered_at is not None:
            await self._end(live, reason="left")
        else:
            await self._publish_state(live)
        log.info("call %s adopted with %d people to rejoin", call_id, len(live.participants))
        return live

    async def let_go(self, call_id: int) -> None:
        """The call moved to another node: forget it here without ending it (its
        people are still in it, presence included, and rejoin on the new node)."""
        live = self._live.pop(call_id, None)
        if live is None:
            return
        live.ended = True
        for timer in (live.ring_timer, live.speaking_timer):
            if timer is not None:
                timer.cancel()
        for participant in live.participants.values():
            if participant.grace is not None:
                participant.grace.cancel()
            if self._in_call.get(participant.user.id) == call_id:
                del self._in_call[participant.user.id]
        if self._media is not None:
            try:
                await self._media.end_call(str(call_id))
            except Exception as exc:
                log.warning("media of call %s not closed: %s", call_id, exc)

    def lost(self, call_id: int) -> None:
        """Another node holds the call's lease: it took the call over."""
        self.spawn(self.let_go(call_id))

    # -- what other parts ask ---------------------------------------------------------

    def holds(self, call_id: int) -> bool:
        live = self._live.get(call_id)
        return live is not None and not live.ended

    def held_ids(self) -> list[int]:
        return [c for c, live in self._live.items() if not live.ended]

    def load(self) -> float:
        """The load figure other nodes compare when they place a call: people in calls."""
        return float(sum(len(live.participants) for live in self._live.values()))

    async def record(self, call_id: int) -> CallRecord | None:
        async with self._store.read() as conn:
            return await call_sql.by_id(conn, call_id)

    async def ongoing_elsewhere(self) -> list[CallRecord]:
        async with self._store.read() as conn:
            return await call_sql.ongoing_elsewhere(conn, self.node)

    async def close(self) -> None:
        """The node is stopping: end its calls properly (messages, log, presence)."""
        for live in list(self._live.values()):
            with contextlib.suppress(Exception):
                await self._end(live, reason="node_stopped")
        self._tasks.cancel_all()

    # -- publishing ------------------------------------------------------------------

    async def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        try:
            await self._bus.publish(topic, encode(payload))
        except BusUnavailable:
            log.warning("call event for %s not published: bus unavailable", topic)

    def spawn(self, coro: Any) -> None:
        self._tasks.spawn(coro)

    def view(self, live: LiveCall) -> CallView:
        return CallView(
            call=live.id,
            room=live.record.room_id,
            video=live.record.video,
            started_by=live.caller,
            started_at=live.record.started_at,
            answered_at=live.answered_at,
            ringing=list(live.ringing.values()),
            participants=[p.view() for p in live.participants.values()],
            media_tracks=live.media_tracks,
        )

    def _state_event(self, live: LiveCall) -> dict[str, Any]:
        return {"type": "call.state", **_asdict(self.view(live))}

    async def _publish_state(self, live: LiveCall) -> None:
        if not live.ended:
            await self._publish(room_topic(live.record.room_id), self._state_event(live))

    def _ice_servers(self, user_id: int) -> list[IceServer]:
        return ice_servers(
            stun_urls=self._stun_urls,
            turn_urls=self._turn_urls,
            turn_secret=self._turn_secret,
            turn_ttl_s=self._turn_ttl_s,
            user_id=user_id,
            now_ms=self._clock(),
        )

    # -- finding calls ---------------------------------------------------------------

    async def _live_call(self, identity: Identity, call_id: int) -> LiveCall:
        """The call, if the caller may see it (a member of its room) and it is held here.
        A call in a room the caller is not in does not exist for them, like the room."""
        live = self._live.get(call_id)
        room_id = live.record.room_id if live is not None and not live.ended else None
        record = None
        if room_id is None:
            async with self._store.read() as conn:
                record = await call_sql.by_id(conn, call_id)
            if record is None:
                raise NotFound("There is no such call.", code="call_not_found")
            room_id = record.room_id
        try:
            await self._chat.require_member(identity, room_id)
        except NotFound:
            raise NotFound("There is no such call.", code="call_not_found") from None
        if record is None and live is not None:
            return live
        assert record is not None
        if record.ended_at is None and record.node == self.node:
            return await self.adopt(call_id)  # moved here, and asked before the adoption
        if record.ended_at is not None or record.node == self.node:
            raise Conflict("This call has ended.", code="call_ended")
        # The caller's node thought the call was here: it moved in between.
        raise Unavailable(
            "The call has just moved to another server; try again in a moment.",
            code="call_moving",
            call=call_id,
        )

    def _mine(self, live: LiveCall, identity: Identity, socket: str) -> Participant:
        participant = live.of_user(identity.user.id)
        if participant is None or participant.socket != socket:
            raise Forbidden("Join the call from this socket first.", code="not_in_call")
        return participant

    # -- starting, ringing, answering ----------------------------------------------

    async def start_call(
        self,
        identity: Identity,
        socket: str,
        room_id: int,
        video: bool,
        participant_id: str | None = None,
    ) -> Joined:
        room = await self._chat.require_member(identity, room_id)
        if room.archived_at is not None:
            raise Forbidden(
                "This room is archived; it can be read but not changed.", code="archived"
            )
        now = self._clock()
        try:
            async with self._store.transaction() as conn:
                record = await call_sql.insert(
                    conn,
                    room_id=room_id,
                    started_by=identity.user.id,
                    video=video,
                    node=self.node,
                    now=now,
                )
                member_ids = await room_sql.member_ids(conn, room_id)
                others = [uid for uid in member_ids if uid != identity.user.id]
                invitees = (
                    await user_sql.by_ids(conn, others) if len(member_ids) <= MAX_RING else {}
                )
        except IntegrityError:
            async with self._store.read() as conn:
                existing = await call_sql.ongoing_in_room(conn, room_id)
            raise Conflict(
                "This room has a call already; join it.",
                code="call_exists",
                call=existing.id if existing else None,
            ) from None
        caller = _ref(identity.user)
        live = LiveCall(record, caller, room.kind, room.name)
        self._live[record.id] = live
        try:
            await self.placement.claim(record.id)
        except PlacementUnavailable as exc:
            log.warning("call %s has no lease yet (renewed later): %s", record.id, exc)
        what = "a video call" if video else "a call"
        await self._chat.post_system(
            room_id,
            identity.user.id,
            f"{identity.user.display_name} started {what}",
            {"event": "call_started", "call": record.id, "video": video},
        )
        left = await self._leave_other_call(identity, record.id)
        async with live.lock:
            rung = await self._pick_ringing(live, [u for u in invitees.values() if u.active])
            joined = await self._join_locked(live, identity, socket, participant_id)
            for ref, quiet in rung:
                await self._publish(user_topic(ref.id), self._ring_event(live, quiet=quiet))
            live.ring_timer = asyncio.get_running_loop().call_later(
                self.ring_timeout_s, lambda: self.spawn(self._ring_out(live))
            )
        log.info("call %s started in room %s by %s", record.id, room_id, identity.user.username)
        return dataclasses.replace(joined, left=left)

    async def _pick_ringing(
        self, live: LiveCall, invitees: list[Any]
    ) -> list[tuple[UserRef, bool]]:
        """Who is rung and how: dnd is not rung (missed, silently), someone in a call
        already is rung quietly (no ring sound). Returns (person, quiet) to ring."""
        if not invitees:
            return []
        ids = [u.id for u in invitees]
        presences = await self._presence.current(ids)
        busy_in_call = await self._presence.in_call(ids)
        rung = []
        for user in invitees:
            ref = _ref(user)
            if presences[user.id].status == "dnd":
                live.missed[user.id] = ref
                continue
            live.ringing[user.id] = ref
            rung.append((ref, user.id in busy_in_call))
        return rung

    def _ring_event(self, live: LiveCall, *, quiet: bool) -> dict[str, Any]:
        return {
            "type": "call.ring",
            "call": live.id,
            "room": live.record.room_id,
            "room_name": live.room_name,
            "room_kind": live.room_kind,
            "caller": live.caller,
            "video": live.record.video,
            "quiet": quiet,
            "started_at": live.record.started_at,
            "expires_at": live.record.started_at + int(self.ring_timeout_s * 1000),
        }

    async def _stop_ringing(self, live: LiveCall, user_id: int, reason: str) -> None:
        await self._publish(
            user_topic(user_id), {"type": "call.ring_ended", "call": live.id, "reason": reason}
        )

    async def _ring_out(self, live: LiveCall) -> None:
        """The ring timeout: whoever has not answered missed the call; an unanswered
        call ends here."""
        async with live.lock:
            live.ring_timer = None
            if live.ended:
                return
            for user_id, ref in list(live.ringing.items()):
                live.missed[user_id] = ref
                await self._stop_ringing(live, user_id, "timeout")
            live.ringing.clear()
            if live.answered_at is None:
                await self._end(live, reason="no_answer")
            else:
                await self._publish_state(live)

    async def decline(self, identity: Identity, call_id: int, text: str | None) -> None:
        clean = _clean_text(text or "")
        live = await self._live_call(identity, call_id)
        async with live.lock:
            me = identity.user
            if live.ended or me.id not in live.ringing:
                raise Conflict("This call is not ringing you.", code="not_ringing")
            ref = live.ringing.pop(me.id)
            live.declined[me.id] = ref
            await self._stop_ringing(live, me.id, "declined")
            await self._publish(
                call_topic(live.id),
                {"type": "call.declined", "call": live.id, "user": ref, "text": clean or None},
            )
            if not live.ringing and live.answered_at is None:
                await self._end(live, reason="declined")
            else:
                await self._publish_state(live)

    async def join(
        self, identity: Identity, socket: str, call_id: int, participant_id: str | None = None
    ) -> Joined:
        """Answer a ringing call or join an ongoing one. Joining from a second socket
        moves the user there; joining while in another call leaves that one first."""
        live = await self._live_call(identity, call_id)
        room = await self._chat.require_member(identity, live.record.room_id)
        if room.archived_at is not None:
            raise Forbidden(
                "This room is archived; it can be read but not changed.", code="archived"
            )
        left = await self._leave_other_call(identity, live.id)
        async with live.lock:
            if live.ended:
                raise Conflict("This call has ended.", code="call_ended")
            joined = await self._join_locked(live, identity, socket, participant_id)
        return dataclasses.replace(joined, left=left)

    async def _leave_other_call(self, identity: Identity, call_id: int) -> int | None:
        """One call at a time per user: joining one leaves the other (before taking the
        new call's lock, so two people crossing calls cannot wait on each other)."""
        other_id = self._in_call.get(identity.user.id)
        other = self._live.get(other_id) if other_id is not None else None
        if other is None:
            return await self._leave_call_elsewhere(identity.user.id, call_id)
        if other_id == call_id:
            return None
        async with other.lock:
            previous = other.of_user(identity.user.id)
            if previous is None or other.ended:
                return None
            await self._remove(other, previous, reason="moved")
        return other.id

    async def _leave_call_elsewhere(self, user_id: int, call_id: int) -> int | None:
        """The user's other call is held by another node: ask it to let the user go."""
        try:
            other = await self._presence.call_of(user_id)
            other_id = int(other) if other else None
        except (ValueError, RedisError, OSError) as exc:
            log.warning("could not tell which call user %s is in: %s", user_id, exc)
            return None
        if other_id is None or other_id == call_id or self.ask_node is None:
            return None
        record = await self.record(other_id)
        if record is None or record.ended_at is not None or record.node == self.node:
            return None
        try:
            await self.ask_node(record.node, "leave_user", {"user": user_id, "call": other_id})
        except CommandError as exc:
            log.warning("user %s not taken out of call %s: %s", user_id, other_id, exc)
            return None
        return other_id

    async def remove_user(self, call_id: int, user_id: int, *, reason: str) -> None:
        """Take a user out of a call held here (they joined another call elsewhere)."""
        live = self._live.get(call_id)
        if live is None:
            return
        async with live.lock:
            participant = live.of_user(user_id)
            if participant is not None and not live.ended:
                await self._remove(live, participant, reason=reason)

    async def _join_locked(
        self, live: LiveCall, identity: Identity, socket: str, participant_id: str | None
    ) -> Joined:
        me = identity.user
        now = self._clock()
        replaced = live.of_user(me.id)
        if replaced is not None:
            await self._drop(live, replaced, reason="replaced")
        participant = Participant(
            id=participant_id or new_participant_id(me.id),
            user=_ref(me),
            socket=socket,
            joined_at=replaced.joined_at if replaced else now,
        )
        live.participants[participant.id] = participant
        live.took_part[me.id] = participant.user
        self._in_call[me.id] = live.id
        answered_now = False
        if (live.caller is None or me.id != live.caller.id) and live.answered_at is None:
            live.answered_at = now
            answered_now = True
        async with self._store.transaction() as conn:
            await call_sql.join(conn, live.id, me.id, now)
            if answered_now:
                await call_sql.mark_answered(conn, live.id, now)
        if me.id in live.ringing:
            del live.ringing[me.id]
            await self._stop_ringing(live, me.id, "answered")
        await self._presence.set_in_call(me.id, str(live.id))
        await self.placement.report_load()
        media = False
        if self._media is not None:
            try:
                await self._media.join(str(live.id), participant.id)
                media = True
            except Exception as exc:
                log.warning("media join failed for call %s: %s", live.id, exc)
        await self._publish_state(live)
        return Joined(
            call=self.view(live),
            participant=participant.id,
            ice_servers=self._ice_servers(me.id),
            media=media,
            left=None,
        )

    # -- leaving and ending ---------------------------------------------------------

    async def leave(self, identity: Identity, socket: str, call_id: int) -> None:
        live = await self._live_call(identity, call_id)
        async with live.lock:
            participant = self._mine(live, identity, socket)
            await self._remove(live, participant, reason="left")

    async def cancel(self, identity: Identity, call_id: int) -> None:
        """The caller stops ringing everyone; with nobody else in it, the call ends."""
        live = await self._live_call(identity, call_id)
        async with live.lock:
            if live.caller is None or live.caller.id != identity.user.id:
                raise Forbidden("Only the caller can cancel a call.")
            if live.ended or live.answered_at is not None:
                raise Conflict("The call has been answered; leave it instead.", code="answered")
            await self._end(live, reason="cancelled")

    async def _drop(self, live: LiveCall, participant: Participant, *, reason: str) -> None:
        """Take one participant out of the call (media, sockets); the caller of this
        decides what that means for the user and the call."""
        live.participants.pop(participant.id, None)
        if participant.grace is not None:
            participant.grace.cancel()
        if not participant.socket:
            return  # a place kept for someone who had not rejoined a moved call
        if self._media is not None:
            try:
                await self._media.leave(str(live.id), participant.id)
            except Exception as exc:
                log.warning("media leave failed for call %s: %s", live.id, exc)
        for hook in self.on_gone:
            hook(participant.socket, live.id, participant.id, reason)

    async def _remove(self, live: LiveCall, participant: Participant, *, reason: str) -> None:
        """A user leaves: their stint ends, presence forgets the call, and the call ends
        when nobody is left in it."""
        await self._drop(live, participant, reason=reason)
        user_id = participant.user.id
        if self._in_call.get(user_id) == live.id:
            del self._in_call[user_id]
            await self._presence.set_in_call(user_id, None)
        async with self._store.transaction() as conn:
            await call_sql.leave(conn, live.id, user_id, self._clock())
        await self.placement.report_load()
        if not live.participants:
            unanswered = live.answered_at is None
            await self._end(live, reason="cancelled" if unanswered else "left")
        else:
            await self._publish_state(live)

    async def _end(self, live: LiveCall, *, reason: str) -> None:
        """End the call: stop the ringing, take everyone out, log it, tell the room."""
        if live.ended:
            return
        live.ended = True
        if live.ring_timer is not None:
            live.ring_timer.cancel()
        if live.speaking_timer is not None:
            live.speaking_timer.cancel()
        self._live.pop(live.id, None)
        await self.placement.release(live.id)
        for user_id in list(live.ringing):
            await self._stop_ringing(live, user_id, "ended" if reason != "cancelled" else reason)
            live.missed.setdefault(user_id, live.ringing[user_id])
        live.ringing.clear()
        for participant in list(live.participants.values()):
            await self._drop(live, participant, reason="ended")
            if self._in_call.get(participant.user.id) == live.id:
                del self._in_call[participant.user.id]
                await self._presence.set_in_call(participant.user.id, None)
        now = self._clock()
        if live.answered_at is not None:
            outcome = "completed"
        elif reason == "declined" or (live.declined and not live.missed):
            outcome = "declined"
        elif reason == "cancelled":
            outcome = "cancelled"
        else:
            outcome = "missed"
        async with self._store.transaction() as conn:
            await call_sql.end(conn, live.id, now=now, outcome=outcome)
        duration = now - live.answered_at if live.answered_at is not None else 0
        people = list(live.took_part.values())
        # The history note first: a client that hears call.ended finds it in the room.
        await self._history_note(live, outcome, duration, people)
        await self._publish(
            room_topic(live.record.room_id),
            {
                "type": "call.ended",
                "call": live.id,
                "room": live.record.room_id,
                "outcome": outcome,
                "reason": reason,
                "duration_ms": duration,
                "participants": people,
            },
        )
        log.info("call %s ended: %s (%s)", live.id, outcome, reason)

    async def _history_note(
        self, live: LiveCall, outcome: str, duration: int, people: list[UserRef]
    ) -> None:
        caller_id = live.caller.id if live.caller else None
        caller_name = live.caller.display_name if live.caller else "someone"
        if outcome == "completed":
            text = f"Call ended after {_duration_text(duration)}, with {_names(people)}"
            meta: dict[str, Any] = {
                "event": "call_ended",
                "call": live.id,
                "video": live.record.video,
                "duration_ms": duration,
                "participants": [p.username for p in people],
            }
        else:
            text = f"Missed call from {caller_name}"
            if outcome == "declined":
                text = f"{caller_name}'s call was declined"
            meta = {
                "event": "call_missed",
                "call": live.id,
                "video": live.record.video,
                "reason": {"missed": "no_answer"}.get(outcome, outcome),
                "missed": sorted(u.username for u in live.missed.values()),
                "declined": sorted(u.username for u in live.declined.values()),
            }
        try:
            await self._chat.post_system(live.record.room_id, caller_id, text, meta)
        except Exception:
            log.exception("could not record the end of call %s in the room", live.id)

    # -- sockets ----------------------------------------------------------------------

    async def socket_closed(self, socket: str) -> None:
        """A socket went away: its participants stay for the grace period, shown as not
        connected, so a reconnecting client rejoins without the call noticing."""
        for live in list(self._live.values()):
            async with live.lock:
                for participant in list(live.participants.values()):
                    if participant.socket != socket or not participant.connected:
                        continue
                    participant.connected = False
                    participant.grace = asyncio.get_running_loop().call_later(
                        self.rejoin_grace_s,
                        lambda live=live, p=participant: self.spawn(self._grace_over(live, p)),
                    )
                    await self._publish_state(live)

    async def _grace_over(self, live: LiveCall, participant: Participant) -> None:
        async with live.lock:
            if live.participants.get(participant.id) is participant and not live.ended:
                participant.grace = None
                await self._remove(live, participant, reason="disconnected")

    async def calls_for(
        self, identity: Identity
    ) -> tuple[list[CallView], list[dict[str, Any]], set[str]]:
        """For a new socket: the ongoing calls (held here) of the user's rooms, the
        ``call.ring`` events of those still ringing them, and the other nodes that hold
        ongoing calls of the user's rooms (the router asks them for theirs)."""
        async with self._store.read() as conn:
            records = await call_sql.ongoing_for_user(conn, identity.user.id)
        states, rings, elsewhere = [], [], set()
        for record in records:
            live = self._live.get(record.id)
            if live is None or live.ended:
                if record.node != self.node:
                    elsewhere.add(record.node)
                continue
            states.append(self.view(live))
            if identity.user.id in live.ringing:
                quiet = identity.user.id in self._in_call
                rings.append(self._ring_event(live, quiet=quiet))
        return states, rings, elsewhere

    # -- media signaling --------------------------------------------------------------

    def _media_or_refuse(self) -> MediaPort:
        if self._media is None:
            raise Unavailable(
                "This node has no media server; calls ring but carry no audio or video.",
                code="media_unavailable",
            )
        return self._media

    async def signal(
        self,
        identity: Identity,
        socket: str,
        call_id: int,
        *,
        pc: str,
        kind: str,
        sdp: str | None,
        candidate: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Hand the browser's SDP or ICE candidate to the media server; a publish offer
        is answered in the command's answer."""
        if (pc, kind) not in (
            ("publish", "offer"),
            ("subscribe", "answer"),
        ) and kind != "candidate":
            raise BadRequest(
                "The browser offers on 'publish', answers on 'subscribe', and sends "
                "candidates on either.",
                code="invalid_field",
                field="kind",
            )
        if kind != "candidate":
            sdp = _checked_sdp(sdp)
        live = await self._live_call(identity, call_id)
        participant = self._mine(live, identity, socket)
        media = self._media_or_refuse()
        try:
            if kind == "offer":
                answer = await media.publish_offer(str(live.id), participant.id, sdp or "")
                return {"pc": "publish", "kind": "answer", "sdp": answer}
            if kind == "answer":
                await media.subscribe_answer(str(live.id), participant.id, sdp or "")
            else:
                await media.add_candidate(str(live.id), participant.id, pc, candidate)
            return {}
        except CommandError:
            raise
        except Exception as exc:
            code = media_error_code(exc)
            if code is None:
                raise
            raise BadRequest(str(exc) or "The media server refused this.", code=code) from None

    async def set_tracks(
        self, identity: Identity, socket: str, call_id: int, tracks: dict[str, TrackInfo]
    ) -> CallView:
        if len(tracks) > MAX_TRACKS:
            raise BadRequest(f"At most {MAX_TRACKS} tracks.", code="invalid_field", field="tracks")
        live = await self._live_call(identity, call_id)
        async with live.lock:
            participant = self._mine(live, identity, socket)
            participant.tracks = dict(tracks)
            if self._media is not None:
                try:
                    self._media.set_track_info(
                        str(live.id),
                        participant.id,
                        {mid: {"source": t.source, "muted": t.muted} for mid, t in tracks.items()},
                    )
                except Exception as exc:
                    code = media_error_code(exc)
                    if code is None:
                        raise
                    raise BadRequest(str(exc), code=code) from None
            await self._publish_state(live)
            return self.view(live)

    # -- media server callbacks (plain functions: they must not block the media) -----

    def _held(self, call_id: str) -> LiveCall | None:
        """The live call the media server means (it names calls by their id as text)."""
        try:
            live = self._live.get(int(call_id))
        except ValueError:
            return None
        return live if live is not None and not live.ended else None

    def _media_signal(self, call_id: str, participant_id: str, payload: dict[str, Any]) -> None:
        live = self._held(call_id)
        if live is None or participant_id not in live.participants:
            return
        self.spawn(
            self._publish(
                peer_topic(participant_id),
                {
                    "type": "call.signal",
                    "call": live.id,
                    "pc": payload.get("pc", "subscribe"),
                    "kind": payload.get("type", "offer"),
                    "sdp": payload.get("sdp"),
                    "tracks": payload.get("tracks", {}),
                },
            )
        )

    def _media_tracks(self, call_id: str, tracks: Any) -> None:
        live = self._held(call_id)
        if live is None:
            return
        live.media_tracks = tracks
        self.spawn(self._publish_state(live))

    def _media_speaking(self, call_id: str, participant_ids: list[str]) -> None:
        """At most one ``call.speaking`` per call every SPEAKING_MIN_INTERVAL_S, and only
        when who is speaking changed; a change inside the interval is sent at its end."""
        live = self._held(call_id)
        if live is None:
            return
        speaking = sorted(p for p in participant_ids if p in live.participants)
        if speaking == live.speaking:
            return
        live.speaking = speaking
        if live.speaking_timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = live.speaking_sent_at + SPEAKING_MIN_INTERVAL_S - loop.time()
        if wait <= 0:
            self._send_speaking(live)
        else:
            live.speaking_timer = loop.call_later(wait, self._send_speaking, live)

    def _send_speaking(self, live: LiveCall) -> None:
        live.speaking_timer = None
        if live.ended:
            return
        live.speaking_sent_at = asyncio.get_running_loop().time()
        self.spawn(
            self._publish(
                call_topic(live.id),
                {"type": "call.speaking", "call": live.id, "participants": list(live.speaking)},
            )
        )

    def _media_quality(
        self, call_id: str, participant_id: str, level: str, stats: dict[str, Any]
    ) -> None:
        live = self._held(call_id)
        participant = live.participants.get(participant_id) if live else None
        if live is None or participant is None or participant.quality == level:
            return
        participant.quality = level
        self.spawn(self._publish_state(live))

    # -- the call log -------------------------------------------------------------------

    async def call_log(
        self, identity: Identity, room_id: int, *, before: int | None, limit: int
    ) -> list[CallLogEntry]:
        await self._chat.require_member(identity, room_id)
        async with self._store.read() as conn:
            records = await call_sql.page(conn, room_id, before=before, limit=limit)
            stints = await call_sql.stints(conn, [r.id for r in records])
            user_ids = {s.user_id for ss in stints.values() for s in ss}
            user_ids |= {r.started_by for r in records if r.started_by}
            people = await user_sql.by_ids(conn, user_ids)

        def ref(user_id: int | None) -> UserRef | None:
            user = people.get(user_id) if user_id else None
            return _ref(user) if user else None

        return [
            CallLogEntry(
                id=r.id,
                room=r.room_id,
                started_by=ref(r.started_by),
                started_at=r.started_at,
                answered_at=r.answered_at,
                ended_at=r.ended_at,
                video=r.video,
                outcome=r.outcome,
                participants=[
                    StintView(ref(s.user_id), s.joined_at, s.left_at) for s in stints[r.id]
                ],
            )
            for r in records
        ]


def _asdict(view: CallView) -> dict[str, Any]:
    return msgspec.structs.asdict(view)


def _clean_text(raw: str) -> str:
    text = " ".join(raw.split())
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise BadRequest(
            "The text contains control characters.", code="invalid_field", field="text"
        )
    if len(text) > MAX_DECLINE_TEXT:
        raise BadRequest(
            f"The text is longer than {MAX_DECLINE_TEXT} characters.",
            code="invalid_field",
            field="text",
        )
    return text


def _checked_sdp(sdp: str | None) -> str:
    """A first look at an SDP before the media server parses it: present, and a
    session description at all (RFC 8866 starts every one with ``v=0``)."""
    if not sdp or not sdp.lstrip().startswith("v=0"):
        raise BadRequest(
            "sdp is not a session description (it must start with v=0).",
            code="invalid_sdp",
            field="sdp",
        )
    return sdp
