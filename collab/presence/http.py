"""REST and Server-Sent Events for presence: for the web client and for other programs
that show people's status (with a personal API token)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import msgspec
from aiohttp import web

from collab.accounts.auth import identity_of
from collab.api.body import StrictBody, json_response, read_json, read_query
from collab.api.errors import ApiError, BadRequest, NotFound
from collab.api.fields import Millis
from collab.appkeys import ACCOUNTS, BUS, CALENDARS, PRESENCE
from collab.presence.model import zone
from collab.presence.realtime import choice_from_status
from collab.presence.service import presence_topic
from collab.store.presence import PresenceSettings
from signaling.protocol import read_revocation, user_topic

SSE_KEEPALIVE_S = 15.0
SSE_QUEUE = 1000
MAX_LOOKUP = 200


class PresenceChoice(StrictBody):
    status: Annotated[str, msgspec.Meta(max_length=16)]
    until: Millis | None = None
    text: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    emoji: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    text_until: Millis | None = None


class SettingsUpdate(StrictBody):
    time_zone: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    silence_when_busy: bool | None = None
    quiet_start: Annotated[int, msgspec.Meta(ge=0, le=1439)] | None = None
    quiet_end: Annotated[int, msgspec.Meta(ge=0, le=1439)] | None = None
    quiet_hours: bool | None = None


class CalendarUrl(StrictBody):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class LookupQuery(StrictBody):
    users: Annotated[str, msgspec.Meta(min_length=1, max_length=8000)]


class SettingsView(msgspec.Struct, frozen=True):
    time_zone: str
    silence_when_busy: bool
    quiet_start: int | None
    quiet_end: int | None
    calendar_kind: str | None
    calendar_url: str | None
    calendar_error: str | None
    calendar_checked_at: int | None


def settings_view(record: PresenceSettings) -> SettingsView:
    return SettingsView(
        record.time_zone,
        record.silence_when_busy,
        record.quiet_start,
        record.quiet_end,
        record.calendar_kind,
        record.calendar_url,
        record.calendar_error,
        record.calendar_checked_at,
    )


async def user_presence(request: web.Request) -> web.Response:
    identity = identity_of(request)
    user = await request.app[ACCOUNTS].get_user(request.match_info["username"])
    await request.app[PRESENCE].check_visible(identity, [user.id])
    found = await request.app[PRESENCE].presence_of([user.id])
    return json_response(found[user.id])


async def many_presences(request: web.Request) -> web.Response:
    identity = identity_of(request)
    query = read_query(request, LookupQuery)
    names = [n.strip().lower() for n in query.users.split(",") if n.strip()]
    if not names or len(names) > MAX_LOOKUP:
        raise BadRequest(
            f"Give 1 to {MAX_LOOKUP} comma-separated usernames in users.",
            code="invalid_field",
            field="users",
        )
    accounts = request.app[ACCOUNTS]
    users = []
    for name in dict.fromkeys(names):
        try:
            users.append(await accounts.get_user(name))
        except NotFound:
            continue
    await request.app[PRESENCE].check_visible(identity, [u.id for u in users])
    found = await request.app[PRESENCE].presence_of([u.id for u in users])
    return json_response({"users": [found[u.id] for u in users if u.id in found]})


async def set_my_presence(request: web.Request) -> web.Response:
    identity = identity_of(request)
    body = await read_json(request, PresenceChoice)
    presence = request.app[PRESENCE]
    await presence.set_choice(
        identity.user.id,
        choice=choice_from_status(body.status),
        until=body.until,
        text=body.text,
        emoji=body.emoji,
        text_until=body.text_until,
    )
    return json_response((await presence.presence_of([identity.user.id]))[identity.user.id])


async def get_settings(request: web.Request) -> web.Response:
    identity = identity_of(request)
    settings = await request.app[PRESENCE].settings_of([identity.user.id])
    return json_response(settings_view(settings[identity.user.id]))


async def update_settings(request: web.Request) -> web.Response:
    identity = identity_of(request)
    body = await read_json(request, SettingsUpdate)
    fields: dict[str, Any] = {}
    if body.time_zone is not None:
        if zone(body.time_zone).key != body.time_zone:
            raise BadRequest(
                f"'{body.time_zone}' is not a time zone; use a name like Europe/Berlin.",
                code="invalid_field",
                field="time_zone",
            )
        fields["time_zone"] = body.time_zone
    if body.silence_when_busy is not None:
        fields["silence_when_busy"] = body.silence_when_busy
    if body.quiet_hours is False:
        fields["quiet_start"] = fields["quiet_end"] = None
    elif body.quiet_start is not None or body.quiet_end is not None:
        if body.quiet_start is None or body.quiet_end is None:
            raise BadRequest(
                "Give both quiet_start and quiet_end (minutes after midnight).",
                code="missing_field",
                field="quiet_end" if body.quiet_end is None else "quiet_start",
            )
        fields["quiet_start"], fields["quiet_end"] = body.quiet_start, body.quiet_end
    presence = request.app[PRESENCE]
    await presence.update_settings(identity.user.id, **fields)
    settings = await presence.settings_of([identity.user.id])
    return json_response(settings_view(settings[identity.user.id]))


async def presence_stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the current presence of everyone the caller may see, then
    every change, as ``event: presence``."""
    identity = identity_of(request)
    presence = request.app[PRESENCE]
    bus = request.app[BUS]
    peers = sorted(await presence.peers(identity.user.id))
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=SSE_QUEUE)

    def on_event(_topic: str, payload: bytes) -> None:
        try:
            queue.put_nowait(payload)
        except asyncio.QueueFull:
            # Too far behind to be right any more: end the stream; the client reconnects
            # and starts again from a fresh snapshot.
            queue._queue.clear()  # type: ignore[attr-defined]
            queue.put_nowait(None)

    def on_revocation(_topic: str, payload: bytes) -> None:
        revocation = read_revocation(payload)
        if revocation is not None and revocation.ends(identity.credential):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    subscriptions = [await bus.subscribe(presence_topic(uid), on_event) for uid in peers]
    subscriptions.append(await bus.subscribe(user_topic(identity.user.id), on_revocation))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await response.prepare(request)
        for event in (await presence.presence_of(peers)).values():
            await response.write(_sse(msgspec.json.encode(event)))
        while True:
            try:
                payload = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if payload is None:
                break  # the sign-in ended, or the reader fell too far behind
            await response.write(_sse(payload))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        for subscription in subscriptions:
            await subscription.close()
    return response


