"""Calendar busy times: expansion and time zones, busy rules, guards, and the URL fetcher.

The fixtures are written out as iCalendar text here, so every case reads as
what a calendar program would export. The fetcher runs against a real local
aiohttp server.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from collab.presence import calendar as calendar_module
from collab.presence.calendar import (
    BusyInterval,
    CalendarError,
    CalendarFetcher,
    busy_at,
    next_change,
    parse_busy,
)

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]

OWNER = {"ann@example.com"}


def ms(text: str) -> int:
    """Epoch milliseconds of an ISO time in UTC, e.g. ``2025-03-10T09:00``."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ics(*events: str, preamble: str = "") -> bytes:
    """A calendar with the given VEVENT bodies (without BEGIN/END lines)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//collab tests//EN"]
    if preamble:
        lines.extend(line.strip() for line in preamble.splitlines() if line.strip())
    for event in events:
        lines.append("BEGIN:VEVENT")
        lines.extend(line.strip() for line in event.splitlines() if line.strip())
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


def busy(data: bytes, start: str, end: str, **kwargs: Any) -> list[BusyInterval]:
    kwargs.setdefault("owner_emails", OWNER)
    return parse_busy(data, window_start=utc(start), window_end=utc(end), **kwargs)


def error_of(data: bytes, **kwargs: Any) -> CalendarError:
    with pytest.raises(CalendarError) as caught:
        busy(data, "2025-03-01T00:00", "2025-03-15T00:00", **kwargs)
    return caught.value


BERLIN_VTIMEZONE = """
BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE
"""

# Mondays 10:00-11:00 Berlin time. Summer time starts on Sunday 30 March 2025,
# so the meeting is at 09:00Z before and 08:00Z after. The 24 March instance is
# moved across the change to Tuesday 1 April 14:00 (12:00Z), the 7 April
# instance is cancelled, and an extra instance is added on Thursday 3 April
# 16:00 (14:00Z).
WEEKLY = ics(
    """
    UID:team-sync@example.com
    DTSTAMP:20250101T000000Z
    SUMMARY:Team sync
    DTSTART;TZID=Europe/Berlin:20250310T100000
    DTEND;TZID=Europe/Berlin:20250310T110000
    RRULE:FREQ=WEEKLY;UNTIL=20250428T235959Z
    EXDATE;TZID=Europe/Berlin:20250407T100000
    RDATE;TZID=Europe/Berlin:20250403T160000
    """,
    """
    UID:team-sync@example.com
    DTSTAMP:20250101T000000Z
    RECURRENCE-ID;TZID=Europe/Berlin:20250324T100000
    SUMMARY:Team sync (moved)
    DTSTART;TZID=Europe/Berlin:20250401T140000
    DTEND;TZID=Europe/Berlin:20250401T150000
    """,
    preamble=BERLIN_VTIMEZONE,
)


# --- repeats and time zones --------------------------------------------------


def test_weekly_meeting_across_daylight_saving_with_cancelled_moved_and_extra_instances() -> None:
    found = busy(WEEKLY, "2025-03-10T00:00", "2025-04-22T00:00")
    assert found == [
        BusyInterval(ms("2025-03-10T09:00"), ms("2025-03-10T10:00"), "Team sync"),
        BusyInterval(ms("2025-03-17T09:00"), ms("2025-03-17T10:00"), "Team sync"),
        # 24 March moved away; 31 March is after the change: 10:00 CEST is 08:00Z.
        BusyInterval(ms("2025-03-31T08:00"), ms("2025-03-31T09:00"), "Team sync"),
        BusyInterval(ms("2025-04-01T12:00"), ms("2025-04-01T13:00"), "Team sync (moved)"),
        BusyInterval(ms("2025-04-03T14:00"), ms("2025-04-03T15:00"), "Team sync"),
        # 7 April cancelled by EXDATE.
        BusyInterval(ms("2025-04-14T08:00"), ms("2025-04-14T09:00"), "Team sync"),
        BusyInterval(ms("2025-04-21T08:00"), ms("2025-04-21T09:00"), "Team sync"),
    ]
    # The moved instance's old time is free, its new time busy.
    assert busy_at(found, ms("2025-03-24T09:30")) is None
    moved = busy_at(found, ms("2025-04-01T12:30"))
    assert moved is not None
    assert moved.summary == "Team sync (moved)"
    assert moved.end == ms("2025-04-01T13:00")
    # The cancelled instance is free at both its winter and summer UTC time.
    assert busy_at(found, ms("2025-04-07T08:30")) is None
    assert busy_at(found, ms("2025-04-07T09:30")) is None


def test_outlook_style_time_zone_name_uses_its_vtimezone() -> None:
    data = ics(
        """
        UID:outlook@example.com
        SUMMARY:Review
        DTSTART;TZID=W. Europe Standard Time:20250324T100000
        DTEND;TZID=W. Europe Standard Time:20250324T103000
        RRULE:FREQ=WEEKLY;COUNT=2
        """,
        preamble="""
        BEGIN:VTIMEZONE
        TZID:W. Europe Standard Time
        BEGIN:STANDARD
        DTSTART:16010101T030000
        TZOFFSETFROM:+0200
        TZOFFSETTO:+0100
        RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
        END:STANDARD
        BEGIN:DAYLIGHT
        DTSTART:16010101T020000
        TZOFFSETFROM:+0100
        TZOFFSETTO:+0200
        RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
        END:DAYLIGHT
        END:VTIMEZONE
        """,
    )
    found = busy(data, "2025-03-20T00:00", "2025-04-10T00:00")
    assert [(iv.start, iv.end) for iv in found] == [
        (ms("2025-03-24T09:00"), ms("2025-03-24T09:30")),
        (ms("2025-03-31T08:00"), ms("2025-03-31T08:30")),
    ]


def custom_zone_calendar(offset: str, rule: str = "") -> bytes:
    """An event at 10:00 in a zone named like Outlook's, defined in the file."""
    return ics(
        """
        UID:z@example.com
        SUMMARY:Call
        DTSTART;TZID=W. Europe Standard Time:20250324T100000
        DTEND;TZID=W. Europe Standard Time:20250324T110000
        """,
        preamble=f"""
        BEGIN:VTIMEZONE
        TZID:W. Europe Standard Time
        BEGIN:STANDARD
        DTSTART:16010101T030000
        TZOFFSETFROM:{offset}
        TZOFFSETTO:{offset}
        {"RRULE:" + rule if rule else ""}
        END:STANDARD
        END:VTIMEZONE
        """,
    )


