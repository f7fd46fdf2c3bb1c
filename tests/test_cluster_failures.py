"""Failures on a real cluster, with nothing lost.

Three ``collab serve`` processes on one PostgreSQL and a real redis-server,
60 resuming socket clients spread over them (tests/cluster_clients.py) in six
rooms, about 100 messages a second, each with its own ``client_msg_id``.
Then a node is killed with SIGKILL, or Redis is restarted; afterwards every
message is stored once and every client holds every message of its room
exactly once, in seq order and without a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.chat_helpers import Person
from tests.cluster_clients import PASSWORD, ResumingClient
from tests.helpers import add_user
from tests.servers import PostgresServer, RedisServer
from tests.test_cli import Node

CLIENTS = 60
ROOMS = 6
RATE = 100.0  # messages a second, all senders together
NODE_TTL = 3


@dataclass
class Cluster:
    nodes: list[Node]
    addresses: list[str]
    clients: list[ResumingClient]
    owner: Person  # on an in-process app sharing the database: reads what is stored
    rooms: list[int]
    setup_url: str  # the in-process app: sign in there (sessions are in the database)


def _start_nodes(pg_url: str, redis_url: str, data_dir: Path) -> list[Node]:
    common = (
        *("--database-url", pg_url, "--redis-url", redis_url),
        *("--data-dir", str(data_dir), "--log-level", "warning"),
        *("--presence-node-ttl", str(NODE_TTL)),
    )
    nodes = [Node(*common, "--node-id", f"node-{n}") for n in range(3)]
    for node in nodes:
        node.wait_ready()
    return nodes


@contextlib.asynccontextmanager
async def _running(
    aiohttp_client: Any, make_app: Any, pg_url: str, redis_url: str, tmp_path: Path, count: int
) -> AsyncIterator[Cluster]:
    # Users and rooms made in-process (fast password hashes); the nodes see them in PostgreSQL.
    setup = await aiohttp_client(
        make_app(database_url=pg_url, data_dir=tmp_path / "setup", login_max_failures=100)
    )
    owner = await Person.create(setup, "owner")
    names = [f"user{n}" for n in range(count)]
    for name in [*names, "lurker0", "lurker1"]:
        await add_user(setup.app, name, password=PASSWORD)
    rooms = []
    for r in range(ROOMS):
        members = [names[n] for n in range(r, count, ROOMS)]
        if r == 0:
            members += ["lurker0", "lurker1"]
        rooms.append((await owner.room("channel", f"room{r}", members))["id"])

    nodes: list[Node] = []
    clients: list[ResumingClient] = []
    try:
        nodes = await asyncio.to_thread(_start_nodes, pg_url, redis_url, tmp_path / "data")
        addresses = [f"http://127.0.0.1:{node.port}" for node in nodes]
        clients = [
            # Every room has members on every node.
            ResumingClient(name, addresses, n // ROOMS % 3, [rooms[n % ROOMS]])
            for n, name in enumerate(names)
        ]
        # Signed in on the in-process app: the session is in PostgreSQL, valid on every node,
        # and a node does not spend seconds re-hashing 60 fast test passwords.
        setup_url = str(setup.make_url("/")).rstrip("/")
        await asyncio.gather(*(c.sign_in(setup_url) for c in clients))
        for client in clients:
            client.start()
        async with asyncio.timeout(30):
            await asyncio.gather(*(c.ready.wait() for c in clients))
        yield Cluster(nodes, addresses, clients, owner, rooms, setup_url)
    finally:
        await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)
        for node in nodes:
            await asyncio.to_thread(node.stop, signal.SIGKILL)
        await owner.close()


@pytest.fixture
async def cluster(
    aiohttp_client: Any, make_app: Any, pg_url: str, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[Cluster]:
    async with _running(
        aiohttp_client, make_app, pg_url, redis_server.url, tmp_path, CLIENTS
    ) as running:
        yield running


async def _traffic(
    clients: list[ResumingClient], seconds: float, during: Callable[[], Any], rate: float = RATE
) -> int:
    """~RATE messages a second from all clients in turn; ``during`` runs at a third of the way."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    event: asyncio.Task[Any] | None = None
    while (elapsed := loop.time() - start) < seconds:
        if event is None and elapsed > seconds / 3:
            event = asyncio.create_task(during())
        client = clients[sent % len(clients)]
        client.queue(client.rooms[0])
        sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - loop.time()))
    assert event is not None
    await event
    return sent