async def set_calendar_url(request: web.Request) -> web.Response:
    """Use a calendar at an http(s) address; it is read now, so mistakes show at once."""
    identity = identity_of(request)
    body = await read_json(request, CalendarUrl)
    settings = await request.app[CALENDARS].use_url(identity.user.id, body.url.strip())
    return json_response(settings_view(settings))


async def upload_calendar(request: web.Request) -> web.Response:
    """Use an uploaded .ics file (the request body)."""
    identity = identity_of(request)
    calendars = request.app[CALENDARS]
    limit = calendars.max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            f"The calendar file is larger than {limit // 1024} KB.",
            code="calendar_too_large",
            status=413,
        )
    ics = await request.content.read(limit + 1)
    if len(ics) > limit:
        raise ApiError(
            f"The calendar file is larger than {limit // 1024} KB.",
            code="calendar_too_large",
            status=413,
        )
    settings = await calendars.use_file(identity.user.id, ics)
    return json_response(settings_view(settings))


async def remove_calendar(request: web.Request) -> web.Response:
    await request.app[CALENDARS].remove(identity_of(request).user.id)
    return web.Response(status=204)


def _sse(payload: bytes) -> bytes:
    return b"event: presence\ndata: " + payload + b"\n\n"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/users/{username}/presence", user_presence)
    r.add_get("/api/v1/presence", many_presences)
    r.add_get("/api/v1/presence/stream", presence_stream)
    r.add_put("/api/v1/me/presence", set_my_presence)
    r.add_get("/api/v1/me/presence/settings", get_settings)
    r.add_patch("/api/v1/me/presence/settings", update_settings)
    r.add_put("/api/v1/me/calendar", set_calendar_url)
    r.add_put("/api/v1/me/calendar/file", upload_calendar)
    r.add_delete("/api/v1/me/calendar", remove_calendar)
