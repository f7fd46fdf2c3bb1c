"""Busy times from a user's iCalendar feed: parse, expand repeats, fetch by URL.

Presence shows a user as ``busy`` ("in a meeting until HH:MM") while their
calendar has an event that blocks time. This module turns calendar bytes into
plain intervals in UTC epoch milliseconds, answers "busy now, and until when?"
and "when does that answer next change?", and fetches a calendar from an
http(s) address. It knows nothing of users, storage or timers: the presence
service owns those.

Expansion of repeats (RRULE, RDATE, EXDATE, overridden instances) and time
zones (TZID, VTIMEZONE, daylight-saving changes) is left to ``icalendar`` and
``recurring_ical_events``; hand-made recurrence code gets exactly these cases
wrong. What this module adds is the busy rules and guards, so that a hostile
or broken calendar costs bounded time and memory and ends in a
``CalendarError`` with a message the user can act on, never in another
exception.

Which events make a user busy (``parse_busy``):

- ``STATUS:CANCELLED`` is free.
- ``TRANSP:TRANSPARENT`` is free, and so is ``X-MICROSOFT-CDO-BUSYSTATUS``
  ``FREE`` or ``WORKINGELSEWHERE`` (Outlook's "free" and "working elsewhere").
- An event that one of the owner's addresses has declined
  (``ATTENDEE;PARTSTAT=DECLINED``) is free. Any other answer, including no
  answer yet (``NEEDS-ACTION``) and ``TENTATIVE``, counts as busy: showing a
  person busy by mistake costs less than interrupting a meeting.
- An all-day event (DTSTART is a date) is free unless it says explicitly that
  it blocks time: ``TRANSP:OPAQUE`` written out, or
  ``X-MICROSOFT-CDO-BUSYSTATUS`` ``BUSY`` or ``OOF``. Birthdays, holidays and
  "Anna in Berlin" are all-day events; they should not make anyone busy all
  day. A busy all-day event runs from midnight to midnight in ``default_tz``.
- Times without a time zone (floating) are read in ``default_tz``.
- Without DTEND, DURATION gives the length; with neither, a timed event is
  zero-length (a reminder, never busy) and an all-day event lasts one day.
- A zero-length event is skipped; one whose DTEND comes before its DTSTART
  is read with the two swapped, as ``recurring_ical_events`` reads it.
- The summary of ``CLASS:PRIVATE`` or ``CONFIDENTIAL`` events is blanked, since
  presence is shown to other people.

Calendars come from users, so parsing is guarded: a size limit; a static
check that no repeat rule makes the recurrence engine step through absurdly
many candidates (an hourly rule since 1970; rules that repeat every minute or
second are refused outright); a probe that refuses rules
that can never match (the engine would search up to the year 9999 for them);
the same kind of check on the rules of time zones defined in the file; a cap
on the number of occurrences in the window; and a CPU-time budget
(``MAX_PARSE_SECONDS``) checked between repeating events. Each parse also
gets a zone cache of its own (see ``_ICALENDAR_LOCK``), so one user's calendar
cannot redefine the time zones of another's. The work is CPU-bound
(milliseconds for a normal calendar, seconds at the limits), so callers should
run ``parse_busy`` in a thread (``asyncio.to_thread``), and only when the
calendar or the window changes.

Fetching (``CalendarFetcher``) allows private and loopback addresses on
purpose: collab is an intranet product and the company calendar the feature
exists for lives on the intranet. Blocking them would break the feature; the
guards that remain are the scheme check (http and https only, also after
redirects), a time-out, a size limit and a redirect limit. An installation
that must keep users from probing internal hosts should give the app's
``ClientSession`` a connector or proxy that enforces its own policy.
"""

from __future__ import annotations

import asyncio
import errno
import re
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from time import thread_time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp
import icalendar
import msgspec
import recurring_ical_events
from dateutil.rrule import rrulestr
from yarl import URL

from collab.api.errors import ApiError

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
"""Largest calendar accepted, fetched or uploaded. A busy person's multi-year
Outlook export is a few hundred kilobytes."""

DEFAULT_TIMEOUT = 10.0
"""Seconds a whole fetch may take: connecting, redirects and the body."""

