"""REST routes for calls: a room's call log (calls themselves happen on the socket)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from collab.accounts.auth import identity_of
from collab.api.body import StrictBody, json_response, path_int, read_query
from collab.api.fields import Id
from collab.appkeys import CALLS


class CallLogQuery(StrictBody):
    before: Id | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50


async def list_calls(request: web.Request) -> web.Response:
    """The room's calls, newest first; page back with ``before`` (a call id)."""
    query = read_query(request, CallLogQuery)
    calls = await request.app[CALLS].call_log(
        identity_of(request),
        path_int(request, "id", "room id"),
        before=query.before,
        limit=query.limit,
    )
    return json_response({"calls": calls})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/rooms/{id}/calls", list_calls)
