"""Chat fan-out benchmark: latency, loss and server cost per delivery, against a bare floor.

Starts its own ``collab serve`` node(s) (SQLite for one node, or PostgreSQL
with ``--db postgres``; PostgreSQL and a private Redis for ``--nodes 2`` and
``--nodes 3``, the clients spread over the nodes), creates users and rooms through the public
API, connects the clients from several worker processes (``loadgen.py``),
sends ``--rate`` messages/s for ``--seconds`` and measures, at every receiver,
publish-to-receive latency, loss and duplicates, plus the server's CPU and
peak RSS. Then it runs ``bare_fanout.py`` (no auth, no storage) under the same
load, so the cost of collab is also given relative to a bare aiohttp fan-out.

``--mode idle`` instead opens ``--sockets`` idle authenticated sockets on one
node and reports the server's RSS per socket.

Prints exactly one JSON line on stdout; progress goes to stderr. See
``bench/README.md``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(HERE), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import loadgen  # noqa: E402

from tests.servers import PostgresServer, RedisServer, free_port  # noqa: E402

PASSWORD = "bench-password-123"
ADMIN = "benchadmin"
TICKS = os.sysconf("SC_CLK_TCK")
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[bench {time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


# -- processes ---------------------------------------------------------------------------


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def runqueue_wait_seconds(pid: int) -> float:
    """Time the process's main thread (the event loop) was runnable but not running."""
    with open(f"/proc/{pid}/schedstat") as handle:
        return int(handle.read().split()[1]) / 1e9


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle, from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:9]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / TICKS


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _raise_nofile() -> None:
    loadgen.raise_nofile_limit()