def test_a_calendars_zone_definition_does_not_leak_into_the_next() -> None:
    # icalendar caches zones defined in a file process-wide, first one wins;
    # each parse must see only its own calendar's definition.
    for offset, start in (("+0500", "05:00"), ("+0100", "09:00"), ("-0300", "13:00")):
        found = busy(custom_zone_calendar(offset), "2025-03-20T00:00", "2025-03-30T00:00")
        assert [iv.start for iv in found] == [ms(f"2025-03-24T{start}")], offset


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=MINUTELY",
        "FREQ=YEARLY;INTERVAL=0;BYMONTH=10;BYDAY=-1SU",
        "FREQ=YEARLY;BYDAY=SU;BYHOUR=0,6,12,18",  # four times every Sunday until 9999
    ],
)
def test_time_zone_rule_that_would_expand_without_bound_is_refused(rule: str) -> None:
    started = time.process_time()  # CPU time: immune to a busy machine
    with pytest.raises(CalendarError) as caught:
        busy(custom_zone_calendar("+0100", rule), "2025-03-20T00:00", "2025-03-30T00:00")
    assert caught.value.code in {"calendar_invalid", "calendar_too_big"}
    assert time.process_time() - started < 1


def test_floating_times_are_read_in_the_default_time_zone() -> None:
    data = ics("UID:f\nSUMMARY:Standup\nDTSTART:20250312T100000\nDTEND:20250312T101500")
    assert busy(data, "2025-03-12T00:00", "2025-03-13T00:00", default_tz="Europe/Berlin") == [
        BusyInterval(ms("2025-03-12T09:00"), ms("2025-03-12T09:15"), "Standup")
    ]
    assert busy(data, "2025-03-12T00:00", "2025-03-13T00:00")[0].start == ms("2025-03-12T10:00")


def test_floating_event_just_outside_the_window_in_utc_is_left_out() -> None:
    # 00:30 Berlin on 13 March is 23:30Z on 12 March: inside a window ending at
    # midnight UTC, although its wall-clock date is the next day.
    data = ics("UID:f\nSUMMARY:Late\nDTSTART:20250313T003000\nDTEND:20250313T010000")
    inside = busy(data, "2025-03-12T00:00", "2025-03-13T00:00", default_tz="Europe/Berlin")
    assert [iv.start for iv in inside] == [ms("2025-03-12T23:30")]
    assert busy(data, "2025-03-13T00:00", "2025-03-14T00:00", default_tz="Europe/Berlin") == []


def test_intervals_overlapping_the_window_are_whole_not_clipped() -> None:
    data = ics(
        "UID:a\nSUMMARY:Night shift\nDTSTART:20250311T220000Z\nDTEND:20250312T020000Z",
        "UID:b\nSUMMARY:Before\nDTSTART:20250311T200000Z\nDTEND:20250311T230000Z",
        "UID:c\nSUMMARY:After\nDTSTART:20250313T000000Z\nDTEND:20250313T010000Z",
    )
    assert busy(data, "2025-03-12T00:00", "2025-03-13T00:00") == [
        BusyInterval(ms("2025-03-11T22:00"), ms("2025-03-12T02:00"), "Night shift")
    ]


