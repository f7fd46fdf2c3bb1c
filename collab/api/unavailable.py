"""When the database (or Redis) cannot be reached, say so: a 503 ``unavailable`` the
client can retry, not a 500. The node itself keeps running and recovers by itself."""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError, OperationalError

from collab.api.errors import Unavailable
from signaling.bus import BusUnavailable
from signaling.protocol import CommandError

_OUTAGES = (OperationalError, InterfaceError, ConnectionError, TimeoutError, BusUnavailable)


def as_unavailable(exc: BaseException) -> CommandError | None:
    if isinstance(exc, _OUTAGES):
        return Unavailable(
            "The server cannot reach its database right now. Try again in a moment; "
            "nothing was saved.",
        )
    return None
