"""Real Redis and PostgreSQL servers for the tests.

Redis: each test that needs one gets its own ``redis-server`` on a free port,
which it may stop and start again (to test reconnection).

PostgreSQL: the local server when one answers (``COLLAB_TEST_POSTGRES_URL``,
else postgres@127.0.0.1:5432), otherwise a temporary cluster made with
``initdb`` for the test session. Each test gets a fresh database in it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time

import asyncpg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class RedisServer:
    """A private redis-server that a test can stop and restart on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def _find_pg_binary(name: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    found = candidates[0] if candidates else shutil.which(name)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed; run `make test` to install it")
    return found


class PostgresServer:
    """Where the tests' databases live: an existing server or a temporary one."""

    def __init__(self, admin_dsn: str, process: subprocess.Popen[bytes] | None = None) -> None:
        self.admin_dsn = admin_dsn
        self.process = process
        self.data_dir: str | None = None
        self._run_as: list[str] = []
        self._port = 0

    @classmethod
    def find_or_start(cls) -> PostgresServer:
        dsn = os.environ.get(
            "COLLAB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        )
        if _answers_sync(dsn):
            return cls(dsn)
        return cls._start_temporary()

    @classmethod
    def start_temporary(cls) -> PostgresServer:
        return cls._start_temporary()

    @classmethod
    def _start_temporary(cls) -> PostgresServer:
        data_dir = tempfile.mkdtemp(prefix="collab-pg-")
        run_as: list[str] = []
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root; the Debian package makes this user.
            user = pwd.getpwnam("postgres")
            os.chown(data_dir, user.pw_uid, user.pw_gid)
            run_as = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*run_as, _find_pg_binary("initdb"), "-D", data_dir, "-U", "postgres", "-A", "trust"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        port = free_port()
        server = cls(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        server.data_dir = data_dir
        server._run_as = run_as
        server._port = port
        server.resume()
        return server

    def resume(self) -> None:
        """Start (again) the temporary server, on the same port and data."""
        assert self.data_dir is not None
        self.process = subprocess.Popen(
            [
                *self._run_as,
                _find_pg_binary("postgres"),
                "-D",
                self.data_dir,
                "-p",
                str(self._port),
                "-h",
                "127.0.0.1",
                "-k",
                self.data_dir,
                "-c",
                "fsync=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not _answers_sync(self.admin_dsn):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the temporary PostgreSQL did not start")
            time.sleep(0.2)

    def pause(self) -> None:
        """Stop the temporary server, keeping its data (an outage, not a loss)."""
        if self.process is None or self.data_dir is None:
            return
        # Fast shutdown: open client connections must not keep it up.
        subprocess.run(
            [
                *self._run_as,
                _find_pg_binary("pg_ctl"),
                "-D",
                self.data_dir,
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.process.wait(timeout=30)
        self.process = None

    async def create_database(self) -> str:
        name = f"collab_test_{secrets.token_hex(6)}"
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return name

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    def sqlalchemy_url(self, database: str) -> str:
        base = self.admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        return f"{base}/{database}"

    def stop(self) -> None:
        self.pause()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _answers_sync(dsn: str) -> bool:
    """Callable from inside a running event loop (fixtures are): runs in its own thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _answers(dsn)).result()


async def _answers(dsn: str) -> bool:
    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn), 3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True