def test_duration_and_missing_end() -> None:
    data = ics(
        "UID:a\nSUMMARY:With duration\nDTSTART:20250312T090000Z\nDURATION:PT45M",
        "UID:b\nSUMMARY:Reminder\nDTSTART:20250312T120000Z",
    )
    # A timed event without DTEND or DURATION has no length: never busy.
    assert busy(data, "2025-03-12T00:00", "2025-03-13T00:00") == [
        BusyInterval(ms("2025-03-12T09:00"), ms("2025-03-12T09:45"), "With duration")
    ]


def test_results_are_sorted_and_not_merged() -> None:
    data = ics(
        "UID:b\nSUMMARY:Second\nDTSTART:20250312T100000Z\nDTEND:20250312T110000Z",
        "UID:a\nSUMMARY:First\nDTSTART:20250312T093000Z\nDTEND:20250312T103000Z",
    )
    assert [iv.summary for iv in busy(data, "2025-03-12T00:00", "2025-03-13T00:00")] == [
        "First",
        "Second",
    ]


# --- which events block time ----------------------------------------------------


def test_all_day_event_is_free_unless_marked_busy() -> None:
    plain = "UID:d\nSUMMARY:Conference\nDTSTART;VALUE=DATE:20250312\nDTEND;VALUE=DATE:20250314"
    assert busy(ics(plain), "2025-03-10T00:00", "2025-03-20T00:00") == []
    assert busy(ics(plain + "\nTRANSP:TRANSPARENT"), "2025-03-10T00:00", "2025-03-20T00:00") == []

    # Busy from midnight to midnight in the default time zone, over both days.
    opaque = busy(
        ics(plain + "\nTRANSP:OPAQUE"),
        "2025-03-10T00:00",
        "2025-03-20T00:00",
        default_tz="Europe/Berlin",
    )
    assert opaque == [
        BusyInterval(ms("2025-03-11T23:00"), ms("2025-03-13T23:00"), "Conference"),
    ]
    for status in ("OOF", "BUSY"):
        marked = ics(plain + f"\nX-MICROSOFT-CDO-BUSYSTATUS:{status}")
        assert len(busy(marked, "2025-03-10T00:00", "2025-03-20T00:00")) == 1
    marked_free = ics(plain + "\nTRANSP:OPAQUE\nX-MICROSOFT-CDO-BUSYSTATUS:FREE")
    assert busy(marked_free, "2025-03-10T00:00", "2025-03-20T00:00") == []


def test_all_day_event_without_end_lasts_one_day() -> None:
    data = ics("UID:d\nSUMMARY:Away\nDTSTART;VALUE=DATE:20250312\nTRANSP:OPAQUE")
    assert busy(data, "2025-03-10T00:00", "2025-03-20T00:00") == [
        BusyInterval(ms("2025-03-12T00:00"), ms("2025-03-13T00:00"), "Away")
    ]


def test_long_absence_that_began_before_the_window_is_found() -> None:
    data = ics(
        "UID:v\nSUMMARY:Holiday\nDTSTART;VALUE=DATE:20250301\nDTEND;VALUE=DATE:20250321\n"
        "X-MICROSOFT-CDO-BUSYSTATUS:OOF"
    )
    assert busy(data, "2025-03-12T00:00", "2025-03-13T00:00") == [
        BusyInterval(ms("2025-03-01T00:00"), ms("2025-03-21T00:00"), "Holiday")
    ]


def test_repeating_all_day_event_marked_busy() -> None:
    data = ics(
        "UID:w\nSUMMARY:Remote Friday\nDTSTART;VALUE=DATE:20250307\nTRANSP:OPAQUE\n"
        "RRULE:FREQ=WEEKLY;BYDAY=FR"
    )
    found = busy(data, "2025-03-10T00:00", "2025-03-24T00:00", default_tz="Europe/Berlin")
    assert [(iv.start, iv.end) for iv in found] == [
        (ms("2025-03-13T23:00"), ms("2025-03-14T23:00")),
        (ms("2025-03-20T23:00"), ms("2025-03-21T23:00")),
    ]


def test_transparent_event_is_free() -> None:
    data = ics(
        "UID:t\nSUMMARY:Focus?\nDTSTART:20250312T090000Z\nDTEND:20250312T100000Z\n"
        "TRANSP:TRANSPARENT"
    )
    assert busy(data, "2025-03-12T00:00", "2025-03-13T00:00") == []


