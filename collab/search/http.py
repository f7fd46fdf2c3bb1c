"""REST route for search: ``GET /api/v1/search``."""

from __future__ import annotations

from aiohttp import web

from collab.accounts.auth import identity_of
from collab.api.body import json_response, read_query
from collab.appkeys import SEARCH
from collab.search.service import SearchQuery


async def search(request: web.Request) -> web.Response:
    query = read_query(request, SearchQuery)
    page = await request.app[SEARCH].search(identity_of(request), query)
    return json_response(page)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/search", search)
