"""Where a call's media lives, when several nodes could carry it.

Each node with a media server publishes a load figure (the participants
its media server carries) under a key that expires unless renewed, so a
dead node drops out of the choice by itself. A call's media node holds a
lease on the call (``collab:call:<id>:media`` → node) and renews it while
it holds the call; when the lease runs out, the node is gone and another
node may take the call over (see ``failover``). On one node there is
nothing to choose and nothing to lose: :class:`LocalPlacement`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

NODES_KEY = "collab:media:nodes"


def _load_key(node: str) -> str:
    return f"collab:media:load:{node}"


def _lease_key(call_id: int) -> str:
    return f"collab:call:{call_id}:media"


def _takeover_key(call_id: int) -> str:
    return f"collab:call:{call_id}:takeover"


class PlacementUnavailable(Exception):
    """Redis did not answer: no node can be chosen or checked just now."""


class Placement(Protocol):
    lease_s: float

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def withdraw(self) -> None:
        """This node takes no new calls any more (it is draining)."""
        ...

    async def report_load(self) -> None:
        """Publish the load figure now (it changed), not only at the next renewal."""
        ...

    async def pick(self, exclude: Iterable[str] = ()) -> str | None:
        """The least loaded live media node (None: there is none)."""
        ...

    async def alive(self, nodes: Iterable[str]) -> set[str]:
        """Those of ``nodes`` whose media load figure is fresh (they are running)."""
        ...

    async def claim(self, call_id: int, node: str | None = None) -> None:
        """Record ``node`` (this one by default) as the call's media node."""
        ...

    async def release(self, call_id: int) -> None: ...

    async def leases(self, call_ids: list[int]) -> dict[int, str | None]:
        """Each call's media node by its lease; None where the lease ran out."""
        ...

    async def take_over(self, call_id: int) -> bool:
        """True for exactly one node asking about one lost call (for a while)."""
        ...


class LocalPlacement:
    """One node: it carries every call; leases never run out."""

    lease_s = 0.0

    def __init__(self, node: str, has_media: bool) -> None:
        self._node = node
        self._has_media = has_media

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def withdraw(self) -> None:
        self._has_media = False

    async def report_load(self) -> None:
        return None

    async def pick(self, exclude: Iterable[str] = ()) -> str | None:
        return self._node if self._has_media and self._node not in set(exclude) else None

    async def alive(self, nodes: Iterable[str]) -> set[str]:
        return set(nodes)

    async def claim(self, call_id: int, node: str | None = None) -> None:
        return None

    async def release(self, call_id: int) -> None:
        return None

    async def leases(self, call_ids: list[int]) -> dict[int, str | None]:
        return dict.fromkeys(call_ids, self._node)

    async def take_over(self, call_id: int) -> bool:
        return False