DEFAULT_MAX_OCCURRENCES = 5_000
"""Occurrences one window may expand to before the calendar counts as too big.
A person with back-to-back fifteen-minute meetings has a few hundred a month."""

MAX_REDIRECTS = 3

MAX_RULE_WORK = 300_000
"""Upper bound of candidate instants the recurrence engine may step through for
one rule, from its DTSTART to the window (about a second of CPU). Normal rules
stay far below (a daily event since 1900 is about 46,000); an hourly one since
1990 does not."""

MAX_PARSE_SECONDS = 5.0
"""CPU seconds one parse may spend, checked between repeating events (the
engine cannot be interrupted inside one). Catches calendars with very many
expensive rules, each under ``MAX_RULE_WORK``. A normal calendar takes
milliseconds; two hundred daily meetings repeating since 2015 take about three
seconds, since the engine walks every day from each DTSTART."""

MAX_TIMEZONE_TRANSITIONS = 1_000_000
"""Transitions all VTIMEZONE rules of a calendar may define up to the year 9999.
Zones defined in the file are worked out by dateutil, which walks a zone's
rules from their start to each moment looked up (and with the pytz provider
lists them all), so a ``FREQ=MINUTELY`` zone would never finish. One ordinary
zone defined since 1601, as Outlook writes them, has about 17,000."""

_ICALENDAR_LOCK = threading.Lock()
"""Held while a calendar is parsed and expanded, one calendar at a time.

``icalendar`` keeps one process-wide cache of the zones that calendars define
in VTIMEZONE under a TZID it does not know (Outlook's "W. Europe Standard
Time", say), filled while parsing and never emptied, and the first definition
of a name wins. In a server that parses many users' calendars, one user's
calendar would then decide the time zone of everyone else's events, and the
cache would grow with every new name. So each parse starts and ends with an
empty cache (``icalendar.use_zoneinfo()`` replaces it), and the lock keeps two
parses from sharing it. Parsing is CPU-bound Python, so the lock costs little
throughput. Nothing else in collab may use ``icalendar``'s zone lookups
concurrently."""

_SUMMARY_MAX = 200
_REASON_MAX = 160
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_QUERY_SLACK = timedelta(days=1)
"""How far the expansion reaches past each side of the window: floating and
all-day times sit up to 14 hours from UTC, so a query in UTC must reach
further to see them. Exact overlap is checked afterwards, in UTC."""

_FREE_BUSYSTATUS = frozenset({"FREE", "WORKINGELSEWHERE"})
_ALL_DAY_BUSYSTATUS = frozenset({"BUSY", "OOF"})
_PRIVATE_CLASSES = frozenset({"PRIVATE", "CONFIDENTIAL"})

# Seconds in one period of each FREQ (the shortest month and year, so the
# number of periods is never under-estimated) and how many days the engine
# walks through in each period.
_FREQ_SECONDS = {
    "HOURLY": 3_600,
    "DAILY": 86_400,
    "WEEKLY": 7 * 86_400,
    "MONTHLY": 28 * 86_400,
    "YEARLY": 365 * 86_400,
}
_FREQ_DAYS = {"YEARLY": 366, "MONTHLY": 31, "WEEKLY": 7}
_FREQ_ORDER = ["YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY", "SECONDLY"]

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ACCEPT = "text/calendar, text/plain;q=0.5, */*;q=0.1"
_USER_AGENT = "collab-calendar/1"
_BOM = b"\xef\xbb\xbf"


class CalendarError(ApiError):
    """A calendar that cannot be used, with a code and a message for the user.

    Codes: ``calendar_invalid`` (not iCalendar, or broken inside),
    ``calendar_too_big`` (expands to too many occurrences, or a repeat rule
    too dense to expand), ``calendar_too_large`` (more bytes than allowed),
    ``calendar_bad_url``, ``calendar_bad_timezone``, ``calendar_unreachable``
    (connection failed or timed out) and ``calendar_http_error`` (the server
    answered with an error, or redirected too often).

    It is an ``ApiError`` so a route that checks a calendar on the spot can let
    it through as a 400 (the user's input is wrong) or a 502 (their calendar
    server is); a background poll stores ``code`` and ``message`` on the
    user's settings instead.
    """

    _UPSTREAM = frozenset({"calendar_unreachable", "calendar_http_error"})

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code, status=502 if code in self._UPSTREAM else 400)

    def __repr__(self) -> str:
        return f"CalendarError({self.code!r}, {self.message!r})"