class Cleanup:
    """Things to undo, last first; runs on success, error and Ctrl-C."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], Any]]] = []

    def add(self, name: str, step: Callable[[], Any]) -> None:
        self._steps.append((name, step))

    def run(self) -> None:
        while self._steps:
            name, step = self._steps.pop()
            try:
                step()
            except Exception as exc:
                say(f"cleanup of {name} failed: {exc!r}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def start_process(
    args: list[str], log_path: Path, cleanup: Cleanup, name: str
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,  # Ctrl-C reaches the bench, which stops it in order
            preexec_fn=_raise_nofile,
        )
    cleanup.add(name, lambda: stop_process(process))
    return process


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited ({process.returncode}):\n{log_tail(log_path)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready after 90 s:\n{log_tail(log_path)}")


class Collab:
    """One or more ``collab serve`` nodes sharing a database (and Redis for two)."""

    def __init__(self, nodes: int, workdir: Path, cleanup: Cleanup, db: str = "sqlite") -> None:
        self.nodes = nodes
        self.db = "postgres" if nodes > 1 else db
        self.workdir = workdir
        self.cleanup = cleanup
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        self.logs: list[Path] = []
        self.database_url = ""
        self.redis: RedisServer | None = None
        self.postgres: PostgresServer | None = None
        self.database = ""

    def settings(self, node: int) -> list[str]:
        data_dir = self.workdir / f"node{node}"
        data_dir.mkdir(exist_ok=True)
        flags = ["--data-dir", str(data_dir), "--log-level", "warning"]
        if self.database_url:
            flags += ["--database-url", self.database_url]
        if self.redis is not None:
            flags += ["--redis-url", self.redis.url]
        return flags

    def prepare_backends(self) -> None:
        if self.db == "sqlite":
            return
        self.postgres = PostgresServer.find_or_start()
        postgres = self.postgres
        self.cleanup.add("postgres", postgres.stop)  # stops it only if we started it
        self.database = asyncio.run(postgres.create_database())
        self.cleanup.add("database", lambda: asyncio.run(postgres.drop_database(self.database)))
        self.database_url = postgres.sqlalchemy_url(self.database)
        say(f"PostgreSQL database {self.database} on {postgres.admin_dsn.rsplit('@', 1)[-1]}")
        if self.nodes == 1:
            return
        self.redis = RedisServer()
        self.redis.start()
        self.cleanup.add("redis", self.redis.stop)
        say(f"redis-server on port {self.redis.port}")

    def redis_publishes(self) -> int:
        """How many PUBLISH commands the private Redis has run (0 without one)."""
        if self.redis is None:
            return 0
        client = redis.Redis.from_url(self.redis.url)
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        return int(stats.get("cmdstat_publish", {}).get("calls", 0))

    def tap(self) -> BusTap | None:
        """A listener on every channel of the private Redis (None without one)."""
        return BusTap(self.redis.url) if self.redis is not None else None

    def create_admin(self) -> None:
        password_file = self.workdir / "admin-password"
        password_file.write_text(PASSWORD + "\n")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "collab",
                "admin",
                "create-user",
                ADMIN,
                "--password-file",
                str(password_file),
                "--admin",
                *self.settings(0),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"create-user failed: {result.stderr.strip()}")

    async def start(self) -> None:
        for node in range(self.nodes):
            port = free_port()
            log_path = self.workdir / f"node{node}.log"
            process = start_process(
                [
                    sys.executable,
                    "-m",
                    "collab",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--node-id",
                    f"bench{node}",
                    *self.settings(node),
                ],
                log_path,
                self.cleanup,
                f"collab node {node}",
            )
            self.processes.append(process)
            self.ports.append(port)
            self.logs.append(log_path)
            # One after the other: each node applies migrations when it starts.
            await wait_ready(f"http://127.0.0.1:{port}/readyz", process, log_path)
            say(f"collab node {node} ready on port {port} (pid {process.pid})")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def base(self, node: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[node]}"

    def check_alive(self) -> None:
        for process, log_path in zip(self.processes, self.logs, strict=True):
            if process.poll() is not None:
                raise RuntimeError(f"server exited ({process.returncode}):\n{log_tail(log_path)}")

    def stop(self) -> None:
        for process in self.processes:
            stop_process(process)

    async def restart(self) -> None:
        """Fresh processes on the same database (new ports)."""
        self.stop()
        self.processes, self.ports, self.logs = [], [], []
        await self.start()

    def db_backend_pids(self) -> list[int]:
        if self.postgres is None:
            return []
        import asyncpg

        async def query() -> list[int]:
            conn = await asyncpg.connect(self.postgres.admin_dsn)
            try:
                rows = await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.database
                )
            finally:
                await conn.close()
            return [row["pid"] for row in rows]

        return asyncio.run(query())


class BusTap:
    """Counts every PUBLISH on the bench's Redis by topic and event type.

    A ``PSUBSCRIBE *`` connection in a thread receives one copy of each publish,
    whatever its channel and however many nodes listen, so the counts explain
    ``redis_publishes``: ``room:* chat.message`` is one per chat message,
    ``presence:*`` one per published presence change, ``user:* notify`` one per
    notified recipient, and so on.
    """

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._pubsub.psubscribe(**{"*": self._on_message})
        self._thread = self._pubsub.run_in_thread(
            sleep_time=0.05, daemon=True, exception_handler=self._failed
        )

    @staticmethod
    def kind(topic: str, payload: bytes) -> str:
        """``room:* chat.message``: the topic with its id starred, and the event type."""
        prefix, colon, _ = topic.partition(":")
        kind = f"{prefix}:*" if colon else topic
        try:
            event = json.loads(payload)
        except ValueError:
            return kind
        if isinstance(event, dict) and isinstance(event.get("type"), str):
            return f"{kind} {event['type']}"
        return kind

    def _failed(self, exc: BaseException, pubsub: Any, thread: Any) -> None:
        say(f"redis tap failed: {exc!r}")
        thread.stop()

    def _on_message(self, message: dict[str, Any]) -> None:
        channel = message["channel"]
        topic = channel.decode() if isinstance(channel, bytes) else str(channel)
        key = self.kind(topic, message["data"])
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def close(self) -> None:
        self._thread.stop()
        self._thread.join(timeout=5)
        self._pubsub.close()
        self._client.close()


def count_difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    diff = {k: v - before.get(k, 0) for k, v in after.items()}
    return dict(sorted(((k, v) for k, v in diff.items() if v), key=lambda kv: (-kv[1], kv[0])))


# -- set-up through the public API ----------------------------------------------------------


class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=64),
            timeout=aiohttp.ClientTimeout(total=120),
        )

    async def call(
        self, method: str, path: str, expect: int, headers: dict[str, str], body: Any = None
    ) -> tuple[Any, aiohttp.ClientResponse]:
        for attempt in range(5):
            async with self.http.request(
                method, self.base + path, json=body, headers=headers
            ) as response:
                data = await response.json(content_type=None)
                if response.status == expect:
                    return data, response
                if response.status not in (429, 503) or attempt == 4:
                    raise RuntimeError(f"{method} {path}: {response.status} {data}")
            await asyncio.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    async def sign_in(self, username: str) -> dict[str, str]:
        data, response = await self.call(
            "POST", "/api/v1/login", 200, {}, {"username": username, "password": PASSWORD}
        )
        cookie = response.cookies["collab_session"].value
        return {"Cookie": f"collab_session={cookie}", "X-CSRF-Token": data["csrf_token"]}

    async def close(self) -> None:
        await self.http.close()


async def gather_limited(limit: int, jobs: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(job: Any) -> Any:
        async with gate:
            return await job

    return await asyncio.gather(*(run(job) for job in jobs))


def room_members(room: int, room_size: int, clients: int) -> list[int]:
    """Client indices in room ``room``: consecutive blocks, wrapping round."""
    return [(room * room_size + j) % clients for j in range(room_size)]


async def set_up(
    base: str, users: int, rooms: int, room_size: int
) -> tuple[list[tuple[int, str, str]], list[int], dict[str, float]]:
    """Users (id, name, API token) and room ids, made the way a script would make them.

    Each user accepts an invitation (one password hash, and it signs the user
    in) and makes a personal API token with that session: half the argon2 work
    of creating the user and then signing in.
    """
    times: dict[str, float] = {}
    api = Api(base)
    try:
        started = time.monotonic()
        admin = await api.sign_in(ADMIN)
        codes = await gather_limited(
            8,
            [
                api.call("POST", "/api/v1/invitations", 201, admin, {"role": "member"})
                for _ in range(users)
            ],
        )
        times["invitations_s"] = time.monotonic() - started
        say(f"{users} invitations in {times['invitations_s']:.1f} s")

        progress = {"done": 0}

        async def accept(index: int, code: str) -> tuple[int, str, str]:
            name = f"bench{index:05d}"
            data, response = await api.call(
                "POST",
                f"/api/v1/invitations/{code}/accept",
                201,
                {},
                {"username": name, "password": PASSWORD},
            )
            session = {
                "Cookie": f"collab_session={response.cookies['collab_session'].value}",
                "X-CSRF-Token": data["csrf_token"],
            }
            token, _ = await api.call("POST", "/api/v1/tokens", 201, session, {"name": "bench"})
            progress["done"] += 1
            if progress["done"] % 200 == 0:
                say(f"  {progress['done']}/{users} users")
            return data["user"]["id"], name, token["token"]

        started = time.monotonic()
        # The server hashes in a thread pool; a few at a time keep both cores busy.
        people = await gather_limited(
            6, [accept(i, invitation["code"]) for i, (invitation, _) in enumerate(codes)]
        )
        times["users_s"] = time.monotonic() - started
        say(f"{users} users with tokens in {times['users_s']:.1f} s")

        started = time.monotonic()

        async def make_room(room: int) -> int:
            members = room_members(room, room_size, users)
            owner = {"Authorization": f"Bearer {people[members[0]][2]}"}
            body = {
                "kind": "channel",
                "name": f"bench-{room}",
                "members": [people[m][1] for m in members[1:]],
            }
            data, _ = await api.call("POST", "/api/v1/rooms", 201, owner, body)
            made = data["room"]
            if made["member_count"] != len(set(members)):
                raise RuntimeError(f"room {room} has {made['member_count']} members")
            return int(made["id"])

        room_ids = await gather_limited(4, [make_room(r) for r in range(rooms)])
        times["rooms_s"] = time.monotonic() - started
        say(f"{rooms} rooms of {room_size} in {times['rooms_s']:.1f} s")
        return people, room_ids, times
    finally:
        await api.close()


# -- driving the workers ---------------------------------------------------------------------


class Workers:
    def __init__(self, specs: list[dict[str, Any]], cleanup: Cleanup) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.processes: list[Any] = []
        for spec in specs:
            mine, theirs = context.Pipe()
            process = context.Process(
                target=loadgen.worker_main, args=(spec, theirs), name=f"loadgen-{spec['worker']}"
            )
            process.start()
            theirs.close()
            self.pipes.append(mine)
            self.processes.append(process)
        cleanup.add("workers", self.stop)

    def broadcast(self, *message: Any) -> None:
        for pipe in self.pipes:
            pipe.send(message)

    def gather(
        self, kind: str, timeout: float, tick: Callable[[], None] | None = None
    ) -> list[tuple[Any, ...]]:
        """One ``kind`` reply from every worker; calls ``tick`` about every 0.1 s meanwhile."""
        replies: dict[int, tuple[Any, ...]] = {}
        deadline = time.monotonic() + timeout
        while len(replies) < len(self.pipes):
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers did not answer {kind!r} within {timeout:.0f} s")
            waiting = [p for i, p in enumerate(self.pipes) if i not in replies]
            for pipe in multiprocessing.connection.wait(waiting, timeout=0.1):
                index = self.pipes.index(pipe)
                try:
                    message = pipe.recv()
                except EOFError:
                    raise RuntimeError(f"worker {index} died") from None
                if message[0] != kind:
                    raise RuntimeError(f"worker {index} said {message[0]!r}, expected {kind!r}")
                replies[index] = message[1:]
            if tick is not None:
                tick()
        return [replies[i] for i in range(len(self.pipes))]

    def stop(self) -> None:
        """Closing its pipe ends a worker (it closes its sockets and exits); stragglers
        are terminated, then killed."""
        for pipe in self.pipes:
            pipe.close()
        deadline = time.monotonic() + 10
        for process in self.processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)


def percentile(ordered: list[int], fraction: float) -> float:
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank] / 1e6


def run_load(
    target: str,
    clients: list[tuple[int, str, str | None, int, str]],
    members: list[list[int]],
    room_ids: list[int],
    server_pids: list[int],
    args: argparse.Namespace,
    cleanup: Cleanup,
    extra_pids: Callable[[], list[int]] | None = None,
    mark: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Connect, warm up, send for ``args.seconds``, drain, and measure one target.

    ``mark`` is called with ``"window"`` as the measured window starts and with
    ``"end"`` when its deliveries have drained."""
    workers = args.workers
    specs: list[dict[str, Any]] = []
    for w in range(workers):
        send_rooms = []
        for position, (room_id, room) in enumerate(zip(room_ids, members, strict=True)):
            owner = position % workers
            if not any(m % workers == owner for m in room):
                owner = room[0] % workers
            if owner == w:
                local = [m for m in room if m % workers == w]
                send_rooms.append((room_id, position, local))
        specs.append(
            {
                "worker": w,
                "target": target,
                "clients": [c for c in clients if c[0] % workers == w],
                "send_rooms": send_rooms,
            }
        )
    pool = Workers(specs, cleanup)
    started = time.monotonic()
    ready = pool.gather("ready", timeout=120 + len(clients) / 20)
    connect_s = time.monotonic() - started
    connected = sum(r[0]["connected"] for r in ready)
    failures: dict[str, int] = {}
    for r in ready:
        for name, count in r[0]["failures"].items():
            failures[name] = failures.get(name, 0) + count
    say(f"[{target}] {connected}/{len(clients)} sockets in {connect_s:.1f} s {failures or ''}")

    def expected(summaries: list[tuple[Any, ...]]) -> int:
        acked: dict[int, int] = {}
        for (summary,) in summaries:
            for room, count in summary["acked"].items():
                acked[room] = acked.get(room, 0) + count
        sizes = {room_id: len(set(room)) for room_id, room in zip(room_ids, members, strict=True)}
        return sum(count * sizes[room] for room, count in acked.items())

    def drain(want: int, timeout: float) -> tuple[int, list[float]]:
        deadline = time.monotonic() + timeout
        while True:
            pool.broadcast("count")
            counts = pool.gather("count", timeout=30)
            got = sum(c[0] for c in counts)
            if got >= want or time.monotonic() > deadline:
                return got, [c[1] for c in counts]
            time.sleep(0.1)

    pool.broadcast("warmup", args.warmup)
    warm = pool.gather("warm", timeout=60)
    got, _ = drain(expected(warm), 15)
    say(f"[{target}] warm-up: {got}/{expected(warm)} deliveries")

    peak_rss = dict.fromkeys(server_pids, 0)

    def sample() -> None:
        for pid in server_pids:
            with contextlib.suppress(OSError):
                peak_rss[pid] = max(peak_rss[pid], rss_kb(pid))

    others = extra_pids() if extra_pids else []
    cpu_before = {pid: cpu_split(pid) for pid in server_pids}
    waited_before = {pid: runqueue_wait_seconds(pid) for pid in server_pids}
    machine_before = machine_busy_seconds()
    bench_before = time.process_time()
    other_before = {}
    for pid in others:
        with contextlib.suppress(OSError):
            other_before[pid] = cpu_seconds(pid)
    if mark is not None:
        mark("window")
    window_start = time.monotonic()
    start_ns = time.time_ns() + 300_000_000
    pool.broadcast("go", start_ns, args.seconds, args.rate, len(room_ids))
    sent = pool.gather("sent", timeout=args.seconds + 60, tick=sample)
    want = expected(sent)
    got, worker_cpu = drain(want, 15)
    if mark is not None:
        mark("end")
    sample()
    window_s = time.monotonic() - window_start
    cpu_after = {pid: cpu_split(pid) for pid in server_pids}
    waited = sum(runqueue_wait_seconds(pid) - waited_before[pid] for pid in server_pids)
    machine_s = machine_busy_seconds() - machine_before
    bench_s = time.process_time() - bench_before
    other_cpu = 0.0
    for pid in set(others) | set(extra_pids() if extra_pids else []):
        with contextlib.suppress(OSError):
            other_cpu += cpu_seconds(pid) - other_before.get(pid, 0.0)
    pool.broadcast("finish")
    results = [r[0] for r in pool.gather("result", timeout=60)]
    pool.stop()

    latencies: list[int] = []
    for r in results:
        chunk = array.array("q")
        chunk.frombytes(r["latencies_ns"])
        latencies.extend(chunk)
    latencies.sort()
    received = sum(r["received"] for r in results)
    received_all = received + sum(r["received_warmup"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for code, count in r["errors"].items():
            errors[code] = errors.get(code, 0) + count
    server_user = sum(cpu_after[p][0] - cpu_before[p][0] for p in server_pids)
    server_sys = sum(cpu_after[p][1] - cpu_before[p][1] for p in server_pids)
    server_cpu = server_user + server_sys
    loadgen_cpu = [c - r["cpu_at_go_s"] for c, r in zip(worker_cpu, results, strict=True)]
    messages = sum(sum(r["acked"].values()) for r in results) - sum(
        sum(w[0]["acked"].values()) for w in warm
    )
    measured = {
        "connected": connected,
        "connect_s": round(connect_s, 1),
        "messages": messages,
        "deliveries": received,
        "expected": want,
        "delivered_per_s": round(received / args.seconds, 1),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p95_ms": round(percentile(latencies, 0.95), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(latencies[-1] / 1e6, 2) if latencies else None,
        "lost": want - received_all,
        "dup": sum(r["dup"] for r in results),
        "disconnects": sum(r["disconnects"] for r in results),
        "send_errors": errors,
        "unanswered": sum(r["unanswered"] for r in results),
        "send_lag_max_ms": round(max(r["send_lag_max_s"] for r in results) * 1000, 1),
        "cpu_s": round(server_cpu, 2),
        "cpu_user_s": round(server_user, 2),
        "cpu_sys_s": round(server_sys, 2),
        # The event loop thread was ready to run but had no CPU for this long.
        "runq_wait_s": round(waited, 2),
        "us_per_delivery": round(server_cpu * 1e6 / received, 2) if received else None,
        "rss_mb": round(max(peak_rss.values()) / 1024, 1),
        "rss_mb_per_node": [round(peak_rss[p] / 1024, 1) for p in server_pids],
        "window_s": round(window_s, 1),
        "loadgen_cpu_s": round(sum(loadgen_cpu), 2),
        "loadgen_core_max": round(max(loadgen_cpu) / window_s, 2),
        "other_cpu_s": round(other_cpu, 2),
        # Busy CPU on the machine that none of the processes above account for:
        # other jobs, or kernel work not charged to a process. Above ~0.2 the
        # numbers of this run are disturbed.
        "foreign_cores": round(
            (machine_s - server_cpu - sum(loadgen_cpu) - bench_s - other_cpu) / window_s, 2
        ),
    }
    say(f"[{target}] {json.dumps(measured)}")
    return measured


# -- the two modes ------------------------------------------------------------------------------


def fanout(args: argparse.Namespace, workdir: Path, cleanup: Cleanup) -> dict[str, Any]:
    if args.room_size > args.clients:
        raise SystemExit("--room-size cannot be larger than --clients")
    per_user = args.rate / args.rooms / args.room_size * args.workers
    if per_user > 15:
        say(
            f"warning: each sender sends ~{per_user:.0f} commands/s; the server allows "
            "20/s per user (burst 60); use larger rooms or fewer messages"
        )
    members = [room_members(r, args.room_size, args.clients) for r in range(args.rooms)]

    collab = Collab(args.nodes, workdir, cleanup, args.db)
    setup_started = time.monotonic()
    collab.prepare_backends()
    collab.create_admin()
    asyncio.run(collab.start())
    people, room_ids, times = asyncio.run(
        set_up(collab.base(0), args.clients, args.rooms, args.room_size)
    )
    setup_s = time.monotonic() - setup_started
    say(f"set-up took {setup_s:.1f} s")
    urls = [f"ws://127.0.0.1:{port}/ws" for port in collab.ports]
    clients = []
    for index in range(args.clients):
        uid, name, token = people[index]
        # Spread each worker's clients over the nodes too.
        url = urls[(index // args.workers) % len(urls)]
        clients.append((index, url, token, uid, name))

    def extra_pids() -> list[int]:
        pids = collab.db_backend_pids()
        if collab.redis is not None and collab.redis.process is not None:
            pids.append(collab.redis.process.pid)
        return pids

    tap = collab.tap()
    if tap is not None:
        cleanup.add("redis tap", tap.close)
    publishes: dict[str, int] = {}
    by_kind: dict[str, dict[str, int]] = {}

    def mark(point: str) -> None:
        if tap is not None:
            time.sleep(0.2)  # the tap's thread has read what was published so far
            by_kind[point] = tap.snapshot()
        publishes[point] = collab.redis_publishes()

    mark("connect")
    server = run_load(
        "collab",
        clients,
        members,
        room_ids,
        collab.pids,
        args,
        cleanup,
        extra_pids if collab.db == "postgres" else None,
        mark,
    )
    collab.check_alive()
    collab.stop()

    bare: dict[str, Any] = {}
    if not args.no_bare:
        port = free_port()
        log_path = workdir / "bare.log"
        process = start_process(
            [sys.executable, str(HERE / "bare_fanout.py"), "--port", str(port)],
            log_path,
            cleanup,
            "bare server",
        )
        asyncio.run(wait_ready_ws(port, process, log_path))
        bare_clients = []
        for index in range(args.clients):
            rooms = [room_ids[r] for r, room in enumerate(members) if index in room]
            url = f"ws://127.0.0.1:{port}/ws?rooms={','.join(map(str, rooms))}"
            bare_clients.append((index, url, None, index + 1, f"bench{index:05d}"))
        bare = run_load("bare", bare_clients, members, room_ids, [process.pid], args, cleanup)
        stop_process(process)

    ratio = None
    if bare.get("us_per_delivery") and server.get("us_per_delivery"):
        ratio = round(server["us_per_delivery"] / bare["us_per_delivery"], 2)
    result: dict[str, Any] = {
        "bench": "chat_fanout",
        "mode": "fanout",
        "nodes": args.nodes,
        "clients": args.clients,
        "rooms": args.rooms,
        "room_size": args.room_size,
        "rate": args.rate,
        "seconds": args.seconds,
        "workers": args.workers,
        "setup_s": round(setup_s, 1),
        **{k: round(v, 1) for k, v in times.items()},
    }
    for key in (
        "connect_s",
        "messages",
        "expected",
        "deliveries",
        "delivered_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "lost",
        "dup",
        "disconnects",
        "send_errors",
        "unanswered",
        "send_lag_max_ms",
    ):
        result[key] = server[key]
    result["server_cpu_s"] = server["cpu_s"]
    result["server_cpu_sys_s"] = server["cpu_sys_s"]
    result["server_runq_wait_s"] = server["runq_wait_s"]
    result["server_us_per_delivery"] = server["us_per_delivery"]
    result["server_rss_mb"] = server["rss_mb"]
    if args.nodes > 1:
        result["server_rss_mb_per_node"] = server["rss_mb_per_node"]
        # Redis PUBLISH calls in the measured window per chat message acknowledged in
        # it: one per event, not one per recipient. The breakdown by topic and event
        # type says what each publish was (presence, typing, notifications...). An
        # overloaded server (unanswered > 0) also publishes messages it never acked.
        sent = server["messages"]
        total = publishes["end"] - publishes["window"]
        kinds = count_difference(by_kind["end"], by_kind["window"])
        chat = kinds.get("room:* chat.message", 0)
        result["redis_publishes"] = total
        result["redis_publishes_per_message"] = round(total / sent, 2) if sent else None
        result["redis_chat_publishes_per_message"] = round(chat / sent, 2) if sent else None
        result["redis_publishes_by_kind"] = kinds
        # Before the window, while the sockets connected and warmed up: not chat.
        result["redis_connect_publishes_by_kind"] = count_difference(
            by_kind["window"], by_kind["connect"]
        )
    if collab.db == "postgres":
        result["db"] = "postgres"
        result["redis_and_db_cpu_s"] = server["other_cpu_s"]
    else:
        result["db"] = "sqlite"
    result["loadgen_cpu_s"] = server["loadgen_cpu_s"]
    result["loadgen_core_max"] = server["loadgen_core_max"]
    result["foreign_cores"] = server["foreign_cores"]
    if bare:
        result["bare_us_per_delivery"] = bare["us_per_delivery"]
        result["bare_cpu_s"] = bare["cpu_s"]
        result["bare_cpu_sys_s"] = bare["cpu_sys_s"]
        result["bare_runq_wait_s"] = bare["runq_wait_s"]
        result["bare_foreign_cores"] = bare["foreign_cores"]
        result["bare_delivered_per_s"] = bare["delivered_per_s"]
        result["bare_p50_ms"] = bare["p50_ms"]
        result["bare_p99_ms"] = bare["p99_ms"]
        result["bare_lost"] = bare["lost"]
        result["bare_dup"] = bare["dup"]
        result["bare_rss_mb"] = bare["rss_mb"]
        result["bare_loadgen_core_max"] = bare["loadgen_core_max"]
    else:
        result["bare_us_per_delivery"] = None
    result["ratio_to_bare"] = ratio
    result["targets_met"] = {
        "no_loss_no_dup": server["lost"] == 0 and server["dup"] == 0,
        "p99_under_200ms": server["p99_ms"] < 200,
        "ratio_to_bare_at_most_2": ratio is not None and ratio <= 2.0,
    }
    return result


async def wait_ready_ws(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"bare server exited:\n{log_tail(log_path)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
                    await ws.receive(timeout=2)
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError("bare server not ready after 30 s")


def idle(args: argparse.Namespace, workdir: Path, cleanup: Cleanup) -> dict[str, Any]:
    users = min(args.clients, args.sockets)
    room_size = min(args.room_size, users)
    collab = Collab(1, workdir, cleanup)
    setup_started = time.monotonic()
    collab.create_admin()
    asyncio.run(collab.start())
    people, _room_ids, _times = asyncio.run(set_up(collab.base(0), users, args.rooms, room_size))
    setup_s = time.monotonic() - setup_started
    say(f"set-up took {setup_s:.1f} s")
    # A fresh process, so that what set-up left in the heap (1,000 HTTP requests and
    # password hashes) is neither counted nor reused by the sockets.
    asyncio.run(collab.restart())
    pid = collab.pids[0]
    time.sleep(2)
    rss_before = rss_kb(pid)
    url = f"ws://127.0.0.1:{collab.ports[0]}/ws"
    clients = []
    for index in range(args.sockets):
        uid, name, token = people[index % users]
        clients.append((index, url, token, uid, name))
    specs = [
        {
            "worker": w,
            "target": "collab",
            "clients": [c for c in clients if c[0] % args.workers == w],
            "send_rooms": [],
        }
        for w in range(args.workers)
    ]
    cpu_before = cpu_seconds(pid)
    pool = Workers(specs, cleanup)
    started = time.monotonic()
    ready = pool.gather("ready", timeout=300 + args.sockets / 20)
    connect_s = time.monotonic() - started
    connected = sum(r[0]["connected"] for r in ready)
    say(f"{connected}/{args.sockets} sockets open in {connect_s:.1f} s")
    connect_cpu = cpu_seconds(pid) - cpu_before
    samples = []
    for _ in range(10):  # let the connect bursts' garbage settle, then read a steady value
        time.sleep(0.5)
        samples.append(rss_kb(pid))
    rss_after = samples[-1]
    open_now = asyncio.run(open_sockets_metric(collab.base(0)))
    collab.check_alive()
    pool.broadcast("finish")
    results = [r[0] for r in pool.gather("result", timeout=60)]
    pool.stop()
    per_socket = (rss_after - rss_before) / connected if connected else None
    return {
        "bench": "chat_fanout",
        "mode": "idle",
        "nodes": 1,
        "sockets": args.sockets,
        "users": users,
        "rooms": args.rooms,
        "room_size": room_size,
        "workers": args.workers,
        "setup_s": round(setup_s, 1),
        "connect_s": round(connect_s, 1),
        "connected": connected,
        "server_open_sockets": open_now,
        "disconnects": sum(r["disconnects"] for r in results),
        "connect_cpu_ms_per_socket": round(connect_cpu * 1000 / connected, 2)
        if connected
        else None,
        "server_rss_mb_before": round(rss_before / 1024, 1),
        "server_rss_mb": round(rss_after / 1024, 1),
        "rss_per_socket_kb": round(per_socket, 1) if per_socket is not None else None,
        "targets_met": {"idle_socket_at_most_40kb": per_socket is not None and per_socket <= 40},
    }


async def open_sockets_metric(base: str) -> int | None:
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("collab_websockets_open "):
                return int(float(line.split()[1]))
    return None


EXAMPLES = """\
examples:
  chat_fanout.py                           1,000 clients, 10 rooms of 100, 100 msg/s, 30 s
  chat_fanout.py --db postgres             the same on one node with PostgreSQL
  chat_fanout.py --nodes 3                 three nodes through Redis and PostgreSQL
  chat_fanout.py --nodes 2 --clients 100 --rooms 2 --room-size 50 --rate 20 --seconds 5

With --nodes 2 or 3 the JSON line also has redis_publishes_per_message (PUBLISH
calls in the measured window per chat message) and redis_publishes_by_kind (the
same calls by topic and event type, e.g. "room:* chat.message"), plus
redis_connect_publishes_by_kind for the connect and warm-up before the window.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    parser.add_argument("--mode", choices=["fanout", "idle"], default="fanout")
    parser.add_argument("--clients", type=int, default=1000, help="users, one socket each")
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--room-size", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s in total")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=int, default=2, help="warm-up messages per room")
    parser.add_argument(
        "--nodes",
        type=int,
        choices=[1, 2, 3],
        default=1,
        help="collab node processes; 2 or 3 share PostgreSQL and a private redis-server "
        "and the clients are spread over them (default 1)",
    )
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="database of a single node (several nodes always use PostgreSQL); compare "
        "--nodes 2/3 with --nodes 1 --db postgres to see what the Redis hop adds",
    )
    parser.add_argument("--sockets", type=int, default=10_000, help="idle mode: sockets")
    parser.add_argument("--workers", type=int, default=4, help="load generator processes")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare server run")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = loadgen.raise_nofile_limit()
    if args.mode == "idle" and limit < args.sockets + 1000:
        say(f"warning: open-file limit is {limit}; {args.sockets} sockets may not fit")

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    cleanup = Cleanup()
    workdir = Path(tempfile.mkdtemp(prefix="collab-bench-"))
    if not args.keep:
        cleanup.add("temp dir", lambda: shutil.rmtree(workdir, ignore_errors=True))
    else:
        say(f"keeping {workdir}")
    try:
        result = (
            idle(args, workdir, cleanup) if args.mode == "idle" else fanout(args, workdir, cleanup)
        )
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
        return 130
    finally:
        cleanup.run()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
