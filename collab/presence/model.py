"""How one user's status is worked out: a pure function of what we know at a moment.

Keeping the rules here, apart from timers, sockets and storage, means every
rule can be tested with plain values, and every node computes the same
answer from the same inputs.

Order of precedence:
1. no live connection anywhere: ``offline`` (with when the user was last seen);
2. ``dnd`` chosen by the user;
3. any other manual choice (``busy``, ``away``) while it lasts;
4. in a call: ``busy``, "in a call";
5. in a calendar meeting: ``busy``, "in a meeting until HH:MM";
6. every connection idle for the idle time: ``away``, "idle since HH:MM";
7. otherwise ``available``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

STATUSES = ("available", "away", "busy", "dnd", "offline")
CHOICES = ("auto", "busy", "dnd", "away")


class Presence(msgspec.Struct, frozen=True):
    """What others see of a user."""

    status: str
    reason: str | None = None
    text: str | None = None
    emoji: str | None = None
    until: int | None = None  # when this status ends by itself, if known
    text_until: int | None = None
    last_seen: int | None = None


class Choice(msgspec.Struct, frozen=True):
    """The user's own settings that bear on their status."""

    choice: str = "auto"
    choice_until: int | None = None
    text: str = ""
    emoji: str = ""
    text_until: int | None = None
    time_zone: str = "UTC"


class Meeting(msgspec.Struct, frozen=True):
    start: int
    end: int


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def clock_time(ms: int, time_zone: str) -> str:
    """HH:MM in the user's time zone, as people say it."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(zone(time_zone)).strftime("%H:%M")


def compute(
    *,
    now: int,
    activity: Sequence[int],
    choice: Choice,
    in_call: bool,
    meeting: Meeting | None,
    idle_ms: int,
    last_seen: int | None,
) -> Presence:
    """The status of a user, given the last activity time of each live connection."""
    text_live = bool(choice.text or choice.emoji) and (
        choice.text_until is None or choice.text_until > now
    )
    text = choice.text or None if text_live else None
    emoji = choice.emoji or None if text_live else None
    text_until = choice.text_until if text_live else None

    def make(status: str, reason: str | None = None, until: int | None = None) -> Presence:
        return Presence(status, reason, text, emoji, until, text_until, None)

    if not activity:
        return Presence("offline", None, text, emoji, None, text_until, last_seen)
    manual = choice.choice != "auto" and (choice.choice_until is None or choice.choice_until > now)
    if manual:
        reason = None
        if choice.choice_until is not None:
            reason = f"until {clock_time(choice.choice_until, choice.time_zone)}"
        return make(choice.choice, reason, choice.choice_until)
    if in_call:
        return make("busy", "in a call")
    if meeting is not None and meeting.start <= now < meeting.end:
        return make(
            "busy", f"in a meeting until {clock_time(meeting.end, choice.time_zone)}", meeting.end
        )
    latest = max(activity)
    if now - latest >= idle_ms:
        return make("away", f"idle since {clock_time(latest, choice.time_zone)}")
    return make("available")


def next_change(
    *,
    now: int,
    activity: Sequence[int],
    choice: Choice,
    meeting: Meeting | None,
    idle_ms: int,
) -> int | None:
    """The next moment the answer of ``compute`` may change with no new input."""
    moments: list[int] = []
    if activity:
        idle_at = max(activity) + idle_ms
        if idle_at > now:
            moments.append(idle_at)
    for moment in (choice.choice_until, choice.text_until):
        if moment is not None and moment > now:
            moments.append(moment)
    if meeting is not None:
        moments.extend(t for t in (meeting.start, meeting.end) if t > now)
    return min(moments) if moments else None


def in_quiet_hours(now: int, time_zone: str, start: int | None, end: int | None) -> bool:
    """Whether ``now`` falls in the daily window [start, end) (minutes after midnight in
    the user's time zone); a window may run past midnight (22:00 to 07:00)."""
    if start is None or end is None or start == end:
        return False
    local = datetime.fromtimestamp(now / 1000, tz=UTC).astimezone(zone(time_zone))
    minute = local.hour * 60 + local.minute
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end
