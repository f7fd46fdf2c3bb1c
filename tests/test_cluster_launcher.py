"""`collab cluster` as a developer runs it: a real redis-server, PostgreSQL and node processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from collab.cluster.balancer import Balancer, Upstream
from tests.servers import free_port

ENV = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith("COLLAB_") or key.startswith("COLLAB_TEST")
} | {"PYTHONUNBUFFERED": "1"}
PASSWORD = "correct horse battery"
COLLAB = (sys.executable, "-m", "collab")
PID = re.compile(r"\(pid (\d+)")


def _two_free_ports() -> int:
    """A port whose next one is free too: the nodes take consecutive ports."""
    for _ in range(50):
        port = free_port()
        if port < 65000:
            try:
                with socket.socket() as a, socket.socket() as b:
                    a.bind(("127.0.0.1", port))
                    b.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no two consecutive free ports")


class Launcher:
    """A `collab cluster` process whose output is collected as it runs."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "collab", "cluster", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"no {text!r} from the launcher:\n{self.log}")
            time.sleep(0.05)

    def pids(self) -> dict[str, int]:
        """Process ids the launcher printed, by the first word of their line."""
        found = {}
        for line in self.log.splitlines():
            match = PID.search(line)
            if match and line.split()[0] in {"redis", "node-1", "node-2", "balancer"}:
                found[line.split()[0]] = int(match.group(1))
        return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            self._reader.join(timeout=5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[tuple[Launcher, int]]:
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    created = subprocess.run(
        [
            *COLLAB,
            "admin",
            "create-user",
            "ana",
            "--admin",
            "--password-file",
            str(password),
            "--database-url",
            pg_url,
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    port, base = free_port(), _two_free_ports()
    launcher = Launcher(
        "--nodes",
        "2",
        "--port",
        str(port),
        "--base-port",
        str(base),
        "--database-url",
        pg_url,
        "--data-dir",
        str(tmp_path / "shared"),
    )
    try:
        launcher.wait_for("<- open this")
        yield launcher, port
    finally:
        pids = launcher.pids()
        launcher.stop()
        for pid in pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


async def _next_frame_with(ws: aiohttp.ClientWebSocketResponse, text: str) -> dict[str, object]:
    while True:
        frame = await ws.receive_json(timeout=10)
        if text in json.dumps(frame):
            return frame


async def test_cluster_spreads_relays_survives_a_kill_and_stops_cleanly(
    cluster: tuple[Launcher, int],
) -> None:
    launcher, port = cluster
    assert "node-1" in launcher.log and "node-2" in launcher.log
    pids = launcher.pids()
    assert set(pids) == {"redis", "node-1", "node-2", "balancer"}, launcher.log
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(
        base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as http:
        signed_in = await http.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
        assert signed_in.status == 200, await signed_in.text()
        csrf = {"X-CSRF-Token": (await signed_in.json())["csrf_token"]}

        seen = set()
        for _ in range(6):
            response = await http.get("/api/v1/rooms")
            assert response.status == 200  # the session cookie works on both nodes
            seen.add(response.headers["X-Collab-Node"])
        assert seen == {"node-1", "node-2"}

        try:
            ws = await http.ws_connect("/ws")
        except aiohttp.WSServerHandshakeError:
            raise AssertionError(launcher.log) from None
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        room = await http.post(
            "/api/v1/rooms", json={"kind": "channel", "name": "team", "members": []}, headers=csrf
        )
        assert room.status == 201, await room.text()
        room_id = (await room.json())["room"]["id"]
        for n in range(2):  # one of the two posts lands on the other node than the socket
            posted = await http.post(
                f"/api/v1/rooms/{room_id}/messages", json={"body": f"hi {n}"}, headers=csrf
            )
            assert posted.status == 201
            await _next_frame_with(ws, f"hi {n}")
        await ws.close()

        os.kill(pids["node-1"], signal.SIGKILL)
        for _ in range(6):
            response = await http.get("/api/v1/rooms")
            assert response.status == 200
            assert response.headers["X-Collab-Node"] == "node-2"

    assert launcher.stop() == 0, launcher.log
    assert "Traceback" not in launcher.log
    await asyncio.sleep(0.2)
    assert not [name for name, pid in pids.items() if _alive(pid)], launcher.log


def test_a_cluster_refuses_sqlite(tmp_path: Path) -> None:
    result = subprocess.run(
        [*COLLAB, "cluster", "--nodes", "2", "--database-url", f"sqlite:///{tmp_path}/x.db"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
    )
    assert result.returncode == 1
    assert "needs PostgreSQL" in result.stderr and "--database-url" in result.stderr
    assert "Traceback" not in result.stderr


DOWN: set[str] = set()


async def _upstream(node_id: str) -> web.AppRunner:
    """A stand-in node: echoes what it received, and a socket that echoes then closes."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "node": node_id,
                "method": request.method,
                "path_qs": request.path_qs,
                "cookie": request.headers.get("Cookie"),
                "forwarded_for": request.headers.get("X-Forwarded-For"),
                "proto": request.headers.get("X-Forwarded-Proto"),
                "length": len(body),
            },
            headers={"Set-Cookie": "a=1"},
        )

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
            elif message.data == "bye":
                await ws.close(code=4001, message=b"bye")
            else:
                await ws.send_str(message.data.upper())
        return ws

    app = web.Application(client_max_size=10 * 1024 * 1024)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, status=503 if node_id in DOWN else 200)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ws", socket)
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    return runner


async def test_balancer_passes_requests_and_sockets_through() -> None:
    runners, upstreams = [], []
    for node_id in ("a", "b"):
        runner = await _upstream(node_id)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        upstreams.append(Upstream(node_id, f"http://127.0.0.1:{port}"))
    balancer = Balancer(upstreams)
    front = web.AppRunner(balancer.app())
    await front.setup()
    port = free_port()
    await web.TCPSite(front, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            body = b"x" * (3 * 1024 * 1024)
            answers = []
            for _ in range(2):
                response = await http.put(
                    "/some/path?q=1&r=2", data=body, headers={"Cookie": "session=abc"}
                )
                assert response.status == 200
                assert response.headers["Set-Cookie"] == "a=1"
                answers.append(await response.json())
            assert {a["node"] for a in answers} == {"a", "b"}
            for answer in answers:
                assert answer["method"] == "PUT" and answer["path_qs"] == "/some/path?q=1&r=2"
                assert answer["cookie"] == "session=abc" and answer["length"] == len(body)
                assert answer["forwarded_for"] == "127.0.0.1" and answer["proto"] == "http"

            ws = await http.ws_connect("/ws")
            await ws.send_str("hello")
            assert (await ws.receive(timeout=5)).data == "HELLO"
            await ws.send_bytes(b"\x00\x01\x02")
            assert (await ws.receive(timeout=5)).data == b"\x02\x01\x00"
            await ws.send_str("bye")
            closing = await ws.receive(timeout=5)
            assert closing.type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 4001

            DOWN.add("a")
            await balancer.check_health()
            nodes = {(await (await http.get("/x")).json())["node"] for _ in range(4)}
            assert nodes == {"b"}
    finally:
        DOWN.clear()
        await front.cleanup()
        for runner in runners:
            await runner.cleanup()
