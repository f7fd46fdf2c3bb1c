"""Sign-in throttling per address and per username, with growing back-off.

Each attempt is counted before the password is checked, so a burst of
parallel guesses is counted in full. Up to ``max_failures`` attempts per
username (four times that per address, since an office shares one address)
are free within the forgetting window; every attempt past that blocks the
key for twice as long as the last one, up to ``MAX_BLOCK_MS``. A successful
sign-in clears the username's count and takes back its one attempt from the
address.
"""

from __future__ import annotations

from collections.abc import Callable

from collab.api.errors import RateLimited
from collab.store import Store
from collab.store import throttle as sql

FORGET_AFTER_MS = 60 * 60 * 1000
FIRST_BLOCK_MS = 1000
MAX_BLOCK_MS = 15 * 60 * 1000
ADDRESS_FACTOR = 4


def user_key(username: str) -> str:
    return f"user:{username.lower()}"


def address_key(address: str) -> str:
    return f"addr:{address}"


class LoginThrottle:
    def __init__(self, store: Store, clock: Callable[[], int], max_failures: int) -> None:
        self._store = store
        self._clock = clock
        self._max_failures = max_failures

    def _limit(self, key: str) -> int:
        if key.startswith("addr:"):
            return self._max_failures * ADDRESS_FACTOR
        return self._max_failures

    async def begin_attempt(self, username: str, address: str) -> None:
        """Count an attempt, or raise RateLimited while a key is blocked."""
        now = self._clock()
        keys = [user_key(username), address_key(address)]
        async with self._store.transaction() as conn:
            blocked = [r for r in await sql.get_many(conn, keys) if r.blocked_until > now]
            if blocked:
                wait_ms = max(r.blocked_until for r in blocked) - now
                raise RateLimited(
                    "Too many sign-in attempts. Wait a moment, then try again.",
                    retry_after=wait_ms / 1000,
                )
            for key in keys:
                record = await sql.count_attempt(
                    conn, key, now=now, forget_before=now - FORGET_AFTER_MS
                )
                over = record.failures - self._limit(key)
                if over > 0:
                    delay = min(FIRST_BLOCK_MS * 2 ** min(over - 1, 20), MAX_BLOCK_MS)
                    await sql.block(conn, key, until=now + delay)

    async def succeeded(self, username: str, address: str) -> None:
        async with self._store.transaction() as conn:
            await sql.clear(conn, user_key(username))
            await sql.forgive_one(conn, address_key(address))

    async def sweep(self) -> int:
        """Drop counts nobody needs any more; run from a periodic task."""
        async with self._store.transaction() as conn:
            return await sql.delete_stale(conn, before=self._clock() - FORGET_AFTER_MS)
