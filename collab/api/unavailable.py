"""When the database (or Redis) cannot be reached, say so: a 503 ``unavailable`` the
client can retry, not a 500. The node itself keeps running and recovers by itself."""

from __future__ import annotations

from asyncpg.exceptions import (
    AdminShutdownError,
    CannotConnectNowError,
    CrashShutdownError,
    PostgresConnectionError,
)
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from collab.api.errors import Unavailable
from signaling.bus import BusUnavailable
from signaling.protocol import CommandError

# A new pool connection made while PostgreSQL stops or starts fails with asyncpg's own
# error ("the database system is shutting down"): SQLAlchemy does not wrap those. On a
# connection in use, the server's "terminating connection due to administrator command"
# arrives as a plain DBAPIError whose cause is asyncpg's AdminShutdownError.
_OUTAGES = (
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
    BusUnavailable,
    AdminShutdownError,
    CannotConnectNowError,
    CrashShutdownError,
    PostgresConnectionError,
)


def _is_outage(exc: BaseException | None) -> bool:
    for _ in range(5):  # the exception, SQLAlchemy's wrapper, the driver's error
        if exc is None:
            return False
        if isinstance(exc, _OUTAGES):
            return True
        if isinstance(exc, DBAPIError):
            if exc.connection_invalidated:
                return True
            exc = exc.orig
        else:
            exc = exc.__cause__
    return False


def as_unavailable(exc: BaseException) -> CommandError | None:
    if _is_outage(exc):
        return Unavailable(
            "The server cannot reach its database right now. Try again in a moment; "
            "nothing was saved.",
        )
    return None