class RedisPlacement:
    """Many nodes: load figures and leases in Redis, renewed every ``renew_s``.

    ``load`` says how much this node carries now; ``held`` which calls it
    holds (their leases are renewed); ``lost`` is told of a call whose lease
    another node holds now (it took the call over while this node could not
    renew, e.g. stalled): this node must let the call go.
    """

    def __init__(
        self,
        url: str,
        node: str,
        *,
        has_media: bool,
        load: Callable[[], float],
        held: Callable[[], list[int]],
        lost: Callable[[int], None],
        lease_s: float = 3.0,
        renew_s: float = 1.0,
    ) -> None:
        # One retry on a fresh connection: after a Redis restart the pooled one is dead.
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=2,
            socket_timeout=3,
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        self._node = node
        self._has_media = has_media
        self._load = load
        self._held = held
        self._lost = lost
        self.lease_s = lease_s
        self._renew_s = renew_s
        self._task: asyncio.Task[None] | None = None

    @property
    def _lease_ms(self) -> int:
        return int(self.lease_s * 1000)

    async def start(self) -> None:
        with contextlib.suppress(PlacementUnavailable):
            await self.renew()
        self._task = asyncio.create_task(self._renew_forever(), name="collab-media-placement")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self._redis.delete(_load_key(self._node))
        await self._redis.aclose()

    async def withdraw(self) -> None:
        self._has_media = False
        with contextlib.suppress(RedisError, OSError):
            await self._redis.delete(_load_key(self._node))

    async def report_load(self) -> None:
        if not self._has_media:
            return
        with contextlib.suppress(RedisError, OSError):
            await self._redis.set(_load_key(self._node), str(self._load()), px=self._lease_ms)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._renew_s)
            try:
                await self.renew()
            except PlacementUnavailable as exc:
                log.warning("media load and leases not renewed: %s", exc)
            except Exception:
                log.exception("media load and leases not renewed")

    async def renew(self) -> None:
        """Publish the load figure and renew the held calls' leases. A lease that
        vanished (Redis restarted) is set again; one held by another node is lost."""
        held = self._held()
        try:
            owners = await self._redis.mget([_lease_key(c) for c in held]) if held else []
            async with self._redis.pipeline(transaction=False) as pipe:
                if self._has_media:
                    pipe.set(_load_key(self._node), str(self._load()), px=self._lease_ms)
                    pipe.sadd(NODES_KEY, self._node)
                for call_id, owner in zip(held, owners, strict=True):
                    if owner is None or owner.decode() == self._node:
                        pipe.set(_lease_key(call_id), self._node, px=self._lease_ms)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise PlacementUnavailable(str(exc)) from exc
        for call_id, owner in zip(held, owners, strict=True):
            if owner is not None and owner.decode() != self._node:
                log.warning("call %s was taken over by %s", call_id, owner.decode())
                self._lost(call_id)

    async def pick(self, exclude: Iterable[str] = ()) -> str | None:
        skip = set(exclude)
        try:
            nodes = sorted(n.decode() for n in await self._redis.smembers(NODES_KEY))
            loads = await self._redis.mget([_load_key(n) for n in nodes]) if nodes else []
        except (RedisError, OSError) as exc:
            raise PlacementUnavailable(str(exc)) from exc
        live = [
            (float(load), node)
            for node, load in zip(nodes, loads, strict=True)
            if load is not None and node not in skip
        ]
        return min(live)[1] if live else None

    async def alive(self, nodes: Iterable[str]) -> set[str]:
        wanted = sorted(set(nodes))
        if not wanted:
            return set()
        try:
            loads = await self._redis.mget([_load_key(n) for n in wanted])
        except (RedisError, OSError) as exc:
            raise PlacementUnavailable(str(exc)) from exc
        return {n for n, load in zip(wanted, loads, strict=True) if load is not None}

    async def claim(self, call_id: int, node: str | None = None) -> None:
        try:
            await self._redis.set(_lease_key(call_id), node or self._node, px=self._lease_ms)
        except (RedisError, OSError) as exc:
            raise PlacementUnavailable(str(exc)) from exc

    async def release(self, call_id: int) -> None:
        with contextlib.suppress(RedisError, OSError):
            owner = await self._redis.get(_lease_key(call_id))
            if owner is not None and owner.decode() == self._node:
                await self._redis.delete(_lease_key(call_id))

    async def leases(self, call_ids: list[int]) -> dict[int, str | None]:
        if not call_ids:
            return {}
        try:
            owners = await self._redis.mget([_lease_key(c) for c in call_ids])
        except (RedisError, OSError) as exc:
            raise PlacementUnavailable(str(exc)) from exc
        return {
            c: o.decode() if o is not None else None for c, o in zip(call_ids, owners, strict=True)
        }

    async def take_over(self, call_id: int) -> bool:
        try:
            won = await self._redis.set(
                _takeover_key(call_id), self._node, nx=True, px=max(10_000, 3 * self._lease_ms)
            )
        except (RedisError, OSError) as exc:
            raise PlacementUnavailable(str(exc)) from exc
        return bool(won)
