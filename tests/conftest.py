"""Shared fixtures: real databases on both backends, a real Redis, apps and clients."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

from collab.accounts.passwords import Passwords
from collab.app import create_app
from collab.config import Config
from tests.servers import PostgresServer, RedisServer


class FakeClock:
    """Milliseconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@pytest.fixture(scope="session")
def fast_passwords() -> Passwords:
    """argon2id with small costs: the same code path, a fraction of the CPU."""
    return Passwords(PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer.find_or_start()
    yield server
    server.stop()


@pytest.fixture
async def pg_url(pg_server: PostgresServer) -> AsyncIterator[str]:
    name = await pg_server.create_database()
    yield pg_server.sqlalchemy_url(name)
    await pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Every test using this runs twice: on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'collab.db'}"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    name = await server.create_database()
    yield server.sqlalchemy_url(name)
    await server.drop_database(name)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


AppFactory = Callable[..., web.Application]


@pytest.fixture
def make_app(tmp_path: Path, fast_passwords: Passwords, clock: FakeClock) -> AppFactory:
    def factory(*, app_clock: Callable[[], int] | None = None, **settings: Any) -> web.Application:
        settings.setdefault("data_dir", tmp_path / "data")
        return create_app(
            Config(**settings),
            clock=app_clock or clock,
            passwords=fast_passwords,
            announce_first_run=False,
        )

    return factory


ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], make_app: AppFactory
) -> TestClient[Any, Any]:
    return await aiohttp_client(make_app())


NodePair = Callable[..., Awaitable[list[TestClient[Any, Any]]]]


@pytest.fixture
def node_pair(
    aiohttp_client: ClientFactory,
    make_app: AppFactory,
    pg_url: str,
    redis_server: RedisServer,
    tmp_path: Path,
) -> NodePair:
    """Makes nodes "a" and "b" on one PostgreSQL and one Redis, as a cluster runs them:
    each with its own data directory, or one for both with ``shared_data=True``."""

    async def make(*, shared_data: bool = False, **settings: Any) -> list[TestClient[Any, Any]]:
        return [
            await aiohttp_client(
                make_app(
                    database_url=pg_url,
                    redis_url=redis_server.url,
                    data_dir=tmp_path / ("shared" if shared_data else name),
                    node_id=name,
                    **settings,
                )
            )
            for name in ("a", "b")
        ]

    return make
