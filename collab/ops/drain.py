"""Graceful stop of a node (SIGTERM): drain, then shut down, all within ``--drain-time``.

Why: in a rolling restart the node going down must not drop its users on the
floor. While it drains it

- answers ``/healthz`` and ``/readyz`` with 503 (``status: draining``) so load
  balancers stop sending it work, and refuses new ``/ws`` upgrades with 503
  ``draining``; every such answer carries the ``X-Collab-Draining`` header so
  a proxy can retry the request on another node;
- hands its calls over (``CallService.hand_over``);
- tells each open socket ``{"type": "server.draining"}`` and closes it with
  4000 (reconnect at once and ``sync``), spread over a short window so that
  thousands of clients do not all reconnect in the same millisecond;
- keeps answering for a little while (``notice``) even with nothing left to
  move, so a balancer that has not yet seen the 503 of a health check gets a
  503 it can retry instead of a refused connection.

Then the normal shutdown runs (``cli.serve``). The budget: the drain phase
takes at most half of the drain time, open requests get at most a quarter,
and a watchdog ends the process when the drain time is over, whatever still
hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from signaling.connection import Connection
from signaling.protocol import RESUME_CLOSE_CODE, encode
from signaling.ws import SocketServer

log = logging.getLogger(__name__)

DRAINING_HEADER = "X-Collab-Draining"
DRAIN_CLOSE_REASON = b"node draining; reconnect and sync"
SPREAD_MAX_S = 3.0  # the longest window the closes are spread over
SPREAD_PER_SOCKET_S = 0.01  # ... at about 100 closes a second below that
NOTICE_MAX_S = 2.0  # the longest a node keeps answering 503 with nothing left to move
BATCH_INTERVAL_S = 0.05


class Drain:
    """One node's drain: its state (``active``) and the steps, run once by :meth:`run`."""

    def __init__(
        self,
        sockets: SocketServer,
        hand_over: Callable[[], Awaitable[None]],
        *,
        drain_time: float,
        node_id: str,
    ) -> None:
        self._sockets = sockets
        self._hand_over = hand_over
        self.drain_time = drain_time
        self.node_id = node_id
        self.active = False
        self._task: asyncio.Task[None] | None = None

    @property
    def budget(self) -> float:
        """Seconds the drain phase may take before the normal shutdown must start."""
        return self.drain_time / 2

    def spread_for(self, count: int) -> float:
        """The window ``count`` socket closes are spread over."""
        return min(SPREAD_MAX_S, self.drain_time / 5, count * SPREAD_PER_SOCKET_S)

    def begin(self) -> asyncio.Task[None]:
        """Start draining (once); the task ends when the drain phase is over."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="collab-drain")
        return self._task

    async def run(self) -> None:
        started = time.monotonic()
        self.active = True
        self._sockets.stop_accepting()
        log.warning(
            "draining: %d socket(s) to move, at most %.1f s", self._sockets.open_count, self.budget
        )
        try:
            async with asyncio.timeout(self.budget):
                await self._hand_over_calls()
                await self._move_sockets()
                notice = min(NOTICE_MAX_S, self.drain_time / 4)
                await asyncio.sleep(max(0.0, started + notice - time.monotonic()))
        except TimeoutError:
            log.warning(
                "drain phase over after %.1f s with %d socket(s) still open",
                self.budget,
                self._sockets.open_count,
            )
        else:
            log.warning("drained in %.1f s", time.monotonic() - started)

    async def _hand_over_calls(self) -> None:
        try:
            # Calls are handed over first: their clients are told while their sockets are open.
            async with asyncio.timeout(self.budget / 2):
                await self._hand_over()
        except TimeoutError:
            log.warning("handing calls over took too long; going on")
        except Exception:
            log.exception("handing calls over failed; going on")

    async def _move_sockets(self) -> None:
        """Tell each socket to move, in batches spread over a short window; then wait
        until they have closed."""
        conns = self._sockets.hub.connections
        frame = encode({"type": "server.draining", "node": self.node_id})
        window = self.spread_for(len(conns))
        batches = max(1, math.ceil(window / BATCH_INTERVAL_S))
        size = max(1, math.ceil(len(conns) / batches))
        loop = asyncio.get_running_loop()
        start = loop.time()
        closing: set[asyncio.Task[None]] = set()
        for index in range(0, len(conns), size):
            await asyncio.sleep(max(0.0, start + index / size * BATCH_INTERVAL_S - loop.time()))
            for conn in conns[index : index + size]:
                closing.add(loop.create_task(self._send_away(conn, frame)))
        if closing:
            await asyncio.wait(closing)
        while self._sockets.open_count:  # handlers finishing; sockets that raced the refusal
            for conn in self._sockets.hub.connections:
                if not conn.closing:
                    closing.add(loop.create_task(self._send_away(conn, frame)))
            await asyncio.sleep(BATCH_INTERVAL_S)

    async def _send_away(self, conn: Connection, frame: bytes) -> None:
        with contextlib.suppress(Exception):
            await self._sockets.send_away(conn, frame, RESUME_CLOSE_CODE, DRAIN_CLOSE_REASON)


DRAIN: web.AppKey[Drain] = web.AppKey("drain", Drain)


class Watchdog:
    """Ends the process when the drain time is over, even if the event loop is stuck."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is not None:
            return
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        log.error("drain time of %.1f s is over; exiting now", self.seconds)
        for stream in (sys.stderr, sys.stdout):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)
