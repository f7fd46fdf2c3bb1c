"""A user's calendar makes them busy during meetings; a broken calendar breaks nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from collab.appkeys import CALENDARS
from tests.chat_helpers import Person
from tests.conftest import FakeClock
from tests.test_presence import wait_status

MIN_MS = 60_000


def stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%SZ")


def calendar(*events: str) -> bytes:
    body = "\r\n".join(events)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//collab tests//EN\r\n"
        f"{body}\r\nEND:VCALENDAR\r\n"
    ).encode()


def event(uid: str, start: int, end: int, summary: str, *extra: str) -> str:
    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{stamp(start)}",
        f"DTSTART:{stamp(start)}",
        f"DTEND:{stamp(end)}",
        f"SUMMARY:{summary}",
        *extra,
        "END:VEVENT",
    ]
    return "\r\n".join(lines)


class CalendarServer:
    """A company calendar server on loopback, with ETags."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.requests: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        if self.status != 200:
            return web.Response(status=self.status)
        etag = f'"{hash(self.body) & 0xFFFFFF:x}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=self.body, content_type="text/calendar", headers={"ETag": etag})


async def test_a_meeting_in_the_calendar_makes_the_user_busy(
    client: TestClient[Any, Any], clock: FakeClock, aiohttp_server: Any
) -> None:
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    await ana.room("channel", "team", ["bob"])
    watcher = await bob.socket()
    ana_ws = await ana.socket()
    await wait_status(watcher, "ana", "available")

    cal = CalendarServer()
    app = web.Application()
    app.router.add_get("/ana.ics", cal.handle)
    server = await aiohttp_server(app)
    now = clock.now
    cal.body = calendar(
        event("m1", now - 10 * MIN_MS, now + 20 * MIN_MS, "Planning"),
        event("t1", now - 60 * MIN_MS, now + 60 * MIN_MS, "Focus", "TRANSP:TRANSPARENT"),
    )
    url = str(server.make_url("/ana.ics"))
    settings = await ana.call("PUT", "/api/v1/me/calendar", 200, json={"url": url})
    assert (settings["calendar_kind"], settings["calendar_error"]) == ("url", None)
    busy = await wait_status(watcher, "ana", "busy")
    assert busy["reason"].startswith("in a meeting until ")
    assert busy["until"] == (now + 20 * MIN_MS) // 1000 * 1000  # calendars count in seconds

    # The next poll sends the ETag back and gets "not modified".
    clock.advance(6 * 60)
    assert await client.app[CALENDARS].poll_due() == 1
    assert cal.requests[-1].get("If-None-Match")

    # The meeting ends: available again.
    clock.advance(15 * 60)
    await ana_ws.command("presence.activity")
    await wait_status(watcher, "ana", "available")

    # The calendar server breaks: the error shows in settings, nothing else changes.
    cal.status = 500
    clock.advance(6 * 60)
    await client.app[CALENDARS].poll_due()
    settings = await ana.call("GET", "/api/v1/me/presence/settings", 200)
    assert "500" in settings["calendar_error"]
    assert (await ana.call("GET", "/api/v1/users/ana/presence", 200))["status"] == "available"
    await ana.call("DELETE", "/api/v1/me/calendar", 204)
    settings = await ana.call("GET", "/api/v1/me/presence/settings", 200)
    assert (settings["calendar_kind"], settings["calendar_error"]) == (None, None)
    await ana_ws.close()
    await watcher.close()


async def test_bad_calendar_addresses_get_clear_errors(
    client: TestClient[Any, Any], aiohttp_server: Any
) -> None:
    ana = await Person.create(client, "ana")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/calendar"})
        await response.prepare(request)
        for _ in range(3 * 1024):
            await response.write(b"X" * 1024)
        return response

    async def not_a_calendar(request: web.Request) -> web.Response:
        return web.Response(text="<html>Please sign in</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/huge.ics", huge)
    app.router.add_get("/login", not_a_calendar)
    server = await aiohttp_server(app)
    cases = [
        ("ftp://calendar.example/ana.ics", 400, "calendar_bad_url"),
        ("http://127.0.0.1:1/ana.ics", 502, "calendar_unreachable"),
        (str(server.make_url("/huge.ics")), 400, "calendar_too_large"),
        (str(server.make_url("/login")), 400, "calendar_invalid"),
    ]
    for url, status, code in cases:
        answer = await ana.call("PUT", "/api/v1/me/calendar", status, json={"url": url})
        assert answer["error"]["code"] == code, url
        assert answer["error"]["message"]
    settings = await ana.call("GET", "/api/v1/me/presence/settings", 200)
    assert settings["calendar_kind"] is None
    assert (await ana.call("GET", "/api/v1/users/ana/presence", 200))["status"] == "offline"


async def test_an_uploaded_calendar_file(client: TestClient[Any, Any], clock: FakeClock) -> None:
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    await ana.room("channel", "team", ["bob"])
    watcher = await bob.socket()
    ana_ws = await ana.socket()
    await wait_status(watcher, "ana", "available")
    today = datetime.fromtimestamp(clock.now / 1000, tz=UTC).strftime("%Y%m%d")
    ics = calendar(
        "BEGIN:VEVENT\r\nUID:holiday\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART;VALUE=DATE:{today}\r\nSUMMARY:Conference\r\nEND:VEVENT",
    )
    response = await ana.http.put(
        "/api/v1/me/calendar/file", data=ics, headers={**ana.csrf, "Content-Type": "text/calendar"}
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["calendar_kind"] == "file"
    await ana_ws.command("presence.activity")
    # An all-day event does not block time unless it is marked busy.
    assert (await ana.call("GET", "/api/v1/users/ana/presence", 200))["status"] == "available"
    broken = await ana.http.put(
        "/api/v1/me/calendar/file", data=b"not a calendar", headers=ana.csrf
    )
    assert broken.status == 400
    assert (await broken.json())["error"]["code"] == "calendar_invalid"
    await ana_ws.close()
    await watcher.close()
