"""Marks handlers that answer without a signed-in user.

Every route needs authentication unless its handler says otherwise, so a
forgotten check fails closed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

H = TypeVar("H", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])

_PUBLIC_ATTR = "__collab_public__"


def public(handler: H) -> H:
    setattr(handler, _PUBLIC_ATTR, True)
    return handler


def is_public(request: web.Request) -> bool:
    route = request.match_info.route
    return bool(getattr(route.handler, _PUBLIC_ATTR, False))