async def _stored(owner: Person, room: int) -> list[dict[str, Any]]:
    """Every message of a room as the database has it, oldest first."""
    messages: list[dict[str, Any]] = []
    while True:
        after = messages[-1]["seq"] if messages else 0
        page = await owner.call(
            "GET", f"/api/v1/rooms/{room}/messages?after={after}&limit=200", 200
        )
        messages += page["messages"]
        if not page["more"]:
            return messages


async def _check_nothing_lost(cluster: Cluster, sent: int) -> None:
    clients = cluster.clients
    async with asyncio.timeout(30):
        while any(c.outbox for c in clients):
            await asyncio.sleep(0.2)
    queued = {cid for c in clients for cid in c.acked}
    assert len(queued) == sent

    stored: dict[int, list[dict[str, Any]]] = {}
    for room in cluster.rooms:
        stored[room] = await _stored(cluster.owner, room)
        seqs = [m["seq"] for m in stored[room]]
        assert seqs == list(range(1, len(seqs) + 1)), f"room {room}: seqs not gapless"
    ids = [m["client_msg_id"] for room in cluster.rooms for m in stored[room]]
    assert len(ids) == len(set(ids)) == sent  # every message stored once, none twice
    assert set(ids) == queued
    acked = {cid: mid for c in clients for cid, mid in c.acked.items()}
    by_client_id = {m["client_msg_id"]: m["id"] for room in cluster.rooms for m in stored[room]}
    assert acked == by_client_id

    last = {room: len(stored[room]) for room in cluster.rooms}
    try:
        async with asyncio.timeout(20):
            while not all(c.caught_up(last) for c in clients):
                await asyncio.sleep(0.2)
    except TimeoutError:
        behind = [(c.username, c.point, last[c.rooms[0]]) for c in clients if not c.caught_up(last)]
        raise AssertionError(f"clients behind: {behind}") from None
    for client in clients:
        room = client.rooms[0]
        held = client.held[room]
        assert sorted(held) == list(range(1, last[room] + 1))
        assert [held[seq]["id"] for seq in sorted(held)] == [m["id"] for m in stored[room]]
        assert client.conflicts == []


async def _presence(base: str, http: aiohttp.ClientSession, username: str) -> str:
    response = await http.get(f"{base}/api/v1/users/{username}/presence")
    assert response.status == 200, await response.text()
    return str((await response.json())["status"])


async def test_a_node_killed_mid_traffic_loses_and_repeats_nothing(cluster: Cluster) -> None:
    victim, survivor = cluster.nodes[0], cluster.addresses[1]
    victim_id = "node-0"
    # The clients on the victim now (on a loaded machine a socket may have been
    # replaced during set-up, so not only those that started there).
    on_victim = [c for c in cluster.clients if c.nodes and c.nodes[-1] == victim_id]
    assert on_victim, [c.nodes for c in cluster.clients]

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as watcher:
        # Two users with a plain socket on the victim only, which will not reconnect.
        sockets = []
        for name in ("lurker0", "lurker1"):
            jar = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
            login = await jar.post(
                f"{cluster.setup_url}/api/v1/login",
                json={"username": name, "password": PASSWORD},
            )
            assert login.status == 200
            ws = await jar.ws_connect(f"{cluster.addresses[0]}/ws")
            assert (await ws.receive_json(timeout=10))["type"] == "hello"
            await ws.send_json({"id": "p", "type": "ping"})
            sockets.append((jar, ws))
        login = await watcher.post(
            f"{cluster.setup_url}/api/v1/login", json={"username": "owner", "password": PASSWORD}
        )
        assert login.status == 200
        async with asyncio.timeout(10):
            while await _presence(survivor, watcher, "lurker0") != "available":
                await asyncio.sleep(0.2)

        killed_at = 0.0

        async def kill() -> None:
            nonlocal killed_at
            victim.send(signal.SIGKILL)
            killed_at = time.monotonic()

        try:
            sent = await _traffic(cluster.clients, 6.0, kill)
            assert victim.process.wait(timeout=5) == -signal.SIGKILL
            await _check_nothing_lost(cluster, sent)

            # The victim's clients moved to another node and resumed there.
            for client in on_victim:
                assert len(client.nodes) >= 2 and client.nodes[-1] != victim_id
            # ... and some of what they hold they learnt from sync / history, not live.
            assert sum(c.recovered for c in on_victim) > 0
            # Users only on the dead node go offline once its heartbeat runs out.
            async with asyncio.timeout(NODE_TTL + 12):
                while {
                    await _presence(survivor, watcher, name) for name in ("lurker0", "lurker1")
                } != {"offline"}:
                    await asyncio.sleep(0.2)
            assert time.monotonic() - killed_at < 60
            # A user who moved to a live node stays available.
            assert await _presence(survivor, watcher, on_victim[0].username) == "available"
        finally:
            for jar, _ in sockets:
                await jar.close()


