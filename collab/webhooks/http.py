"""REST routes for webhooks: managing them under a room, and the public URL they post to.

``POST /hooks/{secret}`` lives outside ``/api/`` on purpose: the secret in
the path is the whole credential, so the sign-in and CSRF middleware (which
runs for ``/api/`` and ``/ws``) has nothing to check; it is marked public
as well, so it stays open if that middleware's reach ever changes.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from collab.accounts.auth import identity_of
from collab.api.body import json_response, path_int, read_json
from collab.api.public import public
from collab.appkeys import WEBHOOKS
from collab.webhooks.service import MAX_BOT_NAME


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True):
    bot_name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_BOT_NAME)]


class WebhookPost(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]
    # 48, not 64: the service prefixes ``wh<id>:`` to keep each hook's ids apart.
    client_msg_id: Annotated[str, msgspec.Meta(min_length=1, max_length=48)] | None = None


def _room_id(request: web.Request) -> int:
    return path_int(request, "id", "room id")


async def create_webhook(request: web.Request) -> web.Response:
    body = await read_json(request, WebhookCreate)
    webhook, url = await request.app[WEBHOOKS].create(
        identity_of(request), _room_id(request), body.bot_name
    )
    return json_response({"webhook": webhook, "url": url}, status=201)


async def list_webhooks(request: web.Request) -> web.Response:
    hooks = await request.app[WEBHOOKS].of_room(identity_of(request), _room_id(request))
    return json_response({"webhooks": hooks})


async def delete_webhook(request: web.Request) -> web.Response:
    await request.app[WEBHOOKS].delete(
        identity_of(request), _room_id(request), path_int(request, "hook_id", "webhook id")
    )
    return web.Response(status=204)


@public
async def post_to_webhook(request: web.Request) -> web.Response:
    body = await read_json(request, WebhookPost)
    message, created = await request.app[WEBHOOKS].post(
        request.match_info["secret"], body.text, client_msg_id=body.client_msg_id
    )
    return json_response(
        {"message": {"id": message.id, "room": message.room, "seq": message.seq}},
        status=201 if created else 200,
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/rooms/{id}/webhooks", create_webhook)
    r.add_get("/api/v1/rooms/{id}/webhooks", list_webhooks)
    r.add_delete("/api/v1/rooms/{id}/webhooks/{hook_id}", delete_webhook)
    r.add_post("/hooks/{secret}", post_to_webhook)
