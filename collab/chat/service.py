"""The rules of chat: rooms, who is in them, messages and what happens to them.

Every change is committed first and published after (durable, then
published): a message has its gapless per-room ``seq`` before anyone hears
of it, and a client that missed the event finds it with ``sync``. Events go
through the bus even on one node, to ``room:<id>`` for what members see and
to ``user:<id>`` for what concerns one person (added to a room, read marker).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.accounts.models import Identity
from collab.api.errors import BadRequest, Conflict, Forbidden, NotFound
from collab.api.fields import Id, Seq
from collab.chat.models import (
    ChannelListing,
    MemberView,
    MessageView,
    ReactionView,
    ReplyRef,
    RoomSummary,
    RoomView,
    UserRef,
    event,
    file_ref,
)
from collab.store import Store
from collab.store import files as file_sql
from collab.store import messages as message_sql
from collab.store import rooms as room_sql
from collab.store import users as user_sql
from collab.store.files import FileRecord
from collab.store.messages import MessageRecord
from collab.store.rooms import MemberRecord, RoomRecord
from collab.store.users import UserRecord
from signaling.bus import Bus, BusUnavailable
from signaling.protocol import encode, user_topic

log = logging.getLogger(__name__)

MAX_BODY = 10_000
MAX_PAGE = 200
MAX_SYNC_MESSAGES = 1000
NOTIFY_LEVELS = ("default", "all", "mentions", "mute")
MAX_GROUP_MEMBERS = 8
MAX_EMOJI_PER_MESSAGE = 50
TYPING_EXPIRES_MS = 6000
ROOM_MENTIONS = frozenset({"room", "all", "here", "channel", "everyone"})
_MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9][A-Za-z0-9._-]{0,31})")
_CLIENT_MSG_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# A bot's (webhook's) ids carry a prefix people's own ids cannot have.
_BOT_CLIENT_MSG_ID = re.compile(r"^hook/[0-9a-f]{10}/[A-Za-z0-9_.:-]{1,48}$")


def room_topic(room_id: int) -> str:
    return f"room:{room_id}"


def _clean_text(raw: str, *, field: str, limit: int, allow_newlines: bool) -> str:
    text = raw.strip()
    for ch in text:
        if unicodedata.category(ch) == "Cc" and not (allow_newlines and ch in "\n\t"):
            raise BadRequest(
                f"The {field} contains control characters.", code="invalid_field", field=field
            )
    if len(text) > limit or len(text.lower()) > limit:
        raise BadRequest(
            f"The {field} is longer than {limit} characters.", code="too_long", field=field
        )
    return text


def parse_mentions(body: str) -> tuple[set[str], bool]:
    """The usernames and whether @room (or @all, @here…) are mentioned."""
    names = {match.lower().rstrip(".") for match in _MENTION.findall(body)}
    room = bool(names & ROOM_MENTIONS)
    return names - ROOM_MENTIONS, room


class SyncPoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where a client is in one room: the last seq it has and the last change it saw."""

    room: Id
    seq: Seq = 0
    change: Seq = 0


