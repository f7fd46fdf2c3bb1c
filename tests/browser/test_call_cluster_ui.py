"""A call in real browsers on a two-node cluster, through the load balancer, while
the call's media node is stopped with SIGTERM.

Two ``collab serve`` processes share PostgreSQL, a redis-server and a data
directory; the development balancer (``collab.cluster.balancer``) spreads the
pages' requests and sockets over them. When the node carrying the call's
media drains, it hands the call to the other node; each page hears
``call.moved`` (or loses its socket, reconnects through the balancer and
rejoins), builds new peer connections and receives the other again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from playwright.sync_api import Page, expect

from collab.cluster.balancer import Balancer, Upstream
from tests.browser.chat_fixtures import create_channel, create_member
from tests.browser.chat_steps import open_room
from tests.browser.conftest import ADMIN_USERNAME, FIRST_RUN, Server, SignedInPage
from tests.browser.test_call_ui import browser, call_page, wait_for_media  # noqa: F401
from tests.servers import PostgresServer, RedisServer, free_port
from tests.test_cli import Node

Shot = Any


def _run(coro: Any) -> Any:
    """An async step from this synchronous (Playwright) test, on a loop of its own."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class Front(threading.Thread):
    """The balancer on its own event loop, in a thread."""

    def __init__(self, upstreams: list[Upstream]) -> None:
        super().__init__(daemon=True, name="balancer")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._upstreams = upstreams
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None

    def run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._runner = web.AppRunner(Balancer(self._upstreams).app())
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def begin(self) -> None:
        self.start()
        assert self._ready.wait(15), "the balancer did not start"

    def stop(self) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self.join(5)


class ClusterServer(Server):
    """The test's 'server' for the page fixtures: the balancer's address, in front of
    two nodes."""

    nodes: list[Node]
    node_ids: list[str]
    database: str


@pytest.fixture
def server(tmp_path: Path, pg_server: PostgresServer, redis_server: RedisServer) -> Iterator[Any]:
    database = _run(pg_server.create_database())
    node_ids = ["node-a", "node-b"]
    nodes: list[Node] = []
    front: Front | None = None
    try:
        # One after the other: each node with no users yet makes a new first-run link
        # and revokes the one before, so the last node's link is the valid one.
        for node_id in node_ids:
            nodes.append(
                Node(
                    *("--database-url", pg_server.sqlalchemy_url(database)),
                    *("--redis-url", redis_server.url, "--data-dir", str(tmp_path / "data")),
                    *("--node-id", node_id, "--drain-time", "10", "--log-level", "warning"),
                )
            )
            nodes[-1].wait_ready()
        front = Front(
            [
                Upstream(node_id, f"http://127.0.0.1:{node.port}")
                for node_id, node in zip(node_ids, nodes, strict=True)
            ]
        )
        front.begin()
        cluster = ClusterServer(url=front.url, data_dir=tmp_path / "data")
        cluster.nodes, cluster.node_ids, cluster.database = nodes, node_ids, database
        links = [m.group("url") for m in map(FIRST_RUN.search, nodes[-1].lines) if m]
        cluster.first_run_link = links[-1]
        yield cluster
    finally:
        if front is not None:
            front.stop()
        for node in nodes:
            node.stop(signal.SIGKILL)
        _run(pg_server.drop_database(database))


def _media_node(pg_server: PostgresServer, database: str) -> str:
    async def query() -> str:
        dsn = pg_server.sqlalchemy_url(database).replace("postgresql+asyncpg:", "postgresql:")
        conn = await asyncpg.connect(dsn)
        try:
            node = await conn.fetchval("SELECT node FROM calls WHERE ended_at IS NULL")
        finally:
            await conn.close()
        assert node, "no ongoing call"
        return str(node)

    return str(_run(query()))


def _participant(page: Page) -> str:
    return str(page.evaluate("() => window.__collabCall?.participantId ?? ''"))


def test_a_call_moves_to_the_other_node_when_its_media_node_stops(
    server: ClusterServer,
    signed_in_page: SignedInPage,
    pg_server: PostgresServer,
    shot: Shot,
) -> None:
    admin = server.create_first_admin(display_name="Ada Lovelace")
    grace = create_member(admin, "grace", display_name="Grace Hopper")
    create_channel(admin, "general", [grace])
    ada = call_page(signed_in_page, server, ADMIN_USERNAME)
    grace_page = call_page(signed_in_page, server, grace)
    for page in (ada, grace_page):
        open_room(page, "Channel general", "#general")
    ada.get_by_role("button", name="Start a video call").click()
    ada.get_by_role("dialog", name="Start a video call").get_by_role(
        "button", name="Start call"
    ).click()
    grace_page.get_by_role("dialog", name="Ada Lovelace is calling").get_by_role(
        "button", name="Accept with video"
    ).click()
    for page in (ada, grace_page):
        wait_for_media(page, others=1)
    before = {page: _participant(page) for page in (ada, grace_page)}

    media_node = _media_node(pg_server, server.database)
    stopping = server.nodes[server.node_ids.index(media_node)]
    stopping.send(signal.SIGTERM)
    for page in (ada, grace_page):
        # A new participant id: the page joined again, on the other node.
        page.wait_for_function(
            "(old) => { const id = window.__collabCall?.participantId; return id && id !== old; }",
            arg=before[page],
            timeout=20000,
        )
    for page in (ada, grace_page):
        wait_for_media(page, others=1)
        expect(page.get_by_role("region", name="Call in #general")).to_contain_text("2 people")
    assert stopping.stop() == 0
    assert _media_node(pg_server, server.database) != media_node
    shot(grace_page, "call-moved-to-another-node", full_page=False)
    for page in (grace_page, ada):
        page.get_by_role("region", name="Call in #general").get_by_role(
            "button", name="Leave"
        ).click()