def test_outlook_free_and_working_elsewhere_are_free_tentative_is_busy() -> None:
    events = [
        f"UID:{status}\nSUMMARY:{status}\nDTSTART:20250312T0{hour}0000Z\n"
        f"DTEND:20250312T0{hour}3000Z\nX-MICROSOFT-CDO-BUSYSTATUS:{status}"
        for hour, status in enumerate(["FREE", "WORKINGELSEWHERE", "TENTATIVE", "BUSY"], start=1)
    ]
    found = busy(ics(*events), "2025-03-12T00:00", "2025-03-13T00:00")
    assert [iv.summary for iv in found] == ["TENTATIVE", "BUSY"]


def test_declined_by_the_owner_is_free() -> None:
    declined = ics(
        """
        UID:x
        SUMMARY:Budget
        DTSTART:20250312T090000Z
        DTEND:20250312T100000Z
        ORGANIZER:mailto:boss@example.com
        ATTENDEE;PARTSTAT=ACCEPTED:mailto:boss@example.com
        ATTENDEE;CN=Ann;PARTSTAT=DECLINED:MAILTO:Ann@Example.COM
        """
    )
    assert busy(declined, "2025-03-12T00:00", "2025-03-13T00:00") == []
    # The owner's addresses may come with mailto: and any case, too.
    assert (
        busy(
            declined,
            "2025-03-12T00:00",
            "2025-03-13T00:00",
            owner_emails={"MAILTO:ANN@example.com"},
        )
        == []
    )
    # Someone else declining does not free the owner.
    assert (
        len(busy(declined, "2025-03-12T00:00", "2025-03-13T00:00", owner_emails={"bob@x.org"})) == 1
    )


def test_owner_who_has_not_answered_or_is_tentative_is_busy() -> None:
    for partstat in ("NEEDS-ACTION", "TENTATIVE", "ACCEPTED"):
        data = ics(
            f"UID:x\nSUMMARY:Budget\nDTSTART:20250312T090000Z\nDTEND:20250312T100000Z\n"
            f"ATTENDEE;PARTSTAT={partstat}:mailto:ann@example.com"
        )
        assert len(busy(data, "2025-03-12T00:00", "2025-03-13T00:00")) == 1, partstat


def test_declined_single_instance_of_a_series() -> None:
    data = ics(
        """
        UID:s
        SUMMARY:Daily
        DTSTART:20250310T090000Z
        DTEND:20250310T093000Z
        RRULE:FREQ=DAILY;COUNT=5
        ATTENDEE;PARTSTAT=ACCEPTED:mailto:ann@example.com
        """,
        """
        UID:s
        RECURRENCE-ID:20250312T090000Z
        SUMMARY:Daily
        DTSTART:20250312T090000Z
        DTEND:20250312T093000Z
        ATTENDEE;PARTSTAT=DECLINED:mailto:ann@example.com
        """,
    )
    found = busy(data, "2025-03-10T00:00", "2025-03-20T00:00")
    assert [iv.start for iv in found] == [
        ms("2025-03-10T09:00"),
        ms("2025-03-11T09:00"),
        ms("2025-03-13T09:00"),
        ms("2025-03-14T09:00"),
    ]


def test_cancelled_event_and_cancelled_instance_are_free() -> None:
    data = ics(
        "UID:c\nSUMMARY:Off\nDTSTART:20250312T090000Z\nDTEND:20250312T100000Z\nSTATUS:CANCELLED",
        """
        UID:s
        SUMMARY:Daily
        DTSTART:20250310T090000Z
        DTEND:20250310T093000Z
        RRULE:FREQ=DAILY;COUNT=3
        STATUS:CONFIRMED
        """,
        """
        UID:s
        RECURRENCE-ID:20250311T090000Z
        SUMMARY:Daily
        DTSTART:20250311T090000Z
        DTEND:20250311T093000Z
        STATUS:CANCELLED
        """,
    )
    found = busy(data, "2025-03-10T00:00", "2025-03-20T00:00")
    assert [iv.start for iv in found] == [ms("2025-03-10T09:00"), ms("2025-03-12T09:00")]


def test_private_event_keeps_its_time_but_not_its_title() -> None:
    data = ics(
        "UID:p\nSUMMARY:Doctor\nCLASS:PRIVATE\nDTSTART:20250312T090000Z\nDTEND:20250312T100000Z"
    )
    assert busy(data, "2025-03-12T00:00", "2025-03-13T00:00") == [
        BusyInterval(ms("2025-03-12T09:00"), ms("2025-03-12T10:00"), "")
    ]


def test_zero_length_event_is_skipped_and_end_before_start_is_swapped() -> None:
    data = ics(
        "UID:x\nSUMMARY:Zero\nDTSTART:20250312T100000Z\nDTEND:20250312T100000Z",
        "UID:y\nSUMMARY:Odd\nDTSTART:20250312T120000Z\nDTEND:20250312T110000Z",
    )
    assert busy(data, "2025-03-12T00:00", "2025-03-13T00:00") == [
        BusyInterval(ms("2025-03-12T11:00"), ms("2025-03-12T12:00"), "Odd")
    ]


