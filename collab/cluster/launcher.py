"""Start a whole cluster on one machine: Redis, N ``collab serve`` nodes, one balancer.

Why: seeing chat, presence and calls work across nodes should take one
command, not five terminals. The nodes are real ``collab serve`` processes
(the same code as production) sharing one PostgreSQL, one Redis and one data
directory (so uploads are visible from every node); the balancer is the small
in-process one from :mod:`collab.cluster.balancer`.

Stopping (Ctrl-C or SIGTERM) goes in the order that loses nothing: the
balancer first (no new work), then the nodes (SIGTERM, so they drain; a kill
only if they overstay), then the Redis this launcher started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiohttp import web

from collab.cluster.balancer import Balancer, Upstream

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432"
LOCAL_DATABASE = "collab_cluster"
NODE_START_TIMEOUT = 30.0
NODE_STOP_GRACE = 20.0
TRUSTED = "127.0.0.1/32,::1/128"


class ClusterError(Exception):
    """Something the user can fix; the CLI prints it as one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=3, help="number of nodes (default: 3)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address the balancer listens on (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="port of the load balancer (default: 8080)"
    )
    parser.add_argument(
        "--base-port",
        type=int,
        default=8081,
        help="port of the first node; the others follow (default: 8081)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("COLLAB_REDIS_URL", ""),
        help="Redis to use; empty starts a local redis-server on a free port "
        "[env COLLAB_REDIS_URL]",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("COLLAB_DATABASE_URL", ""),
        help="PostgreSQL (postgresql+asyncpg://user:pass@host/db); empty uses the local "
        f"server at 127.0.0.1:5432, database {LOCAL_DATABASE} [env COLLAB_DATABASE_URL]",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data/cluster"),
        help="data directory shared by the nodes (uploads) (default: data/cluster)",
    )


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


async def _local_database() -> str:
    """The local PostgreSQL's ``collab_cluster`` database, created if missing."""
    try:
        conn = await asyncio.wait_for(asyncpg.connect(f"{LOCAL_POSTGRES}/postgres"), 3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        raise ClusterError(
            "a cluster needs PostgreSQL and none answers at 127.0.0.1:5432 as user postgres: "
            "pass --database-url postgresql+asyncpg://user:pass@host/db "
            "(or set COLLAB_DATABASE_URL)"
        ) from None
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", LOCAL_DATABASE)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{LOCAL_DATABASE}"')
    finally:
        await conn.close()
    return f"{LOCAL_POSTGRES.replace('postgresql://', 'postgresql+asyncpg://')}/{LOCAL_DATABASE}"


@dataclass
class Cluster:
    """The processes this launcher started, so it can stop exactly those."""

    args: argparse.Namespace
    redis: subprocess.Popen[bytes] | None = None
    redis_url: str = ""
    database_url: str = ""
    nodes: list[tuple[str, int, subprocess.Popen[bytes]]] = field(default_factory=list)

    def _collab(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "collab", *args]

    def start_redis(self) -> None:
        if self.args.redis_url:
            self.redis_url = self.args.redis_url
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise ClusterError(
                "redis-server is not installed: install Redis (e.g. apt install redis-server) "
                "or pass --redis-url redis://host:6379/0"
            )
        port = _free_port()
        self.redis = subprocess.Popen(  # noqa: S603 - our own arguments
            [
                *(binary, "--port", str(port), "--bind", "127.0.0.1"),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if not _wait_for_port(port, self.redis, 10):
            raise ClusterError(f"redis-server did not start on port {port}")
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        print(f"redis      {self.redis_url} (pid {self.redis.pid})", flush=True)

    def choose_database(self) -> None:
        url = self.args.database_url
        if url and not url.startswith("postgresql"):
            raise ClusterError(
                "a cluster needs PostgreSQL (nodes cannot share SQLite): "
                "pass --database-url postgresql+asyncpg://user:pass@host/db"
            )
        self.database_url = url or asyncio.run(_local_database())

    def migrate(self) -> None:
        result = subprocess.run(  # noqa: S603 - our own arguments
            self._collab("migrate", "--database-url", self.database_url),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ClusterError(result.stderr.strip().removeprefix("collab: "))
        print(result.stdout.strip(), flush=True)

    def start_nodes(self) -> None:
        count, base = self.args.nodes, self.args.base_port
        ports = list(range(base, base + count))
        taken = [p for p in ports if not _port_is_free("127.0.0.1", p)]
        if taken or not _port_is_free(self.args.host, self.args.port):
            busy = ", ".join(str(p) for p in taken) or str(self.args.port)
            raise ClusterError(
                f"port(s) {busy} are in use: choose others with --base-port / --port"
            )
        self.args.data_dir.mkdir(parents=True, exist_ok=True)
        public_url = f"http://{self._browser_host()}:{self.args.port}"
        for index, port in enumerate(ports, start=1):
            node_id = f"node-{index}"
            process = subprocess.Popen(  # noqa: S603 - our own arguments
                self._collab(
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--node-id",
                    node_id,
                    "--data-dir",
                    str(self.args.data_dir),
                    "--database-url",
                    self.database_url,
                    "--redis-url",
                    self.redis_url,
                    "--trusted-proxies",
                    TRUSTED,
                    "--public-url",
                    public_url,
                    # One link for the newcomer: a second node's would revoke the first.
                    "--first-run-link",
                    "true" if index == 1 else "false",
                ),
                # Own session: a Ctrl-C in the terminal reaches the launcher only, which
                # then stops the nodes in order.
                start_new_session=True,
            )
            self.nodes.append((node_id, port, process))
        for node_id, port, process in self.nodes:
            if not _wait_for_port(port, process, NODE_START_TIMEOUT):
                raise ClusterError(f"{node_id} did not start on port {port} (see its log above)")
            print(f"{node_id:<10} http://127.0.0.1:{port} (pid {process.pid})", flush=True)

    def _browser_host(self) -> str:
        host = self.args.host
        return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104

    def stop(self) -> None:
        """Nodes first (SIGTERM, wait, kill), then the Redis we started."""
        for _, _, process in self.nodes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + NODE_STOP_GRACE
        for _, _, process in self.nodes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            try:
                self.redis.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.redis.kill()
                self.redis.wait()


async def _run_balancer(cluster: Cluster) -> None:
    balancer = Balancer(
        [Upstream(node_id, f"http://127.0.0.1:{port}") for node_id, port, _ in cluster.nodes]
    )
    runner = web.AppRunner(balancer.app(), access_log=None, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, cluster.args.host, cluster.args.port)
        await site.start()
        print(
            f"balancer   http://{cluster._browser_host()}:{cluster.args.port} "
            f"<- open this (pid {os.getpid()}; Ctrl-C stops everything)",
            flush=True,
        )
        await stop.wait()
    finally:
        print("stopping: balancer, then nodes, then redis", flush=True)
        await runner.cleanup()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> None:
    """Start everything, serve until a signal, stop everything; raise ClusterError early."""
    if args.nodes < 1:
        raise ClusterError("--nodes must be 1 or more")
    cluster = Cluster(args)
    # A SIGTERM during start-up must still stop what was started.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        cluster.choose_database()
        cluster.start_redis()
        cluster.migrate()
        cluster.start_nodes()
        signal.signal(signal.SIGTERM, previous)
        asyncio.run(_run_balancer(cluster))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        cluster.stop()
