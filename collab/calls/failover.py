"""Calls whose media node died move to a live one.

Every node watches the leases of the ongoing calls held elsewhere. A lease
that stays gone for ``confirm_s`` (longer than a renewal takes after a Redis
restart, so a blip moves nothing) means the node is dead: one node wins the
takeover and moves the call to the least loaded live media node, which
adopts it; the participants hear ``call.moved`` and rejoin there. With no
live media node left, the call ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from sqlalchemy.exc import DBAPIError

from collab.calls.placement import PlacementUnavailable
from collab.calls.relay import NodeRelay
from collab.calls.service import CallService

log = logging.getLogger(__name__)


class CallFailover:
    def __init__(
        self,
        calls: CallService,
        *,
        check_s: float = 1.0,
        confirm_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._calls = calls
        self._check_s = check_s
        self._confirm_s = confirm_s
        self._clock = clock
        self._missing: dict[int, float] = {}  # call → when its lease was first seen gone
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._calls.placement.lease_s > 0:
            self._task = asyncio.create_task(self._watch_forever(), name="collab-call-failover")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch_forever(self) -> None:
        while True:
            await asyncio.sleep(self._check_s)
            try:
                await self.check()
            except (PlacementUnavailable, DBAPIError, OSError) as exc:
                self._missing.clear()  # nothing can be told while Redis or the database is away
                log.warning("call leases not checked: %s", exc)
            except Exception:
                log.exception("call leases not checked")

    async def check(self) -> None:
        placement = self._calls.placement
        records = await self._calls.ongoing_elsewhere()
        leases = await placement.leases([r.id for r in records])
        now = self._clock()
        for call_id in set(self._missing) - {r.id for r in records}:
            del self._missing[call_id]
        for record in records:
            if leases.get(record.id) is not None:
                self._missing.pop(record.id, None)
                continue
            first = self._missing.setdefault(record.id, now)
            if now - first < self._confirm_s or not await placement.take_over(record.id):
                continue
            del self._missing[record.id]
            target = await placement.pick(exclude=[record.node])
            log.warning("node %s lost call %s; moving it to %s", record.node, record.id, target)
            if target is None:
                await self._calls.end_orphaned(record, reason="node_lost")
            else:
                await self._calls.move(record, target)


class CallNodes(NamedTuple):
    """What ties a node's calls to the other nodes, started and stopped with the app."""

    relay: NodeRelay
    failover: CallFailover
