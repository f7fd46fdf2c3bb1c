"""Presence across two real node processes on PostgreSQL and Redis, one of them killed."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import PASSWORD
from tests.servers import RedisServer
from tests.test_cli import Node, run


async def _sign_in(http: aiohttp.ClientSession, base: str, username: str) -> dict[str, str]:
    response = await http.post(
        f"{base}/api/v1/login", json={"username": username, "password": PASSWORD}
    )
    assert response.status == 200, await response.text()
    return {"X-CSRF-Token": (await response.json())["csrf_token"]}


async def _socket(http: aiohttp.ClientSession, base: str) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"{base}/ws")
    assert (await ws.receive_json(timeout=10))["type"] == "hello"
    await ws.send_json({"id": "start", "type": "ping"})
    return ws


async def _presence(
    ws: aiohttp.ClientWebSocketResponse, username: str, status: str, timeout: float
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.receive_json()
            users = frame.get("users", []) if frame.get("type") == "presence.snapshot" else []
            if frame.get("type") == "presence":
                users = [frame]
            for user in users:
                if user["username"] == username and user["status"] == status:
                    return user


async def test_a_killed_node_takes_only_its_own_users_offline(
    pg_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    common = ["--database-url", pg_url, "--redis-url", redis_server.url, "--log-level", "warning"]
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    for name in ("ana", "bob", "carol"):
        created = run("admin", "create-user", name, "--password-file", str(password_file), *common)
        assert created.returncode == 0, created.stderr
    node_a = Node(
        *common, "--node-id", "a", "--data-dir", str(tmp_path / "a"), "--presence-node-ttl", "2"
    )
    node_b = Node(
        *common, "--node-id", "b", "--data-dir", str(tmp_path / "b"), "--presence-node-ttl", "2"
    )
    try:
        node_a.wait_ready()
        node_b.wait_ready()
        a, b = f"http://127.0.0.1:{node_a.port}", f"http://127.0.0.1:{node_b.port}"
        jar = aiohttp.CookieJar
        async with (
            aiohttp.ClientSession(cookie_jar=jar(unsafe=True)) as ana_a,
            aiohttp.ClientSession(cookie_jar=jar(unsafe=True)) as ana_b,
            aiohttp.ClientSession(cookie_jar=jar(unsafe=True)) as bob,
            aiohttp.ClientSession(cookie_jar=jar(unsafe=True)) as carol,
        ):
            csrf = await _sign_in(ana_a, a, "ana")
            await _sign_in(ana_b, b, "ana")
            await _sign_in(bob, b, "bob")
            await _sign_in(carol, a, "carol")
            room = await ana_a.post(
                f"{a}/api/v1/rooms",
                json={"kind": "channel", "name": "all", "members": ["bob", "carol"]},
                headers=csrf,
            )
            assert room.status == 201
            watcher = await _socket(bob, b)
            ana_on_a, ana_on_b = await _socket(ana_a, a), await _socket(ana_b, b)
            carol_on_a = await _socket(carol, a)
            await _presence(watcher, "ana", "available", 10)
            await _presence(watcher, "carol", "available", 10)

            node_a.send(signal.SIGKILL)
            # carol was only on node A: offline once A's heartbeat runs out (well under 60 s).
            gone = await _presence(watcher, "carol", "offline", 60)
            assert gone["last_seen"] is not None
            # ana still has a socket on node B: she stays available.
            still = await (await bob.get(f"{b}/api/v1/users/ana/presence")).json()
            assert still["status"] == "available"
            await ana_on_b.close()
            await _presence(watcher, "ana", "offline", 20)
            for ws in (watcher, ana_on_a, carol_on_a):
                await ws.close()
    finally:
        node_a.stop(signal.SIGKILL)
        node_b.stop()