class ChatService:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        clock: Callable[[], int],
        *,
        on_message: Callable[[str], Any] | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        # Metrics hook: called with a message kind, returns something with .inc().
        self._on_message = on_message
        # Called after a new message is stored and announced (notifications).
        self.after_send: list[Callable[[MessageView, RoomRecord], Awaitable[None]]] = []

    # -- publishing -----------------------------------------------------------

    async def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Publish after the commit. If the bus is down the change is still saved;
        clients catch up with ``sync`` when the bus is back (nodes tell them to)."""
        try:
            await self._bus.publish(topic, encode(payload))
        except BusUnavailable:
            log.warning("event for %s not published: bus unavailable", topic)

    # -- access -----------------------------------------------------------------

    async def _room_for(
        self,
        conn: AsyncConnection,
        identity: Identity,
        room_id: int,
        *,
        admin_may_manage: bool = False,
    ) -> tuple[RoomRecord, MemberRecord]:
        """The room and the caller's membership; strangers learn nothing about private rooms.

        With ``admin_may_manage``, an administrator who is not a member may still
        manage a channel or private room (archive it, rename it, remove people).
        """
        room, mine = await room_sql.with_member(conn, room_id, identity.user.id)
        if (
            room is not None
            and mine is None
            and admin_may_manage
            and identity.is_admin
            and room.kind in ("channel", "private")
        ):
            mine = MemberRecord(room.id, identity.user.id, "admin", 0, 0, "default")
        if room is None or (mine is None and room.kind != "channel"):
            raise NotFound("There is no such room, or you are not in it.", code="room_not_found")
        if mine is None:
            raise Forbidden("Join this channel first.", code="not_a_member")
        return room, mine

    async def require_member(self, identity: Identity, room_id: int) -> RoomRecord:
        async with self._store.read() as conn:
            room, _ = await self._room_for(conn, identity, room_id)
        return room

    @staticmethod
    def _writable(room: RoomRecord) -> None:
        if room.archived_at is not None:
            raise Forbidden(
                "This room is archived; it can be read but not changed.", code="archived"
            )

    @staticmethod
    def _may_manage(identity: Identity, room: RoomRecord, mine: MemberRecord) -> bool:
        return identity.is_admin or mine.role == "owner"

    # -- views --------------------------------------------------------------------

    async def _room_view(self, conn: AsyncConnection, room: RoomRecord) -> RoomView:
        members = None
        count = await room_sql.member_count(conn, room.id)
        if room.kind in ("dm", "group"):
            members = [
                UserRef(m.user_id, m.username, m.display_name)
                for m in await room_sql.members(conn, room.id)
            ]
        return RoomView(
            id=room.id,
            kind=room.kind,
            name=room.name,
            topic=room.topic,
            archived=room.archived_at is not None,
            created_at=room.created_at,
            last_seq=room.last_seq,
            last_change=room.last_change,
            members=members,
            member_count=count,
        )

    async def views(
        self, conn: AsyncConnection, records: Sequence[MessageRecord]
    ) -> list[MessageView]:
        """Messages as clients see them; one query per kind of detail, not per message."""
        if not records:
            return []
        ids = [m.id for m in records]
        reply_ids = [m.reply_to_id for m in records if m.reply_to_id]
        replies = await message_sql.by_ids(conn, reply_ids)
        reactions = await message_sql.reactions_of(conn, ids)
        mentioned = await message_sql.mentioned_user_ids(conn, ids)
        attached = await file_sql.of_messages(conn, ids)
        user_ids: set[int] = {m.sender_id for m in records if m.sender_id}
        user_ids |= {r.sender_id for r in replies.values() if r.sender_id}
        user_ids |= {r.user_id for rs in reactions.values() for r in rs}
        user_ids |= {u for us in mentioned.values() for u in us if u is not None}
        people = await user_sql.by_ids(conn, user_ids)

        def ref(user_id: int | None) -> UserRef | None:
            user = people.get(user_id) if user_id else None
            return UserRef(user.id, user.username, user.display_name) if user else None

        views = []
        for m in records:
            deleted = m.deleted_at is not None
            reply = replies.get(m.reply_to_id) if m.reply_to_id else None
            grouped: dict[str, list[str]] = {}
            for r in reactions.get(m.id, []) if not deleted else []:
                person = people.get(r.user_id)
                grouped.setdefault(r.emoji, []).append(person.username if person else "?")
            mention_ids = mentioned.get(m.id, []) if not deleted else []
            views.append(
                MessageView(
                    id=m.id,
                    room=m.room_id,
                    seq=m.seq,
                    kind=m.kind,
                    sender=ref(m.sender_id),
                    bot_name=m.bot_name,
                    body="" if deleted else m.body,
                    created_at=m.created_at,
                    edited_at=m.edited_at,
                    deleted=deleted,
                    reply_to=ReplyRef(
                        id=reply.id,
                        seq=reply.seq,
                        sender=ref(reply.sender_id),
                        excerpt="" if reply.deleted_at else reply.body[:200],
                        deleted=reply.deleted_at is not None,
                    )
                    if reply
                    else None,
                    mentions=sorted(
                        people[u].username for u in mention_ids if u is not None and u in people
                    ),
                    mentions_room=None in mention_ids,
                    reactions=[ReactionView(e, len(us), us) for e, us in grouped.items()],
                    files=[] if deleted else [file_ref(f) for f in attached.get(m.id, [])],
                    client_msg_id=m.client_msg_id,
                    change=m.change_seq,
                    meta=m.meta,
                )
            )
        return views

    async def _view(self, conn: AsyncConnection, record: MessageRecord) -> MessageView:
        return (await self.views(conn, [record]))[0]

    # -- rooms --------------------------------------------------------------------

    async def create_room(
        self,
        identity: Identity,
        *,
        kind: str,
        name: str | None = None,
        topic: str = "",
        members: Sequence[str] = (),
    ) -> tuple[RoomView, bool]:
        """Create a room; a DM or group DM with the same people is returned, not doubled.

        Returns the room and whether it was created now.
        """
        if identity.user.role == "guest":
            raise Forbidden(
                "Guests cannot start conversations; they join the rooms they are put in."
            )
        if kind not in ("channel", "private", "dm", "group"):
            raise BadRequest(
                "kind is channel, private, dm or group.", code="invalid_field", field="kind"
            )
        now = self._clock()
        async with self._store.transaction() as conn:
            wanted = {n.strip().lower() for n in members if n.strip()}
            found = await user_sql.by_usernames(conn, wanted)
            missing = sorted(wanted - set(found))
            if missing:
                raise NotFound(
                    f"No such user: {', '.join(missing)}.", code="user_not_found", users=missing
                )
            others = [u for u in found.values() if u.id != identity.user.id]
            if any(not u.active for u in others):
                raise BadRequest("You cannot add deactivated users.", code="user_inactive")
            if kind in ("dm", "group"):
                view, created = await self._open_dm(conn, identity, others, now)
            else:
                view = await self._create_channel(conn, identity, kind, name, topic, others, now)
                created = True
        if created:
            people = [identity.user.id, *(u.id for u in others)]
            for user_id in people:
                await self._publish(user_topic(user_id), event("room.joined", room=view))
            log.info("room created id=%s kind=%s by=%s", view.id, view.kind, identity.user.username)
        return view, created

    async def _create_channel(
        self,
        conn: AsyncConnection,
        identity: Identity,
        kind: str,
        name: str | None,
        topic: str,
        others: list[UserRecord],
        now: int,
    ) -> RoomView:
        clean_name = _clean_text(name or "", field="name", limit=80, allow_newlines=False)
        if not clean_name:
            raise BadRequest("A channel needs a name.", code="missing_field", field="name")
        clean_topic = _clean_text(topic, field="topic", limit=250, allow_newlines=False)
        if kind == "channel" and any(u.role == "guest" for u in others):
            raise BadRequest(
                "Guests cannot be in public channels; use a private channel.",
                code="guest_not_allowed",
            )
        try:
            async with conn.begin_nested():
                room = await room_sql.insert(
                    conn,
                    kind=kind,
                    name=clean_name,
                    topic=clean_topic,
                    dm_key=None,
                    created_by=identity.user.id,
                    now=now,
                )
        except IntegrityError:
            raise Conflict(
                f"A channel named '{clean_name}' exists already.", code="name_taken"
            ) from None
        await room_sql.add_member(
            conn, room.id, identity.user.id, role="owner", now=now, last_read_seq=0
        )
        for user in others:
            await room_sql.add_member(
                conn, room.id, user.id, role="member", now=now, last_read_seq=0
            )
        return await self._room_view(conn, room)

    async def _open_dm(
        self, conn: AsyncConnection, identity: Identity, others: list[UserRecord], now: int
    ) -> tuple[RoomView, bool]:
        people = sorted({identity.user.id, *(u.id for u in others)})
        if len(people) > MAX_GROUP_MEMBERS:
            raise BadRequest(
                f"A group conversation has at most {MAX_GROUP_MEMBERS} people.",
                code="too_many_members",
            )
        kind = "dm" if len(people) <= 2 else "group"
        dm_key = f"{kind}:" + ",".join(str(p) for p in people)
        existing = await room_sql.by_dm_key(conn, dm_key)
        if existing is not None:
            return await self._room_view(conn, existing), False
        try:
            async with conn.begin_nested():
                room = await room_sql.insert(
                    conn,
                    kind=kind,
                    name=None,
                    topic="",
                    dm_key=dm_key,
                    created_by=identity.user.id,
                    now=now,
                )
        except IntegrityError:
            # Someone opened the same conversation at the same moment.
            room = await room_sql.by_dm_key(conn, dm_key)
            assert room is not None
            return await self._room_view(conn, room), False
        for person in people:
            await room_sql.add_member(
                conn, room.id, person, role="member", now=now, last_read_seq=0
            )
        return await self._room_view(conn, room), True

    async def get_room(self, identity: Identity, room_id: int) -> RoomView:
        async with self._store.read() as conn:
            room, _ = await self._room_for(conn, identity, room_id)
            return await self._room_view(conn, room)

    async def my_rooms(self, identity: Identity) -> list[RoomSummary]:
        async with self._store.read() as conn:
            mine = await room_sql.rooms_of(conn, identity.user.id)
            unread = await room_sql.unread_counts(conn, identity.user.id)
            mentions = await message_sql.mention_counts(conn, identity.user.id)
            last = await message_sql.last_messages(conn, [room.id for room, _ in mine])
            last_views = {v.room: v for v in await self.views(conn, list(last.values()))}
            return [
                RoomSummary(
                    room=await self._room_view(conn, room),
                    unread=unread.get(room.id, 0),
                    mentions=mentions.get(room.id, 0),
                    last_read_seq=member.last_read_seq,
                    last_message=last_views.get(room.id),
                    role=member.role,
                    notify=member.notify,
                )
                for room, member in mine
            ]

    async def browse_channels(
        self, identity: Identity, search: str | None, limit: int = 100
    ) -> list[ChannelListing]:
        if identity.user.role == "guest":
            raise Forbidden("Guests only see the rooms they are put in.")
        async with self._store.read() as conn:
            channels = await room_sql.public_channels(conn, search=search, limit=limit)
            joined = set(await room_sql.room_ids_of(conn, identity.user.id))
        return [
            ChannelListing(room.id, room.name, room.topic, count, room.id in joined)
            for room, count in channels
        ]

    async def members(self, identity: Identity, room_id: int) -> list[MemberView]:
        async with self._store.read() as conn:
            await self._room_for(conn, identity, room_id)
            return [
                MemberView(m.user_id, m.username, m.display_name, m.role, m.joined_at)
                for m in await room_sql.members(conn, room_id)
            ]

    async def join(self, identity: Identity, room_id: int) -> RoomView:
        if identity.user.role == "guest":
            raise Forbidden("Guests cannot join channels by themselves; ask to be added.")
        notes: list[MessageRecord] = []
        async with self._store.transaction() as conn:
            room = await room_sql.by_id(conn, room_id)
            if room is None or room.kind != "channel":
                raise NotFound("There is no such channel.", code="room_not_found")
            self._writable(room)
            added = await self._add(conn, room, identity.user, actor=identity.user, notes=notes)
            view = await self._room_view(conn, await self._reload(conn, room))
        if added:
            await self._after_membership_change(view, identity.user, joined=True, notes=notes)
        return view

    async def add_member(self, identity: Identity, room_id: int, username: str) -> RoomView:
        notes: list[MessageRecord] = []
        async with self._store.transaction() as conn:
            room, _ = await self._room_for(conn, identity, room_id)
            self._writable(room)
            if room.kind in ("dm", "group"):
                raise BadRequest(
                    "A direct conversation keeps its people; start a new one instead.",
                    code="fixed_membership",
                )
            user = await user_sql.by_username(conn, username.strip().lower())
            if user is None:
                raise NotFound(f"There is no user '{username}'.", code="user_not_found")
            if not user.active:
                raise BadRequest(f"{user.username} is deactivated.", code="user_inactive")
            if room.kind == "channel" and user.role == "guest":
                raise BadRequest(
                    "Guests cannot be in public channels; use a private channel.",
                    code="guest_not_allowed",
                )
            if not await self._add(conn, room, user, actor=identity.user, notes=notes):
                raise Conflict(f"{user.username} is already in this room.", code="already_member")
            view = await self._room_view(conn, await self._reload(conn, room))
        await self._after_membership_change(view, user, joined=True, notes=notes)
        return view

    async def _reload(self, conn: AsyncConnection, room: RoomRecord) -> RoomRecord:
        fresh = await room_sql.by_id(conn, room.id)
        assert fresh is not None
        return fresh

    async def _add(
        self,
        conn: AsyncConnection,
        room: RoomRecord,
        user: UserRecord,
        *,
        actor: UserRecord,
        notes: list[MessageRecord],
    ) -> bool:
        added = await room_sql.add_member(
            conn, room.id, user.id, role="member", now=self._clock(), last_read_seq=0
        )
        if added:
            text = (
                f"{user.display_name} joined"
                if actor.id == user.id
                else f"{actor.display_name} added {user.display_name}"
            )
            await self._system(
                conn, room, actor, text, {"event": "joined", "user": user.username}, notes
            )
        return added

    async def leave(self, identity: Identity, room_id: int) -> None:
        notes: list[MessageRecord] = []
        async with self._store.transaction() as conn:
            room, _ = await self._room_for(conn, identity, room_id)
            self._writable(room)
            if room.kind in ("dm", "group"):
                raise BadRequest(
                    "You cannot leave a direct conversation; mute it instead.",
                    code="fixed_membership",
                )
            await self._remove(conn, room, identity.user, actor=identity.user, notes=notes)
            view = await self._room_view(conn, await self._reload(conn, room))
        await self._after_membership_change(view, identity.user, joined=False, notes=notes)

    async def remove_member(self, identity: Identity, room_id: int, username: str) -> None:
        notes: list[MessageRecord] = []
        async with self._store.transaction() as conn:
            room, mine = await self._room_for(conn, identity, room_id, admin_may_manage=True)
            self._writable(room)
            if room.kind in ("dm", "group"):
                raise BadRequest("A direct conversation keeps its people.", code="fixed_membership")
            if not self._may_manage(identity, room, mine):
                raise Forbidden("Only the room's owner or an administrator can remove people.")
            user = await user_sql.by_username(conn, username.strip().lower())
            if user is None or await room_sql.member(conn, room.id, user.id) is None:
                raise NotFound(f"{username} is not in this room.", code="member_not_found")
            await self._remove(conn, room, user, actor=identity.user, notes=notes)
            view = await self._room_view(conn, await self._reload(conn, room))
        await self._after_membership_change(view, user, joined=False, notes=notes)

    async def _remove(
        self,
        conn: AsyncConnection,
        room: RoomRecord,
        user: UserRecord,
        *,
        actor: UserRecord,
        notes: list[MessageRecord],
    ) -> None:
        await room_sql.remove_member(conn, room.id, user.id)
        text = (
            f"{user.display_name} left"
            if actor.id == user.id
            else f"{actor.display_name} removed {user.display_name}"
        )
        await self._system(conn, room, actor, text, {"event": "left", "user": user.username}, notes)

    async def _after_membership_change(
        self, view: RoomView, user: UserRecord, *, joined: bool, notes: list[MessageRecord]
    ) -> None:
        if joined:
            await self._publish(user_topic(user.id), event("room.joined", room=view))
        else:
            await self._publish(user_topic(user.id), event("room.left", room=view.id))
        await self._publish(room_topic(view.id), event("room.updated", room=view))
        await self._announce(notes)

    async def update_room(
        self,
        identity: Identity,
        room_id: int,
        *,
        name: str | None = None,
        topic: str | None = None,
        archived: bool | None = None,
    ) -> RoomView:
        notes: list[MessageRecord] = []
        async with self._store.transaction() as conn:
            room, mine = await self._room_for(conn, identity, room_id, admin_may_manage=True)
            if room.kind in ("dm", "group") and (name is not None or archived is not None):
                raise BadRequest(
                    "Direct conversations have no name and are not archived.",
                    code="invalid_field",
                    field="name" if name is not None else "archived",
                )
            if archived is not None and not self._may_manage(identity, room, mine):
                raise Forbidden("Only the room's owner or an administrator can archive it.")
            if archived is not False and (name is not None or topic is not None):
                # Renaming or re-topicking an archived room needs unarchiving it first.
                self._writable(room)
            changes: dict[str, Any] = {}
            changes_said: list[tuple[str, dict[str, Any]]] = []
            actor = identity.user.display_name
            if name is not None:
                if not self._may_manage(identity, room, mine):
                    raise Forbidden("Only the room's owner or an administrator can rename it.")
                clean = _clean_text(name, field="name", limit=80, allow_newlines=False)
                if not clean:
                    raise BadRequest("A channel needs a name.", code="missing_field", field="name")
                if clean != room.name:
                    changes["name"] = clean
                    changes_said.append(
                        (
                            f"{actor} renamed the room to {clean}",
                            {"event": "renamed", "name": clean},
                        )
                    )
            if topic is not None:
                clean_topic = _clean_text(topic, field="topic", limit=250, allow_newlines=False)
                if clean_topic != room.topic:
                    changes["topic"] = clean_topic
                    changes_said.append(
                        (
                            f"{actor} set the topic: {clean_topic}"
                            if clean_topic
                            else f"{actor} cleared the topic",
                            {"event": "topic", "topic": clean_topic},
                        )
                    )
            if archived is not None and archived != (room.archived_at is not None):
                changes["archived_at"] = self._clock() if archived else None
                changes_said.append(
                    (
                        f"{actor} {'archived' if archived else 'unarchived'} the room",
                        {"event": "archived" if archived else "unarchived"},
                    )
                )
            if changes:
                try:
                    async with conn.begin_nested():
                        room = await room_sql.update(conn, room.id, **changes)
                except IntegrityError:
                    raise Conflict(
                        f"A channel named '{changes.get('name')}' exists already.",
                        code="name_taken",
                    ) from None
                for text, meta in changes_said:
                    await self._system(conn, room, identity.user, text, meta, notes)
                room = await self._reload(conn, room)
            view = await self._room_view(conn, room)
        if changes:
            await self._publish(room_topic(room_id), event("room.updated", room=view))
            await self._announce(notes)
        return view

    # -- messages ---------------------------------------------------------------------

    async def _system(
        self,
        conn: AsyncConnection,
        room: RoomRecord,
        actor: UserRecord | int | None,
        text: str,
        meta: dict[str, Any],
        notes: list[MessageRecord],
    ) -> MessageRecord:
        """A system message in the same transaction as the change it records; the
        caller announces ``notes`` after the commit."""
        seq = await room_sql.next_seq(conn, room.id)
        record = await message_sql.insert(
            conn,
            room_id=room.id,
            seq=seq,
            sender_id=actor if actor is None or isinstance(actor, int) else actor.id,
            kind="system",
            body=text,
            client_msg_id=None,
            reply_to_id=None,
            bot_name=None,
            meta=meta,
            now=self._clock(),
        )
        notes.append(record)
        return record

    async def post_system(
        self, room_id: int, actor_id: int | None, text: str, meta: dict[str, Any]
    ) -> MessageView | None:
        """A system message another service records in a room's history (calls: started,
        ended, missed). Stored with its seq, then announced like any message; None if
        the room is gone meanwhile."""
        async with self._store.transaction() as conn:
            room = await room_sql.by_id(conn, room_id)
            if room is None:
                return None
            record = await self._system(conn, room, actor_id, text, meta, [])
            view = await self._view(conn, record)
        await self._publish(room_topic(room_id), event("chat.message", view))
        self._count(view.kind)
        return view

    async def send(
        self,
        identity: Identity,
        room_id: int,
        body: str,
        *,
        client_msg_id: str | None = None,
        reply_to: int | None = None,
        file_ids: Sequence[int] = (),
        bot_name: str | None = None,
    ) -> tuple[MessageView, bool]:
        """Store and announce a message. Returns it and whether it is new: a retry with
        the same ``client_msg_id`` returns the stored message and announces nothing."""
        text = _clean_text(body, field="body", limit=MAX_BODY, allow_newlines=True)
        if not text and not file_ids:
            raise BadRequest("A message needs some text or a file.", code="empty_message")
        id_rule = _BOT_CLIENT_MSG_ID if bot_name else _CLIENT_MSG_ID
        if client_msg_id is not None and not id_rule.match(client_msg_id):
            raise BadRequest(
                "client_msg_id is 1 to 64 letters, digits or _.:-",
                code="invalid_field",
                field="client_msg_id",
            )
        sender = identity.user
        # No look-up of client_msg_id first: the unique index catches a retry (below),
        # which keeps the common case to a handful of statements.
        try:
            async with self._store.transaction() as conn:
                room, _ = await self._room_for(conn, identity, room_id)
                self._writable(room)
                target = None
                if reply_to is not None:
                    target = await message_sql.by_id(conn, reply_to)
                    if target is None or target.room_id != room.id:
                        raise BadRequest(
                            "You can only reply to a message in the same room.",
                            code="invalid_field",
                            field="reply_to",
                        )
                names, everyone = parse_mentions(text)
                mentioned = await self._members_named(conn, room.id, names)
                seq = await room_sql.next_seq(conn, room.id)
                record = await message_sql.insert(
                    conn,
                    room_id=room.id,
                    seq=seq,
                    sender_id=sender.id,
                    kind="bot" if bot_name else "user",
                    body=text,
                    client_msg_id=client_msg_id,
                    reply_to_id=reply_to,
                    bot_name=bot_name,
                    meta=None,
                    now=self._clock(),
                )
                await message_sql.add_mentions(
                    conn, record, [*(u.id for u in mentioned), *([None] if everyone else [])]
                )
                files = []
                if file_ids:
                    attached = await file_sql.attach(
                        conn,
                        list(file_ids),
                        message_id=record.id,
                        room_id=room.id,
                        uploader_id=sender.id,
                    )
                    if attached != len(set(file_ids)):
                        raise BadRequest(
                            "Attach only files you uploaded to this room and not yet sent; "
                            "an upload not sent within a day is deleted, so upload it again.",
                            code="invalid_field",
                            field="files",
                        )
                    files = (await file_sql.of_messages(conn, [record.id])).get(record.id, [])
                reply_sender = None
                if target is not None and target.sender_id is not None:
                    reply_sender = (
                        sender
                        if target.sender_id == sender.id
                        else await user_sql.by_id(conn, target.sender_id)
                    )
                view = self._new_view(
                    record, sender, target, reply_sender, mentioned, everyone, files
                )
        except IntegrityError:
            if client_msg_id is None:
                raise
            # A retry: this client_msg_id is stored already (maybe by a concurrent send).
            async with self._store.read() as conn:
                earlier = await message_sql.by_client_msg_id(conn, sender.id, client_msg_id)
                if earlier is None:
                    raise
                return await self._idempotent(conn, identity, earlier, room_id), False
        await self._publish(room_topic(room_id), event("chat.message", view))
        self._count(view.kind)
        for hook in self.after_send:
            try:
                await hook(view, room)
            except Exception:
                log.exception("after-send hook failed for message %s", view.id)
        return view, True

    def _count(self, kind: str) -> None:
        if self._on_message is not None:
            self._on_message(kind).inc()

    async def _idempotent(
        self, conn: AsyncConnection, identity: Identity, earlier: MessageRecord, room_id: int
    ) -> MessageView:
        if earlier.room_id != room_id:
            raise Conflict(
                "This client_msg_id was used for a message in another room.",
                code="client_msg_id_reused",
            )
        await self._room_for(conn, identity, room_id)
        return await self._view(conn, earlier)

    async def _members_named(
        self, conn: AsyncConnection, room_id: int, names: set[str]
    ) -> list[UserRecord]:
        if not names:
            return []
        found = await user_sql.by_usernames(conn, names)
        member_ids = set(await room_sql.member_ids(conn, room_id))
        return sorted((u for u in found.values() if u.id in member_ids), key=lambda u: u.id)

    @staticmethod
    def _new_view(
        record: MessageRecord,
        sender: UserRecord,
        target: MessageRecord | None,
        reply_sender: UserRecord | None,
        mentioned: list[UserRecord],
        everyone: bool,
        files: Sequence[FileRecord],
    ) -> MessageView:
        """The view of a message just stored, from what the send already knows: no
        queries (``views`` gives the same result for stored messages)."""

        def ref(user: UserRecord | None) -> UserRef | None:
            return UserRef(user.id, user.username, user.display_name) if user else None

        return MessageView(
            id=record.id,
            room=record.room_id,
            seq=record.seq,
            kind=record.kind,
            sender=ref(sender),
            bot_name=record.bot_name,
            body=record.body,
            created_at=record.created_at,
            edited_at=None,
            deleted=False,
            reply_to=ReplyRef(
                id=target.id,
                seq=target.seq,
                sender=ref(reply_sender),
                excerpt="" if target.deleted_at else target.body[:200],
                deleted=target.deleted_at is not None,
            )
            if target
            else None,
            mentions=sorted(u.username for u in mentioned),
            mentions_room=everyone,
            reactions=[],
            files=[file_ref(f) for f in files],
            client_msg_id=record.client_msg_id,
            change=record.change_seq,
            meta=record.meta,
        )

    async def _announce(self, notes: list[MessageRecord]) -> None:
        """Announce the system messages of a committed change."""
        if not notes:
            return
        async with self._store.read() as reader:
            views = await self.views(reader, notes)
        for view in views:
            await self._publish(room_topic(view.room), event("chat.message", view))
            self._count(view.kind)

    async def _change_message(
        self,
        identity: Identity,
        message_id: int,
        change: Callable[..., Any],
        *,
        admin_may_manage: bool = False,
    ) -> MessageView:
        """Apply ``change``; announce the message (and replies quoting it) if it changed."""
        replies: list[MessageRecord] = []
        async with self._store.transaction() as conn:
            message = await message_sql.by_id(conn, message_id)
            try:
                if message is None:
                    raise NotFound("no message")
                room, mine = await self._room_for(
                    conn, identity, message.room_id, admin_may_manage=admin_may_manage
                )
            except (NotFound, Forbidden) as refused:
                if isinstance(refused, Forbidden) and refused.code != "not_a_member":
                    raise
                # Unknown, or in a room the caller is not in: the same answer for both.
                raise NotFound("There is no such message.", code="message_not_found") from None
            self._writable(room)
            record = await change(conn, room, mine, message)
            view = await self._view(conn, record)
            if record.change_seq != message.change_seq and record.body != message.body:
                # Replies quote this message: each gets its own next change number,
                # so sync can page through changes without ties.
                for reply_id in await message_sql.reply_ids(conn, message.id):
                    replies.append(
                        await message_sql.update(
                            conn, reply_id, change_seq=await room_sql.next_change(conn, room.id)
                        )
                    )
                reply_views = await self.views(conn, replies)
        if record.change_seq == message.change_seq:
            return view  # nothing changed: nothing to announce
        await self._publish(room_topic(view.room), event("chat.message_updated", view))
        for reply_view in reply_views if replies else []:
            await self._publish(
                room_topic(reply_view.room), event("chat.message_updated", reply_view)
            )
        return view

    async def edit(self, identity: Identity, message_id: int, body: str) -> MessageView:
        text = _clean_text(body, field="body", limit=MAX_BODY, allow_newlines=True)

        async def change(
            conn: AsyncConnection, room: RoomRecord, mine: MemberRecord, message: MessageRecord
        ) -> MessageRecord:
            if message.sender_id != identity.user.id or message.kind != "user":
                raise Forbidden("You can only edit your own messages.")
            if message.deleted_at is not None:
                raise Conflict("This message was deleted.", code="message_deleted")
            if not text and not await file_sql.of_messages(conn, [message.id]):
                raise BadRequest(
                    "A message needs some text; delete it instead.", code="empty_message"
                )
            if text == message.body:
                return message
            names, everyone = parse_mentions(text)
            mentioned = [u.id for u in await self._members_named(conn, room.id, names)]
            record = await message_sql.update(
                conn,
                message.id,
                body=text,
                edited_at=self._clock(),
                change_seq=await room_sql.next_change(conn, room.id),
            )
            await message_sql.replace_mentions(
                conn, record, [*mentioned, *([None] if everyone else [])]
            )
            return record

        return await self._change_message(identity, message_id, change)

    async def delete(self, identity: Identity, message_id: int) -> MessageView:
        async def change(
            conn: AsyncConnection, room: RoomRecord, mine: MemberRecord, message: MessageRecord
        ) -> MessageRecord:
            own = message.sender_id == identity.user.id and message.kind != "system"
            if not (own or identity.is_admin):
                raise Forbidden("You can only delete your own messages.")
            if message.deleted_at is not None:
                return message
            await message_sql.replace_mentions(conn, message, [])
            return await message_sql.update(
                conn,
                message.id,
                body="",
                deleted_at=self._clock(),
                change_seq=await room_sql.next_change(conn, room.id),
            )

        return await self._change_message(identity, message_id, change, admin_may_manage=True)

    async def react(
        self, identity: Identity, message_id: int, emoji: str, *, on: bool
    ) -> MessageView:
        clean = emoji.strip()
        if not clean or len(clean) > 64 or any(ch.isspace() for ch in clean):
            raise BadRequest(
                "An emoji is 1 to 64 characters without spaces.",
                code="invalid_field",
                field="emoji",
            )

        async def change(
            conn: AsyncConnection, room: RoomRecord, mine: MemberRecord, message: MessageRecord
        ) -> MessageRecord:
            if message.deleted_at is not None:
                raise Conflict("This message was deleted.", code="message_deleted")
            if on:
                changed = await message_sql.add_reaction(
                    conn, message.id, identity.user.id, clean, self._clock()
                )
                if changed and (
                    await message_sql.distinct_reaction_count(conn, message.id)
                    > MAX_EMOJI_PER_MESSAGE
                ):
                    raise BadRequest(
                        f"A message can have at most {MAX_EMOJI_PER_MESSAGE} different reactions.",
                        code="too_many_reactions",
                    )
            else:
                changed = await message_sql.remove_reaction(
                    conn, message.id, identity.user.id, clean
                )
            if not changed:
                return message
            return await message_sql.update(
                conn, message.id, change_seq=await room_sql.next_change(conn, room.id)
            )

        return await self._change_message(identity, message_id, change)

    async def history(
        self,
        identity: Identity,
        room_id: int,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> tuple[list[MessageView], bool]:
        """A page of history and whether there is more in the direction asked."""
        limit = max(1, min(limit, MAX_PAGE))
        if before is not None and after is not None and after >= before:
            raise BadRequest(
                "after must be smaller than before.", code="invalid_field", field="after"
            )
        async with self._store.read() as conn:
            await self._room_for(conn, identity, room_id)
            records = await message_sql.page(
                conn, room_id, before=before, after=after, limit=limit + 1
            )
            more = len(records) > limit
            if more:
                records = records[:limit] if after is not None else records[1:]
            return await self.views(conn, records), more

    async def sync(
        self, identity: Identity, points: Sequence[SyncPoint], limit: int = MAX_PAGE
    ) -> dict[str, Any]:
        """Everything a reconnecting client missed, room by room."""
        asked = {p.room: p for p in points}
        summaries = await self.my_rooms(identity)
        mine = {s.room.id for s in summaries}
        missed = []
        budget = MAX_SYNC_MESSAGES  # keeps one answer a sane size, whatever was missed
        async with self._store.read() as conn:
            for room_id, point in asked.items():
                if room_id not in mine:
                    continue
                room_limit = max(0, min(limit, budget))
                new = await message_sql.page(conn, room_id, after=point.seq, limit=room_limit + 1)
                complete = len(new) <= room_limit
                new = new[:room_limit]
                updated = await message_sql.changed_since(
                    conn,
                    room_id,
                    up_to_seq=point.seq,
                    after_change=point.change,
                    limit=room_limit + 1,
                )
                updated_complete = len(updated) <= room_limit
                updated = updated[:room_limit]
                budget -= len(new) + len(updated)
                missed.append(
                    {
                        "room": room_id,
                        "messages": await self.views(conn, new),
                        "updated": await self.views(conn, updated),
                        "complete": complete,
                        "updated_complete": updated_complete,
                    }
                )
        return {
            "rooms": summaries,
            "missed": missed,
            "gone": sorted(set(asked) - mine),
        }

    async def set_notify(self, identity: Identity, room_id: int, level: str) -> str:
        """How much this room notifies the caller: default (DMs and mentions), all,
        mentions, or mute (nothing; unread counts still rise)."""
        if level not in NOTIFY_LEVELS:
            raise BadRequest(
                f"level is one of {', '.join(NOTIFY_LEVELS)}.", code="invalid_field", field="level"
            )
        async with self._store.transaction() as conn:
            await self._room_for(conn, identity, room_id)
            await room_sql.set_notify(conn, room_id, identity.user.id, level)
        await self._publish(
            user_topic(identity.user.id), event("room.notify", room=room_id, level=level)
        )
        return level

    async def mark_read(self, identity: Identity, room_id: int, seq: int) -> int:
        async with self._store.transaction() as conn:
            room, _ = await self._room_for(conn, identity, room_id)
            marker = await room_sql.set_read(
                conn, room.id, identity.user.id, max(0, min(seq, room.last_seq))
            )
        await self._publish(
            user_topic(identity.user.id), event("chat.read", room=room_id, seq=marker)
        )
        return marker

    async def typing(self, identity: Identity, room_id: int) -> None:
        room = await self.require_member(identity, room_id)
        self._writable(room)
        user = identity.user
        await self._publish(
            room_topic(room_id),
            event(
                "chat.typing",
                room=room_id,
                user=UserRef(user.id, user.username, user.display_name),
                expires_in_ms=TYPING_EXPIRES_MS,
            ),
        )
