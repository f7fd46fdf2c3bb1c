"""Who is connected where, shared by every node: in memory on one node, in Redis on many.

Each live socket is an entry ``<node>|<n>`` → last activity (ms) under its
user. A node also keeps a heartbeat key with a short time-to-live; when a
node dies its heartbeat runs out, and any surviving node reaps its entries,
so its users go offline within the node time-to-live plus one sweep.

The registry also remembers the last presence published for each user, so
that of several nodes computing the same change only one announces it.
"""

from __future__ import annotations

import time
from typing import Protocol

import redis.asyncio as aioredis


class UserState:
    """What the registry knows of one user at one moment."""

    __slots__ = ("activity", "in_call", "last_seen")

    def __init__(self, activity: list[int], last_seen: int | None, in_call: bool) -> None:
        self.activity = activity
        self.last_seen = last_seen
        self.in_call = in_call


class Registry(Protocol):
    async def add(self, user_id: int, conn_key: str, now: int) -> None: ...
    async def touch(self, user_id: int, conn_key: str, now: int) -> None: ...
    async def remove(self, user_id: int, conn_key: str, now: int) -> None: ...
    async def states(self, user_ids: list[int]) -> dict[int, UserState]: ...
    async def set_call(self, user_id: int, call_id: str | None) -> None: ...
    async def call_of(self, user_id: int) -> str | None: ...
    async def swap_published(self, user_id: int, encoded: bytes) -> bool: ...
    async def heartbeat(self) -> None: ...
    async def reap(self) -> list[int]: ...
    async def close(self) -> None: ...


class LocalRegistry:
    """One node: everything in this process (a restart rightly makes everyone offline)."""

    def __init__(self) -> None:
        self._conns: dict[int, dict[str, int]] = {}
        self._seen: dict[int, int] = {}
        self._calls: dict[int, str] = {}
        self._published: dict[int, bytes] = {}

    async def add(self, user_id: int, conn_key: str, now: int) -> None:
        self._conns.setdefault(user_id, {})[conn_key] = now

    async def touch(self, user_id: int, conn_key: str, now: int) -> None:
        conns = self._conns.get(user_id)
        if conns is not None and conn_key in conns:
            conns[conn_key] = max(conns[conn_key], now)

    async def remove(self, user_id: int, conn_key: str, now: int) -> None:
        conns = self._conns.get(user_id)
        if conns is not None:
            conns.pop(conn_key, None)
            if not conns:
                del self._conns[user_id]
        self._seen[user_id] = now

    async def states(self, user_ids: list[int]) -> dict[int, UserState]:
        return {
            uid: UserState(
                list(self._conns.get(uid, {}).values()), self._seen.get(uid), uid in self._calls
            )
            for uid in user_ids
        }

    async def set_call(self, user_id: int, call_id: str | None) -> None:
        if call_id is None:
            self._calls.pop(user_id, None)
        else:
            self._calls[user_id] = call_id

    async def call_of(self, user_id: int) -> str | None:
        return self._calls.get(user_id)

    async def swap_published(self, user_id: int, encoded: bytes) -> bool:
        if self._published.get(user_id) == encoded:
            return False
        self._published[user_id] = encoded
        return True

    async def heartbeat(self) -> None:
        return None

    async def reap(self) -> list[int]:
        return []

    async def close(self) -> None:
        return None


class RedisRegistry:
    """Many nodes: hashes in Redis, one per user, and a heartbeat key per node."""

    def __init__(self, url: str, instance: str, node_ttl_s: int = 30) -> None:
        """``instance`` names this process, not just the node: a node that crashed and
        came back under the same name must not keep its old life's entries alive."""
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5
        )
        self._node = instance
        self._ttl = node_ttl_s

    @staticmethod
    def _conns(user_id: int) -> str:
        return f"presence:conns:{user_id}"

    async def add(self, user_id: int, conn_key: str, now: int) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(self._conns(user_id), conn_key, now)
            pipe.sadd(f"presence:node-users:{self._node}", user_id)
            pipe.sadd("presence:nodes", self._node)
            await pipe.execute()

    async def touch(self, user_id: int, conn_key: str, now: int) -> None:
        # Only if the entry still exists: a reaped connection must not come back.
        await self._redis.eval(
            "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then "
            "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end return 0",
            1,
            self._conns(user_id),
            conn_key,
            now,
        )

    async def remove(self, user_id: int, conn_key: str, now: int) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hdel(self._conns(user_id), conn_key)
            pipe.set(f"presence:seen:{user_id}", now)
            await pipe.execute()

    async def states(self, user_ids: list[int]) -> dict[int, UserState]:
        if not user_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for uid in user_ids:
                pipe.hvals(self._conns(uid))
                pipe.get(f"presence:seen:{uid}")
                pipe.exists(f"presence:call:{uid}")
            replies = await pipe.execute()
        states = {}
        for index, uid in enumerate(user_ids):
            values, seen, call = replies[3 * index : 3 * index + 3]
            states[uid] = UserState(
                [int(v) for v in values], int(seen) if seen else None, bool(call)
            )
        return states

    async def set_call(self, user_id: int, call_id: str | None) -> None:
        if call_id is None:
            await self._redis.delete(f"presence:call:{user_id}")
        else:
            await self._redis.set(f"presence:call:{user_id}", call_id)

    async def call_of(self, user_id: int) -> str | None:
        call = await self._redis.get(f"presence:call:{user_id}")
        return call.decode() if call is not None else None

    async def swap_published(self, user_id: int, encoded: bytes) -> bool:
        previous = await self._redis.getset(f"presence:published:{user_id}", encoded)
        return previous != encoded

    async def heartbeat(self) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(f"presence:node:{self._node}", int(time.time()), ex=self._ttl)
            pipe.sadd("presence:nodes", self._node)
            await pipe.execute()

    async def reap(self) -> list[int]:
        """Remove the connections of nodes whose heartbeat ran out; returns their users."""
        affected: list[int] = []
        for raw in await self._redis.smembers("presence:nodes"):
            node = raw.decode()
            if node == self._node or await self._redis.exists(f"presence:node:{node}"):
                continue
            prefix = f"{node}|"
            users = [int(u) for u in await self._redis.smembers(f"presence:node-users:{node}")]
            now = int(time.time() * 1000)
            for uid in users:
                keys = [
                    k.decode()
                    for k in await self._redis.hkeys(self._conns(uid))
                    if k.decode().startswith(prefix)
                ]
                if keys:
                    await self._redis.hdel(self._conns(uid), *keys)
                    await self._redis.set(f"presence:seen:{uid}", now)
                    affected.append(uid)
            await self._redis.delete(f"presence:node-users:{node}")
            await self._redis.srem("presence:nodes", node)
        return affected

    async def close(self) -> None:
        await self._redis.aclose()
