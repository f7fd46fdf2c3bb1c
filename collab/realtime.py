"""The ``/ws`` route: hands an authenticated caller to the socket server."""

from __future__ import annotations

from aiohttp import web

from collab.accounts.auth import identity_of
from collab.accounts.models import user_detail
from collab.appkeys import SOCKETS


async def websocket(request: web.Request) -> web.StreamResponse:
    identity = identity_of(request)
    return await request.app[SOCKETS].handle(
        request,
        user_id=identity.user.id,
        username=identity.user.username,
        credential=identity.credential,
        hello={"user": user_detail(identity.user)},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ws", websocket)
