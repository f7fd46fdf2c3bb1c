"""The async engine for SQLite (one node) and PostgreSQL (a cluster).

SQLite gets WAL (readers do not block the writer), a busy timeout (a writer
waits instead of failing at once) and foreign keys switched on, on every
connection, because SQLite forgets pragmas per connection. We issue BEGIN
ourselves (the driver's own transaction handling breaks SAVEPOINTs), and a
write transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock
up front, so two writers queue on the busy timeout instead of one failing
with "database is locked" when both try to upgrade a read lock.

On SQLite a node's write transactions also queue on one ``asyncio.Lock``
before they BEGIN: SQLite has a single writer anyway, and without the queue
concurrent writers wait in SQLite's busy handler, which sleeps and polls in
the driver's threads, serves them in no order and, past the busy timeout,
fails a send with "database is locked" (see ``bench/sqlite_writes.py``). The
busy timeout still covers writers in other processes (``collab`` commands).
Transactions must not nest (neither may on SQLite without the queue: the
inner one would wait for the outer one's lock).

PostgreSQL connections are checked before use only when they have sat idle
in the pool for ``PING_AFTER_IDLE_S``: a connection that served a request a
moment ago is alive, and asyncpg's ping costs three round trips (BEGIN, an
empty query, ROLLBACK), which on the chat send path (two checkouts per
message) was almost half of the database work. A connection that dies while
busy (PostgreSQL restarted under traffic) fails that one request with
``unavailable`` and invalidates the pool, as it would have with a ping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 5000
# How long a SQLite writer may wait in the node's queue before its request fails.
WRITE_QUEUE_TIMEOUT_S = 10.0
# A pooled PostgreSQL connection idle for longer than this is pinged before use.
PING_AFTER_IDLE_S = 1.0
_IDLE_SINCE = "collab_idle_since"


class Store:
    """Owns the engine; hands out connections and transactions."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Whether writers queue on _write_queue (SQLite; a benchmark may switch it off).
        self.serialize_writes = engine.dialect.name == "sqlite"
        self._write_queue = asyncio.Lock()
        # PostgreSQL reads run without BEGIN/ROLLBACK (two round trips each): at READ
        # COMMITTED every statement takes its own snapshot even inside a transaction,
        # so a read-only block sees exactly what it saw before. SQLite keeps its BEGIN:
        # there a read transaction does hold one snapshot across statements.
        self._reader = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else engine
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction that commits on success, rolls back on error."""
        async with contextlib.AsyncExitStack() as stack:
            if self.serialize_writes:
                # A wait this long means an overload (or a nested transaction): fail
                # with TimeoutError, which callers answer as ``unavailable``.
                async with asyncio.timeout(WRITE_QUEUE_TIMEOUT_S):
                    await self._write_queue.acquire()
                stack.callback(self._write_queue.release)
            conn = await stack.enter_async_context(self.engine.connect())
            await conn.execution_options(collab_write=True)
            await stack.enter_async_context(conn.begin())
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reading only (a write in it would not be rolled back)."""
        async with self._reader.connect() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


def upsert_insert(conn: AsyncConnection) -> Any:
    """The dialect's own ``insert`` (it has ``on_conflict_do_update``) for this connection."""
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _on_sqlite_begin(conn: Any) -> None:
    write = conn.get_execution_options().get("collab_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
        return engine
    engine = create_async_engine(url, pool_size=10, max_overflow=10)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """``pool_pre_ping``, but only for connections idle for ``PING_AFTER_IDLE_S`` or more
    (a fresh connection is never pinged). A failed ping invalidates the whole pool, as
    ``pool_pre_ping`` does, and the checkout goes on with a new connection."""
    dialect = engine.dialect

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as err:
            if dialect.is_disconnect(err, dbapi_connection, None):
                raise exc.InvalidatePoolError() from err
            raise

    event.listen(engine.sync_engine, "checkin", checked_in)
    event.listen(engine.sync_engine, "checkout", checked_out)


def open_store(url: str) -> Store:
    return Store(create_engine(url))