# --- busy_at and next_change ----------------------------------------------------

BLOCK = [
    BusyInterval(ms("2025-03-12T10:00"), ms("2025-03-12T11:00"), "A"),
    BusyInterval(ms("2025-03-12T11:00"), ms("2025-03-12T12:00"), "B"),
    BusyInterval(ms("2025-03-12T11:30"), ms("2025-03-12T11:45"), "C"),
    BusyInterval(ms("2025-03-12T13:00"), ms("2025-03-12T14:00"), "D"),
]


def test_busy_until_is_the_end_of_back_to_back_meetings() -> None:
    now = busy_at(BLOCK, ms("2025-03-12T10:30"))
    assert now == BusyInterval(ms("2025-03-12T10:00"), ms("2025-03-12T12:00"), "A")
    # Of the meetings under way, the one that ends last names the block.
    assert busy_at(BLOCK, ms("2025-03-12T11:40")) == BusyInterval(
        ms("2025-03-12T10:00"), ms("2025-03-12T12:00"), "B"
    )
    assert busy_at(BLOCK, ms("2025-03-12T12:00")) is None  # ends are exclusive
    assert busy_at(BLOCK, ms("2025-03-12T12:30")) is None
    assert busy_at(BLOCK, ms("2025-03-12T13:00")) == BLOCK[3]
    assert busy_at([], ms("2025-03-12T13:00")) is None


def test_overlapping_meeting_extends_the_block() -> None:
    overlapping = [*BLOCK, BusyInterval(ms("2025-03-12T11:50"), ms("2025-03-12T13:00"), "E")]
    # 11:50-13:00 bridges to D, which starts as E ends: one block until 14:00.
    found = busy_at(overlapping, ms("2025-03-12T10:15"))
    assert found is not None
    assert found.end == ms("2025-03-12T14:00")
    assert next_change(overlapping, ms("2025-03-12T10:15")) == ms("2025-03-12T14:00")


def test_next_change() -> None:
    assert next_change(BLOCK, ms("2025-03-12T09:00")) == ms("2025-03-12T10:00")
    assert next_change(BLOCK, ms("2025-03-12T10:00")) == ms("2025-03-12T12:00")
    assert next_change(BLOCK, ms("2025-03-12T11:59")) == ms("2025-03-12T12:00")
    assert next_change(BLOCK, ms("2025-03-12T12:00")) == ms("2025-03-12T13:00")
    assert next_change(BLOCK, ms("2025-03-12T13:30")) == ms("2025-03-12T14:00")
    assert next_change(BLOCK, ms("2025-03-12T14:00")) is None
    assert next_change([], ms("2025-03-12T14:00")) is None
    # Order of the input does not matter.
    assert next_change(list(reversed(BLOCK)), ms("2025-03-12T09:00")) == ms("2025-03-12T10:00")


def test_parsed_calendar_answers_the_presence_questions() -> None:
    found = busy(WEEKLY, "2025-03-30T00:00", "2025-04-06T00:00")
    assert next_change(found, ms("2025-03-30T12:00")) == ms("2025-03-31T08:00")
    assert next_change(found, ms("2025-03-31T08:10")) == ms("2025-03-31T09:00")
    meeting = busy_at(found, ms("2025-03-31T08:10"))
    assert meeting is not None
    assert (meeting.end, meeting.summary) == (ms("2025-03-31T09:00"), "Team sync")


# --- bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"<!DOCTYPE html><html><body>Sign in</body></html>",
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n",
        b"BEGIN:VEVENT\r\nUID:a\r\nEND:VEVENT\r\n",
        b"\x00\xff\xfe" * 100,
    ],
)
def test_not_a_calendar_is_invalid(data: bytes) -> None:
    err = error_of(data)
    assert err.code == "calendar_invalid"
    assert err.status == 400
    assert err.message


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=WEEKLY;FOO=BAR",
        "garbage",
        "FREQ=FORTNIGHTLY",
        "FREQ=DAILY;INTERVAL=0",
        "FREQ=DAILY;INTERVAL=x",
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",  # never happens
        "FREQ=HOURLY;COUNT=3;BYMONTH=4;BYMONTHDAY=31",  # never happens either
    ],
)
def test_broken_repeat_rule_is_invalid(rule: str) -> None:
    data = ics(f"UID:r\nSUMMARY:Broken\nDTSTART:20250301T090000Z\nDURATION:PT1H\nRRULE:{rule}")
    started = time.process_time()  # CPU time: immune to a busy machine
    err = error_of(data)
    assert err.code == "calendar_invalid", err
    assert "Broken" in err.message
    # An impossible rule would make the engine search up to the year 9999.
    assert time.process_time() - started < 2


def test_broken_date_is_invalid() -> None:
    err = error_of(ics("UID:x\nDTSTART:2025garbage\nDTEND:20250312T100000Z"))
    assert err.code == "calendar_invalid"


