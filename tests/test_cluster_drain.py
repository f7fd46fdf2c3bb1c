"""A node stopped gracefully (SIGTERM) drains: no new sockets, clients moved, exit on time.

In-process: while a node drains, ``/healthz`` and ``/readyz`` answer 503
``draining``, ``/ws`` refuses upgrades with 503 ``draining``, and each open
socket gets ``server.draining`` and close code 4000; the balancer tries a
socket or request refused that way on the next node.

With real processes (tests/test_cluster_failures.py's cluster: three ``collab
serve`` nodes on one PostgreSQL and a real redis-server, resuming clients from
tests/cluster_clients.py chatting steadily): one node gets SIGTERM. It exits
with code 0 within its drain time, its clients are told and resume on another
node, and no message is lost or repeated.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collab.api.openapi import load_spec
from collab.cluster.balancer import NODE_HEADER, Balancer, Upstream
from collab.ops.drain import DRAIN, DRAINING_HEADER
from tests import test_cli
from tests.chat_helpers import Person
from tests.cluster_clients import PASSWORD, ResumingClient
from tests.servers import RedisServer, free_port
from tests.test_cluster_failures import _check_nothing_lost, _running, _traffic
from tests.test_openapi import Contract

DRAIN_TIME = 8.0
EXIT_MARGIN = 5.0  # a loaded machine: the signal, the exit, the wait in a thread
CLIENTS = 18  # six on each of the three nodes


async def test_a_draining_node_refuses_new_sockets_and_moves_open_ones(
    aiohttp_client: Any, make_app: Any
) -> None:
    client = await aiohttp_client(make_app(drain_time=4.0))
    ana = await Person.create(client, "ana")
    try:
        ws = await ana.http.ws_connect("/ws")
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        await ws.send_json({"id": "c1", "type": "ping"})

        drained = client.app[DRAIN].begin()
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    frames.append(message.json())
        assert frames[-1] == {"type": "server.draining", "node": "127.0.0.1:8080"}
        assert ws.close_code == 4000

        # Still answering during the drain, but not for new work.
        health = await ana.http.get("/healthz")
        assert health.status == 503 and health.headers[DRAINING_HEADER] == "true"
        assert await health.json() == {"status": "draining"}
        ready = await ana.http.get("/readyz")
        assert ready.status == 503 and (await ready.json())["status"] == "draining"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await ana.http.ws_connect("/ws")
        assert refused.value.status == 503
        answer = await ana.http.get(
            "/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket"}
        )
        assert answer.status == 503
        assert (await answer.json())["error"]["code"] == "draining"
        Contract(load_spec()).check("GET", "/ws", 503, answer.headers, await answer.read())
        # REST requests already on their way are still served.
        await ana.call("GET", "/api/v1/me", 200)
        async with asyncio.timeout(10):
            await drained
    finally:
        await ana.close()


@pytest.fixture
async def balanced(aiohttp_client: Any, make_app: Any) -> AsyncIterator[tuple[Any, ...]]:
    """Two in-process nodes (one SQLite file) behind the balancer; ana signed in."""
    nodes = [await aiohttp_client(make_app(node_id=name)) for name in ("a", "b")]
    upstreams = [Upstream(n.app[DRAIN].node_id, str(n.make_url("")).rstrip("/")) for n in nodes]
    front = web.AppRunner(Balancer(upstreams).app())
    await front.setup()
    port = free_port()
    await web.TCPSite(front, "127.0.0.1", port).start()
    ana = await Person.create(nodes[0], "ana")
    http = aiohttp.ClientSession(
        f"http://127.0.0.1:{port}", cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    login = await http.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
    assert login.status == 200
    try:
        yield nodes, upstreams, http
    finally:
        await http.close()
        await ana.close()
        await front.cleanup()


async def test_the_balancer_tries_the_next_node_when_one_is_draining(
    balanced: tuple[Any, ...],
) -> None:
    nodes, upstreams, http = balanced
    await nodes[0].app[DRAIN].begin()
    # As if the health check had not seen the drain yet: the refusal itself must do.
    # Round-robin: of two attempts in a row, one goes to the draining node first.
    refused = 0
    for _ in range(2):
        upstreams[0].healthy = True
        async with http.ws_connect("/ws") as ws:
            assert (await ws.receive_json(timeout=5))["node"] == "b"
        refused += not upstreams[0].healthy  # taken out of the rotation at once
    for _ in range(2):
        upstreams[0].healthy = True
        ready = await http.get("/readyz")
        assert ready.status == 200 and ready.headers[NODE_HEADER] == "b"
        refused += not upstreams[0].healthy
    assert refused >= 2
    # Every node draining: the client hears it.
    await nodes[1].app[DRAIN].begin()
    for upstream in upstreams:
        upstream.healthy = True
    answer = await http.get("/readyz")
    assert answer.status == 503
    assert (await answer.json())["error"]["code"] == "draining"


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """What each ResumingClient's sockets ended with: the last event, and the close code."""
    seen: dict[str, list[Any]] = {}
    read = ResumingClient._read

    class Watching:
        def __init__(self, ws: aiohttp.ClientWebSocketResponse, name: str) -> None:
            self.ws, self.name = ws, name

        async def __aiter__(self) -> AsyncIterator[aiohttp.WSMessage]:
            async for message in self.ws:
                if message.type == aiohttp.WSMsgType.TEXT and "server.draining" in message.data:
                    seen.setdefault(self.name, []).append(message.json())
                yield message
            seen.setdefault(self.name, []).append(self.ws.close_code)

    async def watching_read(self: ResumingClient, ws: aiohttp.ClientWebSocketResponse) -> None:
        await read(self, Watching(ws, self.username))  # type: ignore[arg-type]

    monkeypatch.setattr(ResumingClient, "_read", watching_read)
    monkeypatch.setitem(test_cli.ENV, "COLLAB_DRAIN_TIME", str(DRAIN_TIME))
    return seen


