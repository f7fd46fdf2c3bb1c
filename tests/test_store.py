"""The store on both backends: migrations, and the SQL each domain relies on.

Every test here takes ``database_url`` and so runs on SQLite and on a real
PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from collab.store import Store, migrate, open_store
from collab.store import invitations as invitation_sql
from collab.store import sessions as session_sql
from collab.store import throttle as throttle_sql
from collab.store import tokens as token_sql
from collab.store import users as user_sql
from collab.store.schema import metadata

NOW = 1_800_000_000_000


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = open_store(database_url)
    await migrate.upgrade(store)
    yield store
    await store.close()


async def _user(store: Store, name: str = "ana", role: str = "member") -> user_sql.UserRecord:
    async with store.transaction() as conn:
        return await user_sql.insert(
            conn,
            username=name,
            display_name=name.title(),
            email=None,
            role=role,
            password_hash="x",
            now=NOW,
        )


async def test_migrations_build_an_empty_database_to_head(database_url: str) -> None:
    store = open_store(database_url)
    try:
        assert await migrate.current_revision(store) is None
        await migrate.upgrade(store)
        assert await migrate.current_revision(store) == migrate.head_revision()
        await migrate.upgrade(store)  # a second run is a no-op
        async with store.read() as conn:
            tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        assert {"users", "sessions", "api_tokens", "invitations", "login_throttle"} <= tables
    finally:
        await store.close()


async def test_migrations_match_the_schema_module(store: Store) -> None:
    def made_by_hand(obj: object, name: str | None, kind: str, *_: object) -> bool:
        """Search structures live only in the migration (FTS5 tables, a GIN index)."""
        return not (name or "").startswith(("messages_fts", "ix_messages_search"))

    def diff(connection: sa.Connection) -> list[object]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": made_by_hand}
        )
        return compare_metadata(context, metadata)

    async with store.read() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_downgrade_and_upgrade_again(store: Store) -> None:

    def down(connection: sa.Connection) -> None:
        config = migrate.alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    async with store.transaction() as conn:
        await conn.run_sync(down)
    assert await migrate.current_revision(store) is None
    await migrate.upgrade(store)
    assert await migrate.current_revision(store) == migrate.head_revision()


async def test_concurrent_migrations_do_not_collide(database_url: str) -> None:
    stores = [open_store(database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate.upgrade(s) for s in stores))
        assert await migrate.current_revision(stores[0]) == migrate.head_revision()
    finally:
        for s in stores:
            await s.close()


async def test_usernames_are_unique(store: Store) -> None:
    await _user(store, "ana")
    with pytest.raises(IntegrityError):
        await _user(store, "ana")
    async with store.read() as conn:
        assert await user_sql.count(conn) == 1


async def test_role_is_constrained_by_the_database(store: Store) -> None:
    with pytest.raises(IntegrityError):
        await _user(store, "eve", role="superuser")


async def test_user_updates_and_listing(store: Store) -> None:
    ana = await _user(store, "ana", role="admin")
    await _user(store, "bob")
    await _user(store, "cy")
    async with store.transaction() as conn:
        bob = await user_sql.by_username(conn, "bob")
        assert bob is not None
        changed = await user_sql.update(conn, bob.id, now=NOW + 5, active=False)
        assert changed.active is False and changed.updated_at == NOW + 5
    async with store.read() as conn:
        active = await user_sql.list_page(conn, after=None, limit=10, include_inactive=False)
        assert [u.username for u in active] == ["ana", "cy"]
        page = await user_sql.list_page(conn, after="ana", limit=1, include_inactive=True)
        assert [u.username for u in page] == ["bob"]
        assert await user_sql.count_active_admins(conn) == 1
        assert (await user_sql.by_id(conn, ana.id)) == ana


async def test_sessions_expire_and_cascade_with_their_user(store: Store) -> None:
    ana = await _user(store)
    async with store.transaction() as conn:
        for i, expires in enumerate((NOW + 10, NOW + 1000)):
            await session_sql.insert(
                conn,
                token_hash=f"h{i}",
                user_id=ana.id,
                csrf_token="c",
                now=NOW,
                expires_at=expires,
                user_agent="x" * 1000,
                address="127.0.0.1",
            )
    async with store.transaction() as conn:
        assert await session_sql.delete_expired(conn, now=NOW + 10) == 1
        remaining = await session_sql.list_for_user(conn, ana.id)
        assert [s.token_hash for s in remaining] == ["h1"]
        assert len(remaining[0].user_agent) == 256
    async with store.transaction() as conn:
        await conn.execute(sa.text("DELETE FROM users WHERE id = :id"), {"id": ana.id})
    async with store.read() as conn:
        assert await session_sql.by_token_hash(conn, "h1") is None


async def test_tokens_belong_to_their_owner(store: Store) -> None:
    ana = await _user(store, "ana")
    bob = await _user(store, "bob")
    async with store.transaction() as conn:
        token = await token_sql.insert(
            conn, token_hash="t", user_id=ana.id, name="n", prefix="p", now=NOW, expires_at=None
        )
        assert not await token_sql.delete_for_user(conn, token.id, bob.id)
        assert await token_sql.delete_for_user(conn, token.id, ana.id)
        assert await token_sql.by_token_hash(conn, "t") is None


async def test_an_invitation_is_claimed_once_even_in_parallel(store: Store) -> None:
    async with store.transaction() as conn:
        invitation = await invitation_sql.insert(
            conn,
            code_hash="c",
            role="guest",
            email=None,
            created_by=None,
            now=NOW,
            expires_at=NOW + 1000,
        )

    async def claim() -> bool:
        async with store.transaction() as conn:
            return await invitation_sql.claim(conn, invitation.id, now=NOW + 1)

    results = await asyncio.gather(*(claim() for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    async with store.read() as conn:
        assert await invitation_sql.list_pending(conn, now=NOW + 2) == []


async def test_expired_and_revoked_invitations_cannot_be_claimed(store: Store) -> None:
    async with store.transaction() as conn:
        old = await invitation_sql.insert(
            conn,
            code_hash="a",
            role="member",
            email=None,
            created_by=None,
            now=NOW,
            expires_at=NOW + 10,
        )
        revoked = await invitation_sql.insert(
            conn,
            code_hash="b",
            role="member",
            email=None,
            created_by=None,
            now=NOW,
            expires_at=NOW + 1000,
        )
        assert await invitation_sql.revoke(conn, revoked.id, now=NOW)
        assert not await invitation_sql.claim(conn, old.id, now=NOW + 10)
        assert not await invitation_sql.claim(conn, revoked.id, now=NOW + 1)


async def test_throttle_counts_atomically_and_forgets(store: Store) -> None:
    async def attempt(now: int) -> throttle_sql.ThrottleRecord:
        async with store.transaction() as conn:
            return await throttle_sql.count_attempt(
                conn, "user:ana", now=now, forget_before=now - 1000
            )

    records = await asyncio.gather(*(attempt(NOW) for _ in range(8)))
    assert sorted(r.failures for r in records) == list(range(1, 9))
    forgotten = await attempt(NOW + 5000)
    assert forgotten.failures == 1
    async with store.transaction() as conn:
        await throttle_sql.block(conn, "user:ana", until=NOW + 9000)
        await throttle_sql.forgive_one(conn, "user:ana")
        [record] = await throttle_sql.get_many(conn, ["user:ana", "user:nobody"])
        assert record.failures == 0 and record.blocked_until == NOW + 9000
        assert await throttle_sql.delete_stale(conn, before=NOW + 10_000) == 1


async def test_postgres_pings_only_connections_left_idle(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection used a moment ago goes straight back to work; one idle for longer
    than PING_AFTER_IDLE_S is pinged first, and a dead one is replaced, not handed out."""
    from collab.store import engine as engine_module

    store = open_store(pg_url)
    pings = 0
    real_ping = store.engine.dialect.do_ping

    def counting_ping(dbapi_connection: object) -> bool:
        nonlocal pings
        pings += 1
        return bool(real_ping(dbapi_connection))

    monkeypatch.setattr(store.engine.dialect, "do_ping", counting_ping)
    try:
        async with store.read() as conn:
            first_pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        async with store.read() as conn:
            await conn.execute(sa.text("SELECT 1"))
        assert pings == 0  # fresh, then busy a moment ago: no ping

        # The server ends the pooled connection while it sits idle.
        monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 0.0)
        admin = open_store(pg_url)
        try:
            async with admin.read() as conn:
                await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid})
        finally:
            await admin.close()
        async with store.read() as conn:
            pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        assert pings >= 1
        assert pid != first_pid
    finally:
        await store.close()


async def test_postgres_reads_skip_begin_and_rollback(pg_url: str) -> None:
    """Reads run in autocommit (no BEGIN/ROLLBACK round trips); writes stay transactions."""
    store = open_store(pg_url)
    try:
        async with store.read() as conn:
            await conn.execute(sa.text("SELECT 1"))
            raw = await conn.get_raw_connection()
            assert not raw.driver_connection.is_in_transaction()
        async with store.transaction() as conn:
            await conn.execute(sa.text("SELECT 1"))
            raw = await conn.get_raw_connection()
            assert raw.driver_connection.is_in_transaction()
    finally:
        await store.close()
