"""The ``/ws`` route: hands an authenticated caller to the socket server."""

from __future__ import annotations

from aiohttp import web

from collab.accounts.auth import identity_of
from collab.accounts.models import Identity, user_detail
from collab.api.errors import BadRequest, Unavailable
from collab.appkeys import SOCKETS
from collab.ops.drain import DRAINING_HEADER
from signaling.connection import Connection


def socket_identity(conn: Connection) -> Identity:
    """Who a socket belongs to, as checked when it connected (kept as ``conn.context``)."""
    identity = conn.context
    assert isinstance(identity, Identity)
    return identity


async def websocket(request: web.Request) -> web.StreamResponse:
    identity = identity_of(request)
    sockets = request.app[SOCKETS]
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise BadRequest(
            "This address takes WebSocket connections only; connect with a WebSocket client.",
            code="websocket_required",
        )
    if not sockets.accepting:
        raise Unavailable(
            "This node is stopping and takes no new sockets; connect again to reach another node.",
            code="draining",
            headers={DRAINING_HEADER: "true"},
        )
    return await sockets.handle(
        request,
        user_id=identity.user.id,
        username=identity.user.username,
        credential=identity.credential,
        hello={"user": user_detail(identity.user)},
        context=identity,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ws", websocket)