class BusyInterval(msgspec.Struct, frozen=True):
    """One occurrence that blocks time, in UTC epoch milliseconds, end exclusive."""

    start: int
    end: int
    summary: str


class FetchResult(msgspec.Struct, frozen=True):
    """The outcome of one fetch.

    ``not_modified`` means the server answered 304: ``body`` is ``None`` and the
    calendar the caller already has is still current. ``etag`` and
    ``last_modified`` are what to send next time (the previous ones are kept
    when a 304 does not repeat them).
    """

    body: bytes | None
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False


# ---------------------------------------------------------------------------
# Parsing


def parse_busy(
    ics: bytes,
    *,
    window_start: datetime,
    window_end: datetime,
    owner_emails: set[str],
    default_tz: str = "UTC",
    max_occurrences: int = DEFAULT_MAX_OCCURRENCES,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[BusyInterval]:
    """The busy intervals of a calendar that overlap ``[window_start, window_end)``.

    Intervals are whole (not clipped to the window), sorted by start, and not
    merged: each keeps its own summary. ``owner_emails`` are the user's
    addresses, to recognise the events they declined. The window must be
    given as aware datetimes; a naive one is a programming error
    (``ValueError``). Everything wrong with ``ics`` or ``default_tz`` raises
    ``CalendarError``; see the module docstring for the busy rules.
    """
    if window_start.tzinfo is None or window_end.tzinfo is None:
        raise ValueError("window_start and window_end must be timezone-aware")
    if len(ics) > max_bytes:
        raise CalendarError(
            "calendar_too_large",
            f"The calendar is {_size(len(ics))}; the limit is {_size(max_bytes)}.",
        )
    zone = _zone(default_tz)
    start_utc = window_start.astimezone(UTC)
    end_utc = window_end.astimezone(UTC)
    if end_utc <= start_utc:
        return []
    owners = {_address(email) for email in owner_emails}
    try:
        with _ICALENDAR_LOCK:
            icalendar.use_zoneinfo()  # an empty zone cache: see _ICALENDAR_LOCK
            try:
                return _parse_busy(ics, start_utc, end_utc, owners, zone, max_occurrences)
            finally:
                icalendar.use_zoneinfo()
    except CalendarError:
        raise
    except Exception as exc:
        # Third-party parsing code raises anything from ValueError to
        # KeyError on malformed input; all of it means "this calendar is broken".
        raise CalendarError(
            "calendar_invalid", f"The calendar could not be read: {_reason(exc)}"
        ) from exc


def _parse_busy(
    ics: bytes,
    start_utc: datetime,
    end_utc: datetime,
    owners: set[str],
    zone: tzinfo,
    max_occurrences: int,
) -> list[BusyInterval]:
    calendar = icalendar.Calendar.from_ical(ics.removeprefix(_BOM))
    if calendar.name != "VCALENDAR":
        raise CalendarError(
            "calendar_invalid",
            f"The file holds a {calendar.name or 'nameless'} component, not a calendar.",
        )
    # Time zones first: reading any TZID'd time builds its zone.
    _check_timezones(calendar)
    deadline = _Deadline(MAX_PARSE_SECONDS)
    _check_rules(calendar, end_utc + _QUERY_SLACK, zone, deadline)

    start_ms = _ms(start_utc)
    end_ms = _ms(end_utc)
    query_start = start_utc - _QUERY_SLACK
    query_end = end_utc + _QUERY_SLACK
    query = recurring_ical_events.of(calendar, components=["VEVENT"])
    seen = 0
    found: list[BusyInterval] = []
    # Series by series rather than ``query.between``: that builds every
    # occurrence as a component copy before returning, so a cap applied to its
    # result comes too late to bound memory.
    for series in query.series:
        deadline.check()
        for occurrence in series.between(query_start, query_end):
            seen += 1
            if seen > max_occurrences:
                raise CalendarError(
                    "calendar_too_big",
                    f"The calendar has more than {max_occurrences} events in the time "
                    "looked at; collab cannot follow a calendar this busy.",
                )
            interval = _busy_interval(occurrence.as_component(False), owners, zone)
            if interval is not None and interval.start < end_ms and interval.end > start_ms:
                found.append(interval)
    found.sort(key=lambda iv: (iv.start, iv.end, iv.summary))
    return found


def _busy_interval(
    event: icalendar.cal.Component, owners: set[str], zone: tzinfo
) -> BusyInterval | None:
    """The interval one occurrence blocks, or ``None`` if it leaves the owner free."""
    if _upper(event.get("STATUS")) == "CANCELLED":
        return None
    transp = _upper(event.get("TRANSP"))
    busystatus = _upper(event.get("X-MICROSOFT-CDO-BUSYSTATUS"))
    if transp == "TRANSPARENT" or busystatus in _FREE_BUSYSTATUS:
        return None
    if owners and _declined(event.get("ATTENDEE"), owners):
        return None

    start = event.get("DTSTART")
    if start is None:
        return None
    start_value = start.dt
    all_day = not isinstance(start_value, datetime)
    if all_day and not (transp == "OPAQUE" or busystatus in _ALL_DAY_BUSYSTATUS):
        return None
    end_prop = event.get("DTEND")
    if end_prop is not None:
        end_value = end_prop.dt
    elif event.get("DURATION") is not None:
        end_value = start_value + event.get("DURATION").dt
    elif all_day:
        end_value = start_value + timedelta(days=1)
    else:
        return None
    start_ms = _ms(_aware(start_value, zone))
    end_ms = _ms(_aware(end_value, zone))
    if end_ms <= start_ms:
        return None
    return BusyInterval(start_ms, end_ms, _summary(event))


def _declined(attendees: Any, owners: set[str]) -> bool:
    """Whether one of the owner's addresses declined this event."""
    if attendees is None:
        return False
    if not isinstance(attendees, list):
        attendees = [attendees]
    for attendee in attendees:
        params = getattr(attendee, "params", {})
        if _address(str(attendee)) in owners and _upper(params.get("PARTSTAT")) == "DECLINED":
            return True
    return False


def _summary(event: icalendar.cal.Component) -> str:
    if _upper(event.get("CLASS")) in _PRIVATE_CLASSES:
        return ""
    text = " ".join(str(event.get("SUMMARY", "")).split())
    return text[:_SUMMARY_MAX]


def _check_timezones(calendar: icalendar.Calendar) -> None:
    """Refuse VTIMEZONE rules that would take unbounded time or memory to follow.

    Real zone definitions change offset once or twice a year with
    ``FREQ=YEARLY`` rules; a ``FREQ=MINUTELY`` "zone" would make dateutil walk
    every minute from the zone's start (1601, in Outlook's files) to each
    moment looked up.
    """
    total = 0
    for timezone in calendar.walk("VTIMEZONE"):
        tzid = str(timezone.get("TZID", "?"))[:60]
        for part in timezone.subcomponents:
            rules = part.get("RRULE")
            if rules is None:
                continue
            for rule in rules if isinstance(rules, list) else [rules]:
                if (
                    not isinstance(rule, icalendar.vRecur)
                    or _upper(_first(rule.get("FREQ"))) != "YEARLY"
                    or _first(rule.get("INTERVAL")) not in (None, 1)
                    or any(rule.get(key) for key in ("BYYEARDAY", "BYWEEKNO", "BYSETPOS"))
                ):
                    raise CalendarError(
                        "calendar_invalid",
                        f"The time zone {tzid!r} has a rule that is not a yearly change of offset.",
                    )
                total += _yearly_instances(rule) * _years_covered(part, rule)
                if total > MAX_TIMEZONE_TRANSITIONS:
                    raise CalendarError(
                        "calendar_too_big",
                        "The calendar's time zone definitions change offset too often.",
                    )


def _yearly_instances(rule: icalendar.vRecur) -> int:
    """An upper bound of the instants a yearly rule makes in one year."""
    by_day = rule.get("BYDAY", [])
    # A weekday without an ordinal (SU, not -1SU) is every such day: 5 a month.
    weekdays = sum(1 if str(day)[:-2] else 5 for day in by_day)
    month_days = len(rule.get("BYMONTHDAY", []))
    days = min(weekdays or 31, month_days or 31) if (weekdays or month_days) else 1
    months = len(rule.get("BYMONTH", [])) or (12 if days > 1 or weekdays else 1)
    count = months * days
    for key in ("BYHOUR", "BYMINUTE", "BYSECOND"):
        count *= len(rule.get(key, [])) or 1
    return count


def _years_covered(part: icalendar.cal.Component, rule: icalendar.vRecur) -> int:
    """Years from a zone rule's DTSTART to its UNTIL, or to 9999 without one."""
    start = part.get("DTSTART")
    first = start.dt.year if start is not None else 1
    until = _first(rule.get("UNTIL"))
    last = until.year if isinstance(until, date) else 9999
    count = _first(rule.get("COUNT"))
    years = max(1, last - first + 1)
    return min(years, count) if isinstance(count, int) and count > 0 else years


class _Deadline:
    """A CPU-time budget for one parse, in the thread doing the parsing."""

    def __init__(self, seconds: float) -> None:
        self._end = thread_time() + seconds

    def check(self) -> None:
        if thread_time() > self._end:
            raise CalendarError(
                "calendar_too_big",
                "The calendar has too many repeating events to be followed.",
            )


def _check_rules(
    calendar: icalendar.Calendar, horizon: datetime, zone: tzinfo, deadline: _Deadline
) -> None:
    """Refuse repeat rules that would make expansion take unbounded time.

    The recurrence engine (dateutil) walks period by period from DTSTART until
    it has an instance past the window, or, when the rule's parts can never
    match (``BYMONTH=2;BYMONTHDAY=30``), until the year 9999. Counting
    occurrences cannot stop either walk, since neither yields anything to
    count. So each rule is checked first: the candidate instants from DTSTART
    to ``horizon`` must stay under ``MAX_RULE_WORK``, and the rule must match
    at least once in a 400-year Gregorian cycle.
    """
    for event in calendar.walk("VEVENT"):
        rules = event.get("RRULE")
        if rules is None:
            continue
        start_prop = event.get("DTSTART")
        if start_prop is None:
            raise CalendarError(
                "calendar_invalid", f"The repeating event {_name(event)} has no start time."
            )
        for rule in rules if isinstance(rules, list) else [rules]:
            deadline.check()
            _check_rule(event, rule, start_prop.dt, horizon, zone)


def _check_rule(
    event: icalendar.cal.Component,
    rule: Any,
    dtstart: date,
    horizon: datetime,
    zone: tzinfo,
) -> None:
    if not isinstance(rule, icalendar.vRecur):
        raise CalendarError(
            "calendar_invalid", f"The repeat rule of the event {_name(event)} cannot be read."
        )
    freq = _upper(_first(rule.get("FREQ")))
    if freq in ("MINUTELY", "SECONDLY"):
        # No meeting repeats every minute, and the engine is slowest on these:
        # one that can rarely match walks each second of the gap, for minutes.
        raise CalendarError(
            "calendar_too_big",
            f"The event {_name(event)} repeats every {freq[:-2].lower()}; events that "
            "repeat more often than hourly are not supported.",
        )
    if freq not in _FREQ_SECONDS:
        raise CalendarError(
            "calendar_invalid", f"The repeat rule of the event {_name(event)} has no valid FREQ."
        )
    interval = _first(rule.get("INTERVAL"))
    interval = 1 if interval is None else interval
    # INTERVAL=0 would make the engine loop forever on the same period.
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
        raise CalendarError(
            "calendar_invalid", f"The repeat rule of the event {_name(event)} has a bad INTERVAL."
        )

    # An upper bound of the candidates walked: periods from DTSTART to the
    # horizon, times the days the engine scans in each period, times the
    # instants BYHOUR/BYMINUTE/BYSECOND make of each day.
    until = _first(rule.get("UNTIL"))
    last = min(horizon, _aware(until, zone)) if isinstance(until, date) else horizon
    span = max(0, int((last - _aware(dtstart, zone)).total_seconds()))
    work = (span // (_FREQ_SECONDS[freq] * interval) + 1) * _FREQ_DAYS.get(freq, 1)
    rank = _FREQ_ORDER.index(freq)
    for part, part_rank in (("BYHOUR", 4), ("BYMINUTE", 5), ("BYSECOND", 6)):
        if rank < part_rank:
            work *= max(1, len(rule.get(part, [])))
    if work > MAX_RULE_WORK:
        raise CalendarError(
            "calendar_too_big",
            f"The event {_name(event)} repeats too often (FREQ={freq}) to be followed.",
        )

    # The Gregorian calendar repeats every 400 years, weekdays included, so
    # the same rule started 400*k years later matches exactly when this one
    # does. Started near the year 9600, an impossible rule gives up after at
    # most 800 years of periods instead of 8000.
    probe = icalendar.vRecur({k: v for k, v in rule.items() if k not in ("UNTIL", "COUNT")})
    first = dtstart if isinstance(dtstart, datetime) else datetime.combine(dtstart, time(0))
    first = first.replace(tzinfo=None)
    first = first.replace(year=first.year + 400 * ((9599 - first.year) // 400))
    try:
        matches = rrulestr(probe.to_ical().decode(), dtstart=first)
        never = next(iter(matches), None) is None
    except (ValueError, TypeError, OverflowError) as exc:
        raise CalendarError(
            "calendar_invalid",
            f"The repeat rule of the event {_name(event)} cannot be read: {_reason(exc)}",
        ) from exc
    if never:
        raise CalendarError(
            "calendar_invalid",
            f"The repeat rule of the event {_name(event)} can never happen; "
            "correct or delete the event.",
        )


# ---------------------------------------------------------------------------
# Questions presence asks


def busy_at(intervals: Sequence[BusyInterval], now_ms: int) -> BusyInterval | None:
    """The busy block ``now_ms`` falls in, or ``None`` when free.

    Back-to-back and overlapping meetings form one block, so "busy until" is
    when the person is really free again. The answer's ``start`` and ``end``
    are the block's; its ``summary`` is that of the meeting under way (of the
    ones under way, the one that ends last).
    """
    current = [iv for iv in intervals if iv.start <= now_ms < iv.end]
    if not current:
        return None
    meeting = max(current, key=lambda iv: (iv.end, iv.start))
    for block_start, block_end in _blocks(intervals):
        if block_start <= now_ms < block_end:
            return BusyInterval(block_start, block_end, meeting.summary)
    return None  # unreachable: every current interval lies in a block


def next_change(intervals: Sequence[BusyInterval], now_ms: int) -> int | None:
    """When ``busy_at`` next changes between busy and free, or ``None`` if never.

    Inside a block that is the block's end; outside, the next block's start.
    Only the intervals given are known, so the caller should also re-parse
    before the window they came from runs out.
    """
    for block_start, block_end in _blocks(intervals):
        if block_end <= now_ms:
            continue
        return block_end if block_start <= now_ms else block_start
    return None


def _blocks(intervals: Iterable[BusyInterval]) -> list[tuple[int, int]]:
    """Intervals merged where they overlap or touch, sorted."""
    blocks: list[tuple[int, int]] = []
    for iv in sorted((iv for iv in intervals if iv.end > iv.start), key=lambda iv: iv.start):
        if blocks and iv.start <= blocks[-1][1]:
            blocks[-1] = (blocks[-1][0], max(blocks[-1][1], iv.end))
        else:
            blocks.append((iv.start, iv.end))
    return blocks


# ---------------------------------------------------------------------------
# Fetching


class CalendarFetcher:
    """Fetches calendars from http(s) addresses for the periodic poll.

    One instance serves every user; it keeps no state between fetches. The
    caller keeps ``etag`` and ``last_modified`` from the last result and passes
    them back, so an unchanged calendar costs a 304 and no parsing. The
    ``ClientSession`` belongs to the app (connection pool, TLS settings,
    proxy); the fetcher never closes it.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_redirects: int = MAX_REDIRECTS,
    ) -> None:
        self._session = session
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        """Fetch ``url``; raises ``CalendarError`` for everything that goes wrong.

        The body is only checked to start like an iCalendar file (a sign-in
        page instead of the calendar is the usual mistake); ``parse_busy``
        does the real reading.
        """
        current = _http_url(url)
        headers = {"Accept": _ACCEPT, "User-Agent": _USER_AGENT}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            async with asyncio.timeout(self._timeout):
                for _ in range(self._max_redirects + 1):
                    async with self._session.get(
                        current,
                        headers=headers,
                        allow_redirects=False,
                        raise_for_status=False,
                        timeout=aiohttp.ClientTimeout(total=self._timeout),
                    ) as response:
                        if response.status in _REDIRECT_STATUSES:
                            current = _redirect_target(current, response)
                            continue
                        return await self._read(current, response, etag, last_modified)
                raise CalendarError(
                    "calendar_http_error",
                    f"The calendar address at {_where(current)} redirected more than "
                    f"{self._max_redirects} times; it may be redirecting in a loop.",
                )
        except TimeoutError as exc:
            raise CalendarError(
                "calendar_unreachable",
                f"The calendar server {_where(current)} did not answer within "
                f"{self._timeout:g} seconds.",
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise CalendarError(
                "calendar_bad_url", f"The calendar address is not valid: {_reason(exc)}"
            ) from exc
        except aiohttp.ClientSSLError as exc:
            raise CalendarError(
                "calendar_unreachable",
                f"A secure connection to {_where(current)} failed (certificate or TLS "
                f"problem): {_reason(exc)}",
            ) from exc
        except aiohttp.ClientConnectorDNSError as exc:
            raise CalendarError(
                "calendar_unreachable",
                f"The calendar server name {current.host} could not be found.",
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise CalendarError(
                "calendar_unreachable",
                f"Could not connect to the calendar server {_where(current)}: "
                f"{_connect_reason(exc.os_error)}.",
            ) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise CalendarError(
                "calendar_unreachable",
                f"The calendar server {_where(current)} closed the connection without "
                "a complete answer.",
            ) from exc
        except aiohttp.ClientResponseError as exc:
            raise CalendarError(
                "calendar_http_error",
                f"The calendar server {_where(current)} sent an invalid answer: "
                f"{_reason(exc.message or exc)}",
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise CalendarError(
                "calendar_unreachable",
                f"Fetching the calendar from {_where(current)} failed: {_reason(exc)}",
            ) from exc
        except (UnicodeError, ValueError) as exc:
            # e.g. a host name label longer than 63 characters fails in the name lookup.
            raise CalendarError(
                "calendar_bad_url", f"The calendar address is not valid: {_reason(exc)}"
            ) from exc

    async def _read(
        self,
        url: URL,
        response: aiohttp.ClientResponse,
        etag: str | None,
        last_modified: str | None,
    ) -> FetchResult:
        if response.status == 304 and (etag or last_modified):
            return FetchResult(
                None,
                response.headers.get("ETag", etag),
                response.headers.get("Last-Modified", last_modified),
                not_modified=True,
            )
        if not 200 <= response.status < 300:
            hint = ""
            if response.status in (401, 403):
                hint = " The calendar needs a sign-in; use a link that works without one."
            elif response.status == 404:
                hint = " Check the address."
            answer = f"{response.status} {response.reason or ''}".strip()
            raise CalendarError(
                "calendar_http_error",
                f"The calendar server {_where(url)} answered {answer}.{hint}",
            )
        too_large = CalendarError(
            "calendar_too_large",
            f"The calendar at {_where(url)} is larger than the limit of {_size(self._max_bytes)}.",
        )
        if response.content_length is not None and response.content_length > self._max_bytes:
            raise too_large
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > self._max_bytes:
                # Leaving the response unread closes the connection: the rest
                # is never downloaded.
                raise too_large
        if not _looks_like_icalendar(body):
            kind = response.content_type or "no content type"
            raise CalendarError(
                "calendar_invalid",
                f"The address at {_where(url)} did not return an iCalendar file (it "
                f"sent {kind}). Use the calendar's subscription or export (.ics) link.",
            )
        return FetchResult(
            bytes(body), response.headers.get("ETag"), response.headers.get("Last-Modified")
        )


def _http_url(url: str) -> URL:
    """Parse a user's calendar address; only absolute http(s) addresses pass."""
    try:
        parsed = URL(url.strip())
    except (TypeError, ValueError) as exc:
        raise CalendarError(
            "calendar_bad_url", f"The calendar address is not valid: {_reason(exc)}"
        ) from exc
    scheme = parsed.scheme.lower()
    if scheme in ("webcal", "webcals"):
        raise CalendarError(
            "calendar_bad_url",
            "webcal:// addresses are not supported; use the same address with https:// "
            "(or http://) instead.",
        )
    if not scheme:
        raise CalendarError(
            "calendar_bad_url", "The calendar address must start with https:// or http://."
        )
    if scheme not in ("http", "https"):
        raise CalendarError(
            "calendar_bad_url",
            f"Only https:// and http:// calendar addresses are supported, not {scheme}://.",
        )
    if not parsed.host:
        raise CalendarError("calendar_bad_url", "The calendar address has no host name.")
    return parsed


def _redirect_target(current: URL, response: aiohttp.ClientResponse) -> URL:
    location = response.headers.get("Location")
    if not location:
        raise CalendarError(
            "calendar_http_error",
            f"The calendar server {_where(current)} redirected without saying where to.",
        )
    try:
        target = current.join(URL(location))
    except (TypeError, ValueError) as exc:
        raise CalendarError(
            "calendar_bad_url",
            f"The calendar server {_where(current)} redirected to an invalid address.",
        ) from exc
    if target.scheme not in ("http", "https") or not target.host:
        raise CalendarError(
            "calendar_bad_url",
            f"The calendar server {_where(current)} redirected to a "
            f"{target.scheme or 'relative'}: address; only http and https are followed.",
        )
    return target


def _connect_reason(error: OSError) -> str:
    """Why a connection failed, in words a user can act on."""
    if error.errno == errno.ECONNREFUSED:
        return "the connection was refused (is the server running, and is the port right?)"
    if error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "there is no network route to it from the collab server"
    if error.errno == errno.ETIMEDOUT:
        return "the connection timed out"
    return _reason(error.strerror or error)


def _looks_like_icalendar(body: bytes | bytearray) -> bool:
    head = bytes(body[:256]).removeprefix(_BOM).lstrip()
    return head[:15].upper() == b"BEGIN:VCALENDAR"


# ---------------------------------------------------------------------------
# Small helpers


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise CalendarError("calendar_bad_timezone", f"{name!r} is not a known time zone.") from exc


def _aware(value: date, zone: tzinfo) -> datetime:
    """A DTSTART/DTEND/UNTIL value as an aware datetime; dates start at midnight."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0), tzinfo=zone)
    if value.tzinfo is None:
        return value.replace(tzinfo=zone)
    return value


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


def _address(value: str) -> str:
    """An e-mail address as compared: lower case, without ``mailto:``."""
    text = value.strip()
    if text[:7].lower() == "mailto:":
        text = text[7:]
    return text.strip().lower()


def _upper(value: Any) -> str:
    return str(value).strip().upper() if value is not None else ""


def _first(values: Any) -> Any:
    if isinstance(values, list):
        return values[0] if values else None
    return values


def _name(event: icalendar.cal.Component) -> str:
    """An event as named in an error message: its title, quoted, if it has one."""
    summary = " ".join(str(event.get("SUMMARY", "")).split())[:60]
    return f"“{summary}”" if summary else "(untitled)"


def _where(url: URL) -> str:
    """Host and, if not the default, port: never the path, query or password."""
    host = url.host or "?"
    if ":" in host:
        host = f"[{host}]"
    return host if url.is_default_port() else f"{host}:{url.port}"


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    return f"{max(1, round(n / 1024))} KB"


def _reason(exc: BaseException | str) -> str:
    """A short, single-line reason from an exception, for a user-facing message."""
    text = re.sub(r"\s+", " ", str(exc)).strip()
    if not text:
        text = type(exc).__name__ if isinstance(exc, BaseException) else "no details"
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 1] + "…"
