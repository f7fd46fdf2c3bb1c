"""Presence: keeps every user's status true and tells the people who may see it.

Inputs arrive from sockets (connect, disconnect, activity), from the user
(their choice and custom text), from calls (``set_in_call``) and from the
calendar. Each input marks the user dirty; a flusher recomputes dirty users
a moment later, so a burst of changes makes one event, and publishes on
``presence:<id>`` only if the result differs from what was last published
(by any node). Timed changes (idle → away, a choice or text that ends, a
meeting that starts or ends) sit in one heap per node with one task waiting
for the earliest: no task per user.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from collab.accounts.models import Identity
from collab.api.errors import BadRequest, Forbidden
from collab.presence.model import CHOICES, Choice, Meeting, Presence, compute, next_change
from collab.presence.registry import Registry
from collab.store import Store
from collab.store import presence as presence_sql
from collab.store import users as user_sql
from collab.store.presence import PresenceSettings
from signaling.bus import Bus, BusUnavailable
from signaling.protocol import encode

log = logging.getLogger(__name__)

_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
FLUSH_DELAY_S = 0.05
FLUSH_RETRY_S = 1.0
SETTINGS_TOPIC = "presence-settings"


def presence_topic(user_id: int) -> str:
    return f"presence:{user_id}"


class PresenceEvent(msgspec.Struct, frozen=True, tag="presence", tag_field="type"):
    user: int
    username: str
    status: str
    reason: str | None
    text: str | None
    emoji: str | None
    until: int | None
    text_until: int | None
    last_seen: int | None


class _SettingsChanged(msgspec.Struct):
    user: int


class PresenceService:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        registry: Registry,
        clock: Callable[[], int],
        *,
        idle_ms: int,
        instance: str,
        sweep_interval_s: float = 10.0,
    ) -> None:
        """``instance`` names this process (node id plus a random part), as the registry
        knows it."""
        self._store = store
        self._bus = bus
        self._registry = registry
        self._clock = clock
        self._idle_ms = idle_ms
        self.instance = instance
        self._sweep_interval_s = sweep_interval_s
        self.flush_delay_s = FLUSH_DELAY_S
        self._counter = itertools.count(1)
        self._settings: dict[int, _Settings] = {}
        self._names: dict[int, str] = {}
        self._dirty: set[int] = set()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._timers: list[tuple[int, int]] = []
        self._timer_due: dict[int, int] = {}
        self._timer_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # This node's own connections: user → connection key → last activity.
        self._local: dict[int, dict[str, int]] = {}
        self.changes_published = 0

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        await self._bus.subscribe(SETTINGS_TOPIC, self._on_settings_changed)
        self._bus.add_gap_listener(self.reregister)
        self._tasks = [
            asyncio.create_task(self._timer_loop(), name="presence-timers"),
            asyncio.create_task(self._sweep_loop(), name="presence-sweep"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        await self._registry.close()

    # -- inputs --------------------------------------------------------------------

    def new_connection_key(self) -> str:
        return f"{self.instance}|{next(self._counter)}"

    async def connected(self, user_id: int, conn_key: str) -> None:
        now = self._clock()
        self._local.setdefault(user_id, {})[conn_key] = now
        await self._registry_call(self._registry.add(user_id, conn_key, now))
        self.mark(user_id)

    async def disconnected(self, user_id: int, conn_key: str) -> None:
        conns = self._local.get(user_id)
        if conns is not None:
            conns.pop(conn_key, None)
            if not conns:
                del self._local[user_id]
        await self._registry_call(self._registry.remove(user_id, conn_key, self._clock()))
        self.mark(user_id)

    async def activity(self, user_id: int, conn_key: str) -> None:
        now = self._clock()
        conns = self._local.get(user_id)
        if conns is not None and conn_key in conns:
            conns[conn_key] = now
        await self._registry_call(self._registry.touch(user_id, conn_key, now))
        self.mark(user_id)

    async def _registry_call(self, call: Any) -> None:
        """Presence must never break a socket: if the registry (Redis) is away, this
        node's own record is enough to put it right when it is back."""
        try:
            await call
        except Exception as exc:
            log.warning("presence registry unavailable (%s); will re-register later", exc)

    async def reregister(self) -> None:
        """After the bus or Redis came back (Redis may have forgotten everything)."""
        for user_id, conns in list(self._local.items()):
            for conn_key, last_active in list(conns.items()):
                await self._registry_call(self._registry.add(user_id, conn_key, last_active))
            self.mark(user_id)

    async def set_in_call(self, user_id: int, call_id: str | None) -> None:
        """For calls: while ``call_id`` is set the user is busy, "in a call"."""
        await self._registry.set_call(user_id, call_id)
        self.mark(user_id)

    async def call_of(self, user_id: int) -> str | None:
        """The call the user is in now, on any node (None: none)."""
        return await self._registry.call_of(user_id)

    async def in_call(self, user_ids: list[int]) -> set[int]:
        """Which of these users are in a call now, on any node (calls ring them quietly)."""
        states = await self._registry.states(user_ids)
        return {uid for uid, state in states.items() if state.in_call}

    async def set_choice(
        self,
        user_id: int,
        *,
        choice: str,
        until: int | None,
        text: str | None,
        emoji: str | None,
        text_until: int | None,
    ) -> None:
        if choice not in CHOICES:
            raise ValueError(choice)
        for field, value in (("text", text), ("emoji", emoji)):
            # Control characters and bidi overrides (which can disguise text); joiners
            # and variation selectors stay, emoji need them.
            if value is not None and any(
                unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS
                for ch in value
            ):
                raise BadRequest(
                    f"The status {field} contains control characters.",
                    code="invalid_field",
                    field=field,
                )
        text = " ".join(text.split()) if text is not None else None
        now = self._clock()
        async with self._store.transaction() as conn:
            await presence_sql.upsert(
                conn,
                user_id,
                now=now,
                choice=choice,
                choice_until=until if choice != "auto" else None,
                **({} if text is None else {"text": text}),
                **({} if emoji is None else {"emoji": emoji}),
                **({} if text is None and emoji is None else {"text_until": text_until}),
            )
        await self.settings_changed(user_id)

    async def update_settings(self, user_id: int, **fields: Any) -> None:
        if fields:
            async with self._store.transaction() as conn:
                await presence_sql.upsert(conn, user_id, now=self._clock(), **fields)
        await self.settings_changed(user_id)

    async def settings_changed(self, user_id: int) -> None:
        """Every node drops its copy of the user's settings, then the user is recomputed."""
        self._settings.pop(user_id, None)
        try:
            await self._bus.publish(SETTINGS_TOPIC, encode({"user": user_id}))
        except BusUnavailable:
            log.warning("could not tell other nodes about presence settings of %s", user_id)
        self.mark(user_id)

    def _on_settings_changed(self, _topic: str, payload: bytes) -> None:
        try:
            user_id = msgspec.json.decode(payload, type=_SettingsChanged).user
        except msgspec.MsgspecError:
            return
        self._settings.pop(user_id, None)
        if user_id in self._local:
            self.mark(user_id)

    # -- computing and publishing -------------------------------------------------

    def mark(self, user_id: int) -> None:
        """Recompute this user soon; marks within the flush delay coalesce."""
        self._dirty.add(user_id)
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.flush_delay_s, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        if self._flushing is not None and not self._flushing.done():
            # One flush at a time; the running one will be followed by another.
            self._flush_handle = asyncio.get_running_loop().call_later(
                self.flush_delay_s, self._start_flush
            )
            return
        self._flushing = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        users, self._dirty = list(self._dirty), set()
        try:
            presences = await self.current(users)
            names = await self._usernames(users)
            for user_id, presence in presences.items():
                await self._publish_if_changed(user_id, names.get(user_id, ""), presence)
        except Exception as exc:
            log.warning("presence flush failed (%s); retrying in a second", exc)
            self._dirty.update(users)
            if self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_later(
                    FLUSH_RETRY_S, self._start_flush
                )

    async def _publish_if_changed(self, user_id: int, username: str, presence: Presence) -> None:
        event = PresenceEvent(user_id, username, **msgspec.structs.asdict(presence))
        encoded = encode(event)
        if await self._registry.swap_published(user_id, encoded):
            try:
                await self._bus.publish(presence_topic(user_id), encoded)
                self.changes_published += 1
            except BusUnavailable:
                log.warning("presence of %s not published: bus unavailable", user_id)

    async def current(self, user_ids: Iterable[int]) -> dict[int, Presence]:
        """Each user's presence now, from the registry and their settings; schedules timers."""
        wanted = list(dict.fromkeys(user_ids))
        states = await self._registry.states(wanted)
        settings = await self._load_settings(wanted)
        now = self._clock()
        result = {}
        for user_id in wanted:
            state = states[user_id]
            choice, meetings = settings[user_id].choice, settings[user_id].meetings
            meeting = next((m for m in meetings if m.start <= now < m.end), None)
            upcoming = next((m for m in meetings if m.start > now), None)
            result[user_id] = compute(
                now=now,
                activity=state.activity,
                choice=choice,
                in_call=state.in_call,
                meeting=meeting,
                idle_ms=self._idle_ms,
                last_seen=state.last_seen,
            )
            if state.activity and user_id in self._local:
                due = next_change(
                    now=now,
                    activity=state.activity,
                    choice=choice,
                    meeting=meeting or upcoming,
                    idle_ms=self._idle_ms,
                )
                if due is not None:
                    self._schedule(user_id, due)
        return result

    async def _usernames(self, user_ids: list[int]) -> dict[int, str]:
        """Usernames never change, so each is read from the database once per node."""
        missing = [uid for uid in user_ids if uid not in self._names]
        if missing:
            async with self._store.read() as conn:
                found = await user_sql.by_ids(conn, missing)
            if len(self._names) > 500_000:
                self._names.clear()
            self._names.update({uid: user.username for uid, user in found.items()})
        return {uid: self._names[uid] for uid in user_ids if uid in self._names}

    async def _load_settings(self, user_ids: list[int]) -> dict[int, _Settings]:
        missing = [uid for uid in user_ids if uid not in self._settings]
        if missing:
            async with self._store.read() as conn:
                rows = await presence_sql.for_users(conn, missing)
            if len(self._settings) > 200_000:
                self._settings.clear()
            for uid in missing:
                self._settings[uid] = _Settings(rows.get(uid) or presence_sql.defaults(uid))
        return {uid: self._settings[uid] for uid in user_ids}

    async def settings_of(self, user_ids: list[int]) -> dict[int, PresenceSettings]:
        return {uid: s.record for uid, s in (await self._load_settings(user_ids)).items()}

    # -- timers ----------------------------------------------------------------------

    def _schedule(self, user_id: int, due: int) -> None:
        if self._timer_due.get(user_id) == due:
            return
        self._timer_due[user_id] = due
        heapq.heappush(self._timers, (due, user_id))
        if self._timers[0] == (due, user_id):
            self._timer_wakeup.set()

    async def _timer_loop(self) -> None:
        while True:
            self._timer_wakeup.clear()
            if not self._timers:
                await self._timer_wakeup.wait()
                continue
            delay = (self._timers[0][0] - self._clock()) / 1000
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._timer_wakeup.wait(), min(delay, 60))
                continue
            due, user_id = heapq.heappop(self._timers)
            if self._timer_due.get(user_id) == due:
                del self._timer_due[user_id]
                self.mark(user_id)

    def poke_timers(self) -> None:
        """Wake the timer task (tests move a fake clock)."""
        self._timer_wakeup.set()

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self._registry.heartbeat()
                for user_id in await self._registry.reap():
                    self.mark(user_id)
            except Exception:
                log.exception("presence sweep failed; will retry")
            await asyncio.sleep(self._sweep_interval_s)

    # -- reading ---------------------------------------------------------------------

    async def presence_of(self, user_ids: list[int]) -> dict[int, PresenceEvent]:
        presences = await self.current(user_ids)
        names = await self._usernames(user_ids)
        return {
            uid: PresenceEvent(uid, names.get(uid, ""), **msgspec.structs.asdict(p))
            for uid, p in presences.items()
            if uid in names
        }

    async def peers(self, user_id: int) -> set[int]:
        """The users who share a room with this one: whose presence they may see."""
        async with self._store.read() as conn:
            return await presence_sql.peers(conn, user_id)

    async def check_visible(self, viewer: Identity, user_ids: Iterable[int]) -> None:
        """Guests see only the people they share a room with; members may look anyone up."""
        if viewer.user.role != "guest":
            return
        peers = await self.peers(viewer.user.id)
        if any(uid not in peers for uid in user_ids):
            raise Forbidden("Guests see the presence of people in their rooms only.")


class _Settings:
    """A user's stored settings and what presence derives from them, cached per node."""

    __slots__ = ("choice", "meetings", "record")

    def __init__(self, record: PresenceSettings) -> None:
        self.record = record
        self.choice = Choice(
            choice=record.choice,
            choice_until=record.choice_until,
            text=record.text,
            emoji=record.emoji,
            text_until=record.text_until,
            time_zone=record.time_zone,
        )
        self.meetings = merge_meetings(
            [Meeting(int(b["start"]), int(b["end"])) for b in (record.calendar_busy or [])]
        )


def merge_meetings(meetings: list[Meeting]) -> list[Meeting]:
    """Back-to-back or overlapping meetings become one block: "busy until" its end."""
    merged: list[Meeting] = []
    for meeting in sorted(meetings, key=lambda m: m.start):
        if merged and meeting.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Meeting(last.start, max(last.end, meeting.end))
        else:
            merged.append(meeting)
    return merged
