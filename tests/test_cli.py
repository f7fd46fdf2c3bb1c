"""The ``collab`` command as a user runs it: real processes, real ports."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp
import pytest

from collab.store import migrate
from tests.servers import free_port, wait_for_port

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
LINK = re.compile(r"first administrator \(valid 24 hours\): (\S+)")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collab", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=ENV,
        timeout=60,
    )


class Node:
    """A `collab serve` process whose stderr is collected as it runs."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "collab", "serve", "--port", str(self.port), *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        self.lines: list[str] = []
        self.signalled = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_ready(self) -> None:
        try:
            wait_for_port(self.port, timeout=30)
        except TimeoutError:
            raise AssertionError(f"node did not start:\n{self.log}") from None

    def send(self, sig: int) -> None:
        self.signalled = True
        self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Stop the node, unless a signal is already on its way; a second Ctrl-C aborts."""
        if self.process.poll() is None and (not self.signalled or sig == signal.SIGKILL):
            self.send(sig)
        code = self.process.wait(timeout=30)
        self._reader.join(timeout=5)
        return code


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text("a strong admin password\n")
    return path


def test_bad_setting_is_one_clear_line() -> None:
    result = run("serve", "--port", "eighty")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("collab: setting --port")
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    port = free_port()
    result = run(
        "migrate", "--database-url", f"postgresql+asyncpg://collab:secret@127.0.0.1:{port}/collab"
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "--database-url" in result.stderr
    assert "secret" not in result.stderr  # the password is masked


def test_migrate_then_create_admin_from_a_script(data_dir: Path, password_file: Path) -> None:
    migrated = run("migrate", "--data-dir", str(data_dir))
    assert migrated.returncode == 0, migrated.stderr
    assert f"is at {migrate.head_revision()}" in migrated.stdout
    created = run(
        "admin",
        "create-user",
        "Boss",
        "--admin",
        "--password-file",
        str(password_file),
        "--data-dir",
        str(data_dir),
    )
    assert created.returncode == 0, created.stderr
    assert "created admin 'boss'" in created.stdout
    again = run(
        "admin",
        "create-user",
        "boss",
        "--password-file",
        str(password_file),
        "--data-dir",
        str(data_dir),
    )
    assert again.returncode == 1
    assert "taken" in again.stderr and "Traceback" not in again.stderr
    weak = run(
        "admin",
        "create-user",
        "other",
        "--password-file",
        "-",
        "--data-dir",
        str(data_dir),
        stdin="short\n",
    )
    assert weak.returncode == 1
    assert "at least 8 characters" in weak.stderr
    invite = run("admin", "invite", "--role", "guest", "--data-dir", str(data_dir))
    assert invite.returncode == 0
    assert "/#/invite/" in invite.stdout


async def _sign_in(port: int, username: str, password: str) -> int:
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"http://127.0.0.1:{port}/api/v1/login",
            json={"username": username, "password": password},
        )
        return response.status


def test_first_run_link_then_sign_in_then_clean_shutdown(data_dir: Path) -> None:
    node = Node("--data-dir", str(data_dir))
    try:
        node.wait_ready()
        for _ in range(100):
            if LINK.search(node.log):
                break
            threading.Event().wait(0.05)
        match = LINK.search(node.log)
        assert match, node.log
        code = match.group(1).rsplit("/", 1)[1]

        async def scenario() -> int | None:
            base = f"http://127.0.0.1:{node.port}"
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                assert (await http.get(f"{base}/healthz")).status == 200
                accepted = await http.post(
                    f"{base}/api/v1/invitations/{code}/accept",
                    json={"username": "founder", "password": "founder password"},
                )
                assert accepted.status == 201
                assert (await accepted.json())["user"]["role"] == "admin"
                ws = await http.ws_connect(f"{base}/ws")
                assert (await ws.receive_json(timeout=5))["type"] == "hello"
                node.send(signal.SIGINT)
                message = await ws.receive(timeout=15)
                assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                return ws.close_code

        close_code = asyncio.run(scenario())
        assert close_code == aiohttp.WSCloseCode.GOING_AWAY
        assert node.stop() == 0, node.log
        assert "Traceback" not in node.log
        assert (data_dir / "collab.db").exists()
    finally:
        node.stop(signal.SIGKILL)


def test_a_node_told_not_to_prints_no_first_run_link(data_dir: Path) -> None:
    """The other nodes of a cluster: a link of theirs would revoke the first node's."""
    node = Node("--data-dir", str(data_dir), "--first-run-link", "false")
    try:
        node.wait_ready()
        assert node.stop() == 0, node.log
        assert "collab listening" in node.log and not LINK.search(node.log), node.log
    finally:
        node.stop(signal.SIGKILL)


def test_no_first_run_link_once_a_user_exists(data_dir: Path, password_file: Path) -> None:
    run(
        "admin",
        "create-user",
        "boss",
        "--admin",
        "--password-file",
        str(password_file),
        "--data-dir",
        str(data_dir),
    )
    node = Node("--data-dir", str(data_dir))
    try:
        node.wait_ready()
        assert asyncio.run(_sign_in(node.port, "boss", "a strong admin password")) == 200
        assert node.stop(signal.SIGTERM) == 0
        assert "No users yet" not in node.log
    finally:
        node.stop(signal.SIGKILL)


def test_port_in_use_is_one_clear_line(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--port", str(port), "--data-dir", str(data_dir))
    assert result.returncode == 1
    assert "address is in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_serves_https_directly(tmp_path: Path, data_dir: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    node = Node("--data-dir", str(data_dir), "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        node.wait_ready()

        async def fetch() -> tuple[int, str]:
            async with aiohttp.ClientSession() as http:
                response = await http.post(
                    f"https://127.0.0.1:{node.port}/api/v1/login",
                    json={"username": "nobody", "password": "whatever1"},
                    ssl=False,
                )
                health = await http.get(f"https://127.0.0.1:{node.port}/healthz", ssl=False)
                assert health.status == 200
                return response.status, response.headers.get("Strict-Transport-Security", "")

        status, hsts = asyncio.run(fetch())
        assert status == 401
        assert hsts.startswith("max-age=")
        assert "https://127.0.0.1" in node.log
    finally:
        node.stop()