def test_calendar_over_the_size_limit() -> None:
    err = error_of(WEEKLY, max_bytes=100)
    assert err.code == "calendar_too_large"
    assert "limit" in err.message


@pytest.mark.parametrize(
    ("rule", "start"),
    [
        ("FREQ=SECONDLY", "20250301T000000Z"),
        ("FREQ=MINUTELY;BYMONTH=13", "20250301T000000Z"),
        ("FREQ=HOURLY", "19700101T000000Z"),
        (
            "FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11;BYMINUTE=0,10,20,30,40,50",
            "19700101T000000Z",
        ),
    ],
)
def test_rule_too_dense_to_expand_is_refused_before_expanding(rule: str, start: str) -> None:
    data = ics(f"UID:r\nSUMMARY:Spam\nDTSTART:{start}\nDURATION:PT1S\nRRULE:{rule}")
    started = time.process_time()  # CPU time: immune to a busy machine
    err = error_of(data)
    assert err.code == "calendar_too_big"
    assert time.process_time() - started < 1


def test_too_many_occurrences_in_the_window() -> None:
    # Every two minutes for the two weeks looked at: ten thousand occurrences.
    minutes = ",".join(str(m) for m in range(0, 60, 2))
    data = ics(
        "UID:r\nSUMMARY:Spam\nDTSTART:20250301T000000Z\nDURATION:PT1M\n"
        f"RRULE:FREQ=HOURLY;BYMINUTE={minutes}"
    )
    err = error_of(data)
    assert err.code == "calendar_too_big"
    assert "5000" in err.message
    daily = ics("UID:r\nSUMMARY:Daily\nDTSTART:20250301T090000Z\nDURATION:PT1H\nRRULE:FREQ=DAILY")
    assert error_of(daily, max_occurrences=10).code == "calendar_too_big"
    assert len(busy(daily, "2025-03-01T00:00", "2025-03-15T00:00", max_occurrences=20)) == 14


def test_cpu_budget_for_the_whole_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calendar_module, "MAX_PARSE_SECONDS", 0.0)
    assert error_of(WEEKLY).code == "calendar_too_big"


def test_calendar_error_is_an_api_error_with_the_usual_body() -> None:
    err = CalendarError("calendar_unreachable", "Could not connect.")
    assert (err.code, err.message, str(err), err.status) == (
        "calendar_unreachable",
        "Could not connect.",
        "Could not connect.",
        502,
    )
    assert err.body() == {
        "error": {"code": "calendar_unreachable", "message": "Could not connect."}
    }
    assert CalendarError("calendar_invalid", "x").status == 400


def test_unknown_default_time_zone() -> None:
    err = error_of(WEEKLY, default_tz="Mars/Olympus")
    assert err.code == "calendar_bad_timezone"
    assert "Mars/Olympus" in err.message


def test_naive_window_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_busy(
            WEEKLY,
            window_start=datetime(2025, 3, 1),
            window_end=datetime(2025, 3, 2),
            owner_emails=OWNER,
        )


def test_mangled_calendars_raise_only_calendar_errors() -> None:
    rng = random.Random(5545)
    variants = [WEEKLY[:cut] for cut in range(0, len(WEEKLY), 37)]
    for _ in range(150):
        data = bytearray(WEEKLY)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.choice(b":;=,\r\nZT0123456789-ABCXYZ\x00\xff")
        variants.append(bytes(data))
    for data in variants:
        try:
            busy(data, "2025-03-10T00:00", "2025-04-22T00:00")
        except CalendarError as err:
            assert err.code in {"calendar_invalid", "calendar_too_big"}, err
            assert "\n" not in err.message


# --- fetching by URL --------------------------------------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


