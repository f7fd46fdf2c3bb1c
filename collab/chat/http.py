"""REST routes for rooms and messages: the scripts-and-bots face of chat."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from collab.accounts.auth import identity_of
from collab.api.body import StrictBody, json_response, path_int, read_json, read_query
from collab.api.fields import SAFE_INT_MAX, BigId, Id, Seq
from collab.appkeys import CHAT

Body = Annotated[str, msgspec.Meta(max_length=20_000)]
Name = Annotated[str, msgspec.Meta(max_length=200)]
Topic = Annotated[str, msgspec.Meta(max_length=1000)]
ClientMsgId = Annotated[str, msgspec.Meta(max_length=64)]


class RoomCreate(StrictBody):
    kind: Annotated[str, msgspec.Meta(max_length=16)]
    name: Name | None = None
    topic: Topic = ""
    members: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=500)
    ] = []


class RoomUpdate(StrictBody):
    name: Name | None = None
    topic: Topic | None = None
    archived: bool | None = None


class MemberAdd(StrictBody):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class MessageCreate(StrictBody):
    body: Body = ""
    client_msg_id: ClientMsgId | None = None
    reply_to: BigId | None = None
    files: Annotated[list[Id], msgspec.Meta(max_length=10)] = []


class MessageEdit(StrictBody):
    body: Body


class ReadMarker(StrictBody):
    seq: Seq


class NotifyLevel(StrictBody):
    level: Annotated[str, msgspec.Meta(max_length=16)]


class HistoryQuery(StrictBody):
    before: Seq | None = None
    after: Seq | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50


class ChannelQuery(StrictBody):
    q: Annotated[str, msgspec.Meta(max_length=80)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100


def _room_id(request: web.Request) -> int:
    return path_int(request, "id", "room id")


async def create_room(request: web.Request) -> web.Response:
    body = await read_json(request, RoomCreate)
    room, created = await request.app[CHAT].create_room(
        identity_of(request), kind=body.kind, name=body.name, topic=body.topic, members=body.members
    )
    return json_response({"room": room}, status=201 if created else 200)


async def list_rooms(request: web.Request) -> web.Response:
    return json_response({"rooms": await request.app[CHAT].my_rooms(identity_of(request))})


async def list_channels(request: web.Request) -> web.Response:
    query = read_query(request, ChannelQuery)
    channels = await request.app[CHAT].browse_channels(identity_of(request), query.q, query.limit)
    return json_response({"channels": channels})


async def get_room(request: web.Request) -> web.Response:
    room = await request.app[CHAT].get_room(identity_of(request), _room_id(request))
    return json_response({"room": room})


async def update_room(request: web.Request) -> web.Response:
    body = await read_json(request, RoomUpdate)
    room = await request.app[CHAT].update_room(
        identity_of(request),
        _room_id(request),
        name=body.name,
        topic=body.topic,
        archived=body.archived,
    )
    return json_response({"room": room})


async def join_room(request: web.Request) -> web.Response:
    room = await request.app[CHAT].join(identity_of(request), _room_id(request))
    return json_response({"room": room})


async def leave_room(request: web.Request) -> web.Response:
    await request.app[CHAT].leave(identity_of(request), _room_id(request))
    return web.Response(status=204)


async def list_members(request: web.Request) -> web.Response:
    members = await request.app[CHAT].members(identity_of(request), _room_id(request))
    return json_response({"members": members})


async def add_member(request: web.Request) -> web.Response:
    body = await read_json(request, MemberAdd)
    room = await request.app[CHAT].add_member(
        identity_of(request), _room_id(request), body.username
    )
    return json_response({"room": room})


async def remove_member(request: web.Request) -> web.Response:
    await request.app[CHAT].remove_member(
        identity_of(request), _room_id(request), request.match_info["username"]
    )
    return web.Response(status=204)


async def post_message(request: web.Request) -> web.Response:
    body = await read_json(request, MessageCreate)
    message, created = await request.app[CHAT].send(
        identity_of(request),
        _room_id(request),
        body.body,
        client_msg_id=body.client_msg_id,
        reply_to=body.reply_to,
        file_ids=body.files,
    )
    return json_response({"message": message}, status=201 if created else 200)


async def get_messages(request: web.Request) -> web.Response:
    query = read_query(request, HistoryQuery)
    messages, more = await request.app[CHAT].history(
        identity_of(request),
        _room_id(request),
        before=query.before,
        after=query.after,
        limit=query.limit,
    )
    return json_response({"messages": messages, "more": more})


def _message_id(request: web.Request) -> int:
    return path_int(request, "id", "message id", maximum=SAFE_INT_MAX)


async def edit_message(request: web.Request) -> web.Response:
    body = await read_json(request, MessageEdit)
    message = await request.app[CHAT].edit(identity_of(request), _message_id(request), body.body)
    return json_response({"message": message})


async def delete_message(request: web.Request) -> web.Response:
    message = await request.app[CHAT].delete(identity_of(request), _message_id(request))
    return json_response({"message": message})


async def add_reaction(request: web.Request) -> web.Response:
    message = await request.app[CHAT].react(
        identity_of(request), _message_id(request), request.match_info["emoji"], on=True
    )
    return json_response({"message": message})


async def remove_reaction(request: web.Request) -> web.Response:
    message = await request.app[CHAT].react(
        identity_of(request), _message_id(request), request.match_info["emoji"], on=False
    )
    return json_response({"message": message})


async def mark_read(request: web.Request) -> web.Response:
    body = await read_json(request, ReadMarker)
    seq = await request.app[CHAT].mark_read(identity_of(request), _room_id(request), body.seq)
    return json_response({"seq": seq})


async def set_notify(request: web.Request) -> web.Response:
    body = await read_json(request, NotifyLevel)
    level = await request.app[CHAT].set_notify(identity_of(request), _room_id(request), body.level)
    return json_response({"level": level})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/rooms", create_room)
    r.add_get("/api/v1/rooms", list_rooms)
    r.add_get("/api/v1/channels", list_channels)
    r.add_get("/api/v1/rooms/{id}", get_room)
    r.add_patch("/api/v1/rooms/{id}", update_room)
    r.add_post("/api/v1/rooms/{id}/join", join_room)
    r.add_post("/api/v1/rooms/{id}/leave", leave_room)
    r.add_get("/api/v1/rooms/{id}/members", list_members)
    r.add_post("/api/v1/rooms/{id}/members", add_member)
    r.add_delete("/api/v1/rooms/{id}/members/{username}", remove_member)
    r.add_post("/api/v1/rooms/{id}/messages", post_message)
    r.add_get("/api/v1/rooms/{id}/messages", get_messages)
    r.add_post("/api/v1/rooms/{id}/read", mark_read)
    r.add_put("/api/v1/rooms/{id}/notify", set_notify)
    r.add_patch("/api/v1/messages/{id}", edit_message)
    r.add_delete("/api/v1/messages/{id}", delete_message)
    r.add_put("/api/v1/messages/{id}/reactions/{emoji}", add_reaction)
    r.add_delete("/api/v1/messages/{id}/reactions/{emoji}", remove_reaction)
