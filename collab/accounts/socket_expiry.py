"""Open sockets and the time limits of the credentials they were opened with.

A socket is authenticated once, at the upgrade. Without this, an API token
with an expiry went on working over a socket opened before it expired, for as
long as the socket lived; and the other way round, a session used only
through its socket (a tab left open for weeks, every message sent over the
socket) ran out under the user, who was signed out in the middle of work.

- A socket opened with an expiring API token closes with 4001 when the token
  expires.
- A socket opened with a session renews that session a little before it would
  expire (``RENEW_AHEAD_MS``): one write per socket per session lifetime, not
  one per frame. If the session is over by then (signed out while the event
  bus was away, its user deactivated), the socket closes with 4001.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from collab.accounts.models import Identity
from collab.accounts.service import HOUR_MS, AccountService
from signaling.connection import Connection
from signaling.protocol import SESSION_ENDED_CLOSE_CODE
from signaling.tasks import BackgroundTasks
from signaling.ws import SocketServer

log = logging.getLogger(__name__)

# How long before its expiry a socket renews its session; at most a quarter of the
# session's lifetime, for very short lifetimes.
RENEW_AHEAD_MS = HOUR_MS
# After a failed renewal (the database did not answer), try again this much later.
RETRY_AFTER_S = 30.0
_TIMER = "credential_timer"


class SocketExpiry:
    def __init__(self, accounts: AccountService, clock: Callable[[], int]) -> None:
        self._accounts = accounts
        self._clock = clock
        self._tasks = BackgroundTasks()

    def install(self, sockets: SocketServer) -> None:
        sockets.on_connect(self._on_connect)
        sockets.on_disconnect(self._on_disconnect)

    async def _on_connect(self, conn: Connection) -> None:
        identity = conn.context
        if not isinstance(identity, Identity):
            return
        if identity.token is not None and identity.token.expires_at is not None:
            self._at(conn, identity.token.expires_at, lambda: _end(conn))
        elif identity.session is not None:
            self._renew_before(conn, identity.session.id, identity.session.expires_at)

    async def _on_disconnect(self, conn: Connection) -> None:
        timer = conn.state.pop(_TIMER, None)
        if isinstance(timer, asyncio.TimerHandle):
            timer.cancel()

    def _at(self, conn: Connection, at_ms: int, callback: Callable[[], None]) -> None:
        delay = max(0.0, (at_ms - self._clock()) / 1000)
        conn.state[_TIMER] = asyncio.get_running_loop().call_later(delay, callback)

    def _renew_before(self, conn: Connection, session_id: int, expires_at: int) -> None:
        ahead = min(RENEW_AHEAD_MS, self._accounts.session_ttl_ms // 4)
        self._at(conn, expires_at - ahead, lambda: self._spawn(self._renew(conn, session_id)))

    async def _renew(self, conn: Connection, session_id: int) -> None:
        try:
            expires_at = await self._accounts.renew_session(session_id)
        except Exception as exc:
            log.warning("could not renew session %s of %s: %s", session_id, conn.username, exc)
            if not conn.closing:
                conn.state[_TIMER] = asyncio.get_running_loop().call_later(
                    RETRY_AFTER_S, lambda: self._spawn(self._renew(conn, session_id))
                )
            return
        if expires_at is None:
            _end(conn)
        elif not conn.closing:
            self._renew_before(conn, session_id, expires_at)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(work)


def _end(conn: Connection) -> None:
    conn.close_soon(SESSION_ENDED_CLOSE_CODE, b"session ended")
