"""The status rules as a pure function: every precedence, with plain values."""

from __future__ import annotations

from datetime import UTC, datetime

from collab.presence.model import Choice, Meeting, compute, in_quiet_hours, next_change

MIN = 60_000
IDLE = 10 * MIN
NOW = int(datetime(2026, 11, 25, 14, 0, tzinfo=UTC).timestamp() * 1000)


def status(**kw: object) -> tuple[str, str | None]:
    args: dict[str, object] = {
        "now": NOW,
        "activity": [NOW],
        "choice": Choice(),
        "in_call": False,
        "meeting": None,
        "idle_ms": IDLE,
        "last_seen": None,
    }
    args.update(kw)
    result = compute(**args)  # type: ignore[arg-type]
    return result.status, result.reason


def test_no_connection_is_offline_with_last_seen() -> None:
    result = compute(
        now=NOW,
        activity=[],
        choice=Choice(choice="dnd"),
        in_call=True,
        meeting=None,
        idle_ms=IDLE,
        last_seen=NOW - 5 * MIN,
    )
    assert (result.status, result.last_seen) == ("offline", NOW - 5 * MIN)


def test_one_active_device_keeps_the_user_available() -> None:
    assert status(activity=[NOW - 30 * MIN, NOW - MIN]) == ("available", None)
    assert status(activity=[NOW - 30 * MIN, NOW - 11 * MIN]) == ("away", "idle since 13:49")


def test_idle_time_is_shown_in_the_users_time_zone() -> None:
    choice = Choice(time_zone="Europe/Berlin")
    assert status(activity=[NOW - 11 * MIN], choice=choice) == ("away", "idle since 14:49")


def test_manual_choice_wins_over_call_and_meeting_and_ends_by_itself() -> None:
    busy = Choice(choice="busy", choice_until=NOW + 30 * MIN)
    assert status(choice=busy, in_call=True) == ("busy", "until 14:30")
    assert status(choice=busy, now=NOW + 31 * MIN, activity=[NOW + 31 * MIN]) == (
        "available",
        None,
    )
    away = Choice(choice="away")
    assert status(choice=away, meeting=Meeting(NOW - MIN, NOW + MIN)) == ("away", None)


def test_dnd_wins_over_everything_but_offline() -> None:
    dnd = Choice(choice="dnd")
    assert status(choice=dnd, in_call=True, meeting=Meeting(NOW, NOW + MIN)) == ("dnd", None)
    assert status(choice=dnd, activity=[NOW - 60 * MIN]) == ("dnd", None)


def test_call_then_meeting_then_idle() -> None:
    meeting = Meeting(NOW - 10 * MIN, NOW + 30 * MIN)
    assert status(in_call=True, meeting=meeting) == ("busy", "in a call")
    assert status(meeting=meeting) == ("busy", "in a meeting until 14:30")
    assert status(meeting=meeting, activity=[NOW - 20 * MIN]) == (
        "busy",
        "in a meeting until 14:30",
    )
    assert status(meeting=Meeting(NOW + MIN, NOW + 2 * MIN)) == ("available", None)


def test_custom_text_expires() -> None:
    choice = Choice(text="Dentist, back at 2", emoji="🦷", text_until=NOW + MIN)
    live = compute(
        now=NOW,
        activity=[NOW],
        choice=choice,
        in_call=False,
        meeting=None,
        idle_ms=IDLE,
        last_seen=None,
    )
    assert (live.text, live.emoji, live.text_until) == ("Dentist, back at 2", "🦷", NOW + MIN)
    later = compute(
        now=NOW + 2 * MIN,
        activity=[NOW + 2 * MIN],
        choice=choice,
        in_call=False,
        meeting=None,
        idle_ms=IDLE,
        last_seen=None,
    )
    assert (later.text, later.emoji) == (None, None)


def test_next_change_is_the_earliest_coming_moment() -> None:
    choice = Choice(choice="busy", choice_until=NOW + 20 * MIN, text="x", text_until=NOW + 5 * MIN)
    assert (
        next_change(now=NOW, activity=[NOW], choice=choice, meeting=None, idle_ms=IDLE)
        == NOW + 5 * MIN
    )
    assert (
        next_change(now=NOW, activity=[NOW - 9 * MIN], choice=Choice(), meeting=None, idle_ms=IDLE)
        == NOW + MIN
    )
    assert (
        next_change(
            now=NOW,
            activity=[NOW],
            choice=Choice(),
            meeting=Meeting(NOW + 2 * MIN, NOW + 3 * MIN),
            idle_ms=IDLE,
        )
        == NOW + 2 * MIN
    )


def test_quiet_hours_across_midnight_in_the_users_zone() -> None:
    at = int(datetime(2026, 11, 25, 22, 30, tzinfo=UTC).timestamp() * 1000)
    assert in_quiet_hours(at, "UTC", 22 * 60, 7 * 60)
    assert not in_quiet_hours(at, "UTC", 23 * 60, 7 * 60)
    # 22:30 UTC is 23:30 in Berlin in November.
    assert in_quiet_hours(at, "Europe/Berlin", 23 * 60, 7 * 60)
    assert not in_quiet_hours(at, "UTC", None, None)
    assert in_quiet_hours(at, "UTC", 12 * 60, 23 * 60)