async def test_a_redis_restart_mid_traffic_loses_and_repeats_nothing(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    async def restart() -> None:
        await asyncio.to_thread(redis_server.stop)
        await asyncio.sleep(1.0)  # messages are sent meanwhile; nobody hears of them live
        await asyncio.to_thread(redis_server.start)

    sent = await _traffic(cluster.clients, 6.0, restart)
    await _check_nothing_lost(cluster, sent)
    # Every node told its clients to sync after the gap.
    assert all(c.sync_needed >= 1 for c in cluster.clients), [
        c.sync_needed for c in cluster.clients
    ]
    # Messages sent while the bus was down reached the clients through sync, not live.
    assert sum(c.recovered for c in cluster.clients) > 0
    # No node died: the clients stayed on their first socket.
    assert all(len(c.nodes) == 1 for c in cluster.clients)


@pytest.fixture
def private_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, so stopping it disturbs nobody else."""
    server = PostgresServer.start_temporary()
    yield server
    server.stop()


async def test_a_database_outage_fails_sends_visibly_and_loses_nothing(
    aiohttp_client: Any,
    make_app: Any,
    private_pg: PostgresServer,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    pg_url = private_pg.sqlalchemy_url(await private_pg.create_database())
    ready_during: list[int] = []

    async with _running(aiohttp_client, make_app, pg_url, redis_server.url, tmp_path, 18) as cl:

        async def outage() -> None:
            await asyncio.to_thread(private_pg.pause)
            await asyncio.sleep(2.0)  # sends are refused meanwhile, and kept in the outboxes
            async with aiohttp.ClientSession() as http:
                for base in cl.addresses:
                    ready_during.append((await http.get(f"{base}/readyz")).status)
            await asyncio.to_thread(private_pg.resume)

        sent = await _traffic(cl.clients, 7.0, outage, rate=30)
        refusals = [code for c in cl.clients for code in c.refusals]
        assert refusals and set(refusals) == {"unavailable"}
        assert ready_during == [503, 503, 503]
        await _check_nothing_lost(cl, sent)
        async with aiohttp.ClientSession() as http:
            for base in cl.addresses:
                assert (await http.get(f"{base}/readyz")).status == 200
        # The sockets stayed open through the outage: no reconnect was needed.
        assert all(len(c.nodes) == 1 for c in cl.clients)


def test_a_connection_refused_while_postgresql_stops_or_starts_is_an_outage() -> None:
    """asyncpg's own errors from a new connection (not wrapped by SQLAlchemy) are outages."""
    from asyncpg.exceptions import AdminShutdownError, CannotConnectNowError
    from sqlalchemy.exc import DBAPIError

    from collab.api.unavailable import as_unavailable

    for exc in (
        CannotConnectNowError("the database system is shutting down"),
        AdminShutdownError("terminating connection due to administrator command"),
    ):
        mapped = as_unavailable(exc)
        assert mapped is not None and mapped.code == "unavailable"
    # On a connection in use: SQLAlchemy's DBAPIError around the driver's error around asyncpg's.
    driver_error = Exception("terminating connection due to administrator command")
    driver_error.__cause__ = AdminShutdownError("terminating connection")
    wrapped = as_unavailable(DBAPIError("SELECT 1", None, driver_error))
    assert wrapped is not None and wrapped.code == "unavailable"
    assert as_unavailable(ValueError("a bug")) is None
    assert as_unavailable(DBAPIError("SELECT 1", None, ValueError("a bug"))) is None
