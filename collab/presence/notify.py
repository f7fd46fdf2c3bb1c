"""Who is notified of a new message, and whether quietly.

The server decides, so every client behaves the same: a notification is
sent for a DM, a mention, an @room, or any message in a room set to "all";
never for a muted room. It is marked ``silent`` while the recipient is on
do-not-disturb, in their quiet hours, or busy if they asked for busy to be
quiet: the client then shows the badge but pops nothing and plays no sound.
Unread and mention counts rise either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from collab.chat.models import MessageView
from collab.presence.model import in_quiet_hours
from collab.presence.service import PresenceService
from collab.store import Store
from collab.store import rooms as room_sql
from collab.store import users as user_sql
from collab.store.rooms import RoomRecord
from signaling.bus import Bus, BusUnavailable
from signaling.protocol import encode, user_topic

log = logging.getLogger(__name__)

EXCERPT = 140


class Notifier:
    def __init__(
        self, store: Store, bus: Bus, presence: PresenceService, clock: Callable[[], int]
    ) -> None:
        self._store = store
        self._bus = bus
        self._presence = presence
        self._clock = clock
        self.sent = 0

    async def message_sent(self, view: MessageView, room: RoomRecord) -> None:
        if view.kind == "system":
            return
        # A plain message in a channel (no mention, no @room) notifies only the members
        # who set the room to "all": read just those, not every member of the room.
        everyone_counts = room.kind in ("dm", "group") or view.mentions_room or bool(view.mentions)
        async with self._store.read() as conn:
            levels = await room_sql.notify_levels(
                conn, room.id, only=None if everyone_counts else "all"
            )
        sender_id = view.sender.id if view.sender else None
        reasons: dict[int, str] = {}
        for user_id, level in levels.items():
            if user_id == sender_id or level == "mute":
                continue
            if room.kind in ("dm", "group"):
                reasons[user_id] = "dm"
            elif view.mentions_room:
                reasons[user_id] = "room"
            elif level == "all":
                reasons[user_id] = "all"
        if view.mentions:
            mentioned = await self._user_ids(view.mentions)
            for user_id in mentioned:
                if user_id in levels and user_id != sender_id and levels[user_id] != "mute":
                    reasons[user_id] = "mention"
        if not reasons:
            return
        presences = await self._presence.current(list(reasons))
        settings = await self._presence.settings_of(list(reasons))
        now = self._clock()
        for user_id, reason in reasons.items():
            presence = presences[user_id]
            mine = settings[user_id]
            silent = (
                presence.status == "dnd"
                or (presence.status == "busy" and mine.silence_when_busy)
                or in_quiet_hours(now, mine.time_zone, mine.quiet_start, mine.quiet_end)
            )
            payload = {
                "type": "notify",
                "room": room.id,
                "room_name": room.name,
                "room_kind": room.kind,
                "message": view.id,
                "seq": view.seq,
                "reason": reason,
                "silent": silent,
                "sender": view.sender,
                "bot_name": view.bot_name,
                "excerpt": view.body[:EXCERPT],
            }
            try:
                await self._bus.publish(user_topic(user_id), encode(payload))
                self.sent += 1
            except BusUnavailable:
                log.warning("notification for user %s not sent: bus unavailable", user_id)

    async def _user_ids(self, usernames: list[str]) -> set[int]:
        async with self._store.read() as conn:
            found = await user_sql.by_usernames(conn, usernames)
        return {u.id for u in found.values()}