async def test_fetch_then_not_modified_with_etag(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    seen: list[dict[str, str | None]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            {
                "If-None-Match": request.headers.get("If-None-Match"),
                "If-Modified-Since": request.headers.get("If-Modified-Since"),
            }
        )
        headers = {"ETag": '"v1"', "Last-Modified": "Wed, 12 Mar 2025 09:00:00 GMT"}
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.Response(body=WEEKLY, content_type="text/calendar", headers=headers)

    app = web.Application()
    app.router.add_get("/cal.ics", handler)
    server = await aiohttp_server(app)
    fetcher = CalendarFetcher(session)

    first = await fetcher.fetch(str(server.make_url("/cal.ics")))
    assert first.body == WEEKLY
    assert not first.not_modified
    assert (first.etag, first.last_modified) == ('"v1"', "Wed, 12 Mar 2025 09:00:00 GMT")

    second = await fetcher.fetch(
        str(server.make_url("/cal.ics")), etag=first.etag, last_modified=first.last_modified
    )
    assert second.not_modified
    assert second.body is None
    # A 304 without Last-Modified keeps the one we had.
    assert (second.etag, second.last_modified) == (first.etag, first.last_modified)
    assert seen == [
        {"If-None-Match": None, "If-Modified-Since": None},
        {"If-None-Match": '"v1"', "If-Modified-Since": "Wed, 12 Mar 2025 09:00:00 GMT"},
    ]


async def test_body_over_the_limit_is_cut_off_while_streaming(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    sent = {"bytes": 0, "finished": False}

    async def handler(request: web.Request) -> web.StreamResponse:
        # Chunked, so no Content-Length warns the client: 3 MB, streamed.
        response = web.StreamResponse(headers={"Content-Type": "text/calendar"})
        await response.prepare(request)
        chunk = b"BEGIN:VCALENDAR\r\n" + b"X" * (64 * 1024 - 17)
        try:
            while sent["bytes"] < 3 * 1024 * 1024:
                await response.write(chunk)
                sent["bytes"] += len(chunk)
        except ConnectionError:
            return response
        sent["finished"] = True
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/big.ics", handler)
    server = await aiohttp_server(app)
    with pytest.raises(CalendarError) as caught:
        await CalendarFetcher(session).fetch(str(server.make_url("/big.ics")))
    assert caught.value.code == "calendar_too_large"
    assert "2.0 MB" in caught.value.message


async def test_endless_body_is_not_read_to_the_end(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    sent = {"bytes": 0}
    stopped = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/calendar"})
        await response.prepare(request)
        chunk = b"X" * (64 * 1024)
        try:
            while sent["bytes"] < 500 * 1024 * 1024:  # a safety stop, never reached
                await response.write(chunk)
                sent["bytes"] += len(chunk)
        except ConnectionError:
            pass
        finally:
            stopped.set()
        return response

    app = web.Application()
    app.router.add_get("/endless.ics", handler)
    server = await aiohttp_server(app)
    with pytest.raises(CalendarError) as caught:
        await CalendarFetcher(session, max_bytes=256 * 1024).fetch(
            str(server.make_url("/endless.ics"))
        )
    assert caught.value.code == "calendar_too_large"
    # The client hung up: the server's writes fail soon after the limit.
    await asyncio.wait_for(stopped.wait(), 10)
    assert sent["bytes"] < 64 * 1024 * 1024


async def test_declared_content_length_over_the_limit_is_refused_unread(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"BEGIN:VCALENDAR\r\n" + b"X" * (3 * 1024 * 1024))

    app = web.Application()
    app.router.add_get("/big.ics", handler)
    server = await aiohttp_server(app)
    with pytest.raises(CalendarError) as caught:
        await CalendarFetcher(session).fetch(str(server.make_url("/big.ics")))
    assert caught.value.code == "calendar_too_large"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_unreachable_port(session: aiohttp.ClientSession) -> None:
    port = free_port()
    with pytest.raises(CalendarError) as caught:
        await CalendarFetcher(session).fetch(f"http://127.0.0.1:{port}/cal.ics")
    err = caught.value
    assert err.code == "calendar_unreachable"
    assert err.status == 502
    assert f"127.0.0.1:{port}" in err.message
    assert "connect" in err.message.lower()


async def test_unknown_host_name(session: aiohttp.ClientSession) -> None:
    with pytest.raises(CalendarError) as caught:
        await CalendarFetcher(session, timeout=5).fetch("http://calendar.invalid/cal.ics")
    assert caught.value.code == "calendar_unreachable"
    assert "calendar.invalid" in caught.value.message


async def test_slow_server_times_out(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await asyncio.wait_for(release.wait(), 5)
        return web.Response(body=WEEKLY)

    app = web.Application()
    app.router.add_get("/slow.ics", handler)
    server = await aiohttp_server(app)
    started = time.monotonic()
    try:
        with pytest.raises(CalendarError) as caught:
            await CalendarFetcher(session, timeout=0.3).fetch(str(server.make_url("/slow.ics")))
    finally:
        release.set()
    assert time.monotonic() - started < 3
    err = caught.value
    assert err.code == "calendar_unreachable"
    assert "did not answer within 0.3 seconds" in err.message
    assert f"127.0.0.1:{server.port}" in err.message


async def test_body_that_trickles_times_out(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/calendar"})
        await response.prepare(request)
        await response.write(b"BEGIN:VCALENDAR\r\n")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 5)
        return response

    app = web.Application()
    app.router.add_get("/trickle.ics", handler)
    server = await aiohttp_server(app)
    try:
        with pytest.raises(CalendarError) as caught:
            await CalendarFetcher(session, timeout=0.3).fetch(str(server.make_url("/trickle.ics")))
    finally:
        release.set()
    assert caught.value.code == "calendar_unreachable"


@pytest.mark.parametrize(
    ("status", "words"), [(500, "500 Internal Server Error"), (404, "404"), (401, "sign-in")]
)
async def test_http_error_status(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession, status: int, words: str
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text="nope")

    app = web.Application()
    app.router.add_get("/cal.ics", handler)
    server = await aiohttp_server(app)
    with pytest.raises(CalendarError) as caught:
        await CalendarFetcher(session).fetch(str(server.make_url("/cal.ics")))
    err = caught.value
    assert err.code == "calendar_http_error"
    assert words in err.message
    assert "/cal.ics" not in err.message  # host only: paths may hold secret tokens


@pytest.mark.parametrize(
    "url",
    [
        "ftp://calendar.example.com/cal.ics",
        "file:///etc/passwd",
        "webcal://calendar.example.com/cal.ics",
        "calendar.example.com/cal.ics",
        "http:///cal.ics",
        "",
    ],
)
async def test_only_http_and_https_addresses(session: aiohttp.ClientSession, url: str) -> None:
    with pytest.raises(CalendarError) as caught:
        await CalendarFetcher(session).fetch(url)
    assert caught.value.code == "calendar_bad_url"
    assert caught.value.message


async def test_garbage_body_is_invalid(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            text="<html><body>Please sign in</body></html>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/cal.ics", handler)
    server = await aiohttp_server(app)
    with pytest.raises(CalendarError) as caught:
        await CalendarFetcher(session).fetch(str(server.make_url("/cal.ics")))
    assert caught.value.code == "calendar_invalid"
    assert "text/html" in caught.value.message


async def test_redirects_are_followed_up_to_three(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    async def hop(request: web.Request) -> web.Response:
        left = int(request.match_info["left"])
        target = "/cal.ics" if left == 0 else f"/hop/{left - 1}"
        raise web.HTTPFound(target)

    async def calendar(request: web.Request) -> web.Response:
        return web.Response(body=b"\xef\xbb\xbf" + WEEKLY, headers={"ETag": '"v2"'})

    app = web.Application()
    app.router.add_get("/hop/{left}", hop)
    app.router.add_get("/cal.ics", calendar)
    server = await aiohttp_server(app)
    fetcher = CalendarFetcher(session)
    result = await fetcher.fetch(str(server.make_url("/hop/2")))  # three redirects
    assert result.body is not None and result.body.endswith(WEEKLY)
    assert result.etag == '"v2"'
    with pytest.raises(CalendarError) as caught:
        await fetcher.fetch(str(server.make_url("/hop/3")))  # four
    assert caught.value.code == "calendar_http_error"
    assert "redirect" in caught.value.message


async def test_redirect_loop_is_an_error(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    hits = {"n": 0}

    async def loop(request: web.Request) -> web.Response:
        hits["n"] += 1
        raise web.HTTPMovedPermanently("/loop")

    app = web.Application()
    app.router.add_get("/loop", loop)
    server = await aiohttp_server(app)
    with pytest.raises(CalendarError) as caught:
        await CalendarFetcher(session).fetch(str(server.make_url("/loop")))
    assert caught.value.code == "calendar_http_error"
    assert "loop" in caught.value.message
    assert hits["n"] == 4  # the first request and three redirects


async def test_redirect_to_another_scheme_is_refused(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound("file:///etc/passwd")

    app = web.Application()
    app.router.add_get("/cal.ics", handler)
    server = await aiohttp_server(app)
    with pytest.raises(CalendarError) as caught:
        await CalendarFetcher(session).fetch(str(server.make_url("/cal.ics")))
    assert caught.value.code == "calendar_bad_url"


async def test_fetched_calendar_parses(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=WEEKLY, content_type="text/calendar")

    app = web.Application()
    app.router.add_get("/cal.ics", handler)
    server = await aiohttp_server(app)
    result = await CalendarFetcher(session).fetch(str(server.make_url("/cal.ics")))
    assert result.body is not None
    found = await asyncio.to_thread(
        parse_busy,
        result.body,
        window_start=utc("2025-03-30T00:00"),
        window_end=utc("2025-04-06T00:00"),
        owner_emails=OWNER,
    )
    assert len(found) == 3


async def test_a_failing_calendar_leaves_the_session_usable(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            for _ in range(100):
                await response.write(b"X" * 65536)
        except ConnectionError:
            pass
        return response

    async def good(request: web.Request) -> web.Response:
        return web.Response(body=WEEKLY)

    app = web.Application()
    app.router.add_get("/big.ics", big)
    app.router.add_get("/good.ics", good)
    server = await aiohttp_server(app)
    fetcher = CalendarFetcher(session, max_bytes=100_000)
    for _ in range(3):
        with pytest.raises(CalendarError):
            await fetcher.fetch(str(server.make_url("/big.ics")))
        assert (await fetcher.fetch(str(server.make_url("/good.ics")))).body == WEEKLY