async def test_sigterm_moves_clients_to_another_node_and_exits_in_time(
    aiohttp_client: Any,
    make_app: Any,
    pg_url: str,
    redis_server: RedisServer,
    tmp_path: Path,
    watched: dict[str, list[Any]],
) -> None:
    async with _running(
        aiohttp_client, make_app, pg_url, redis_server.url, tmp_path, CLIENTS
    ) as cluster:
        victim, victim_id = cluster.nodes[0], "node-0"
        on_victim = [c for c in cluster.clients if c.nodes == [victim_id]]
        assert len(on_victim) == CLIENTS // 3
        refusal: dict[str, Any] = {}
        exit_code: list[int] = []

        async def stop_gracefully() -> None:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                login = await http.post(
                    f"{cluster.setup_url}/api/v1/login",
                    json={"username": "lurker0", "password": PASSWORD},
                )
                assert login.status == 200
                victim.send(signal.SIGTERM)
                sent_at = time.monotonic()
                base = cluster.addresses[0]
                async with asyncio.timeout(DRAIN_TIME):
                    while (await http.get(f"{base}/healthz")).status != 503:
                        await asyncio.sleep(0.05)
                # A new socket while it drains is refused, with a reason a proxy can act on.
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(f"{base}/ws")
                refusal.update(status=refused.value.status, headers=refused.value.headers)
                code = await asyncio.to_thread(
                    victim.process.wait, timeout=DRAIN_TIME + EXIT_MARGIN
                )
                assert time.monotonic() - sent_at < DRAIN_TIME + EXIT_MARGIN
                exit_code.append(code)

        sent = await _traffic(cluster.clients, 8.0, stop_gracefully, rate=30)
        assert exit_code == [0], victim.log
        assert refusal["status"] == 503
        assert refusal["headers"][DRAINING_HEADER] == "true"
        assert "drained in" in victim.log and "drain time" not in victim.log, victim.log
        await _check_nothing_lost(cluster, sent)
        # Its clients were told, then closed with 4000, and resumed on another node.
        for client in on_victim:
            first = watched[client.username]
            assert first[:2] == [{"type": "server.draining", "node": victim_id}, 4000], first
            assert len(client.nodes) >= 2 and victim_id not in client.nodes[1:]
        # The other nodes' clients were not disturbed.
        others = [c for c in cluster.clients if c not in on_victim]
        assert all(len(c.nodes) == 1 for c in others)
