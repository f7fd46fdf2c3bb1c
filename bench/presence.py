"""Presence benchmark: idle cost of many people online, and the cost and speed of changes.

Starts its own ``collab serve`` node (SQLite), puts ``--users`` users in rooms
so that each shares a room with about ``--peers`` others, connects one socket
per user from several worker processes, and measures:

1. **idle**: with everyone online and nobody acting (only heartbeats and the
   presence timers run), the server's CPU as a percentage of one core;
2. **changes**: ``presence.set`` alternately ``busy`` / ``available`` for
   users taken in a shuffled order, ``--rate`` changes/s for ``--seconds``;
   each change's send time rides in its ``text`` (``t=<time_ns>``), so every
   receiver of the ``presence`` event knows the change-to-delivery latency.
   Reports server CPU per change, latency percentiles, events delivered per
   change and loss.

Users and their API tokens are written straight into the database before the
node starts (one argon2 hash shared by all), so set-up takes seconds, not the
minutes that 5,000 invitations would; rooms are made through the public API.

Reuses ``chat_fanout.py`` (processes, CPU from ``/proc``, set-up helpers, the
worker pool) and ``loadgen.py`` (the worker's connect and control loop).
Prints exactly one JSON line on stdout; progress goes to stderr. See
``bench/README.md``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import msgspec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(HERE), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import chat_fanout as cf  # noqa: E402
import loadgen  # noqa: E402

IDLE_TARGET_PCT = 2.0
P99_TARGET_MS = 200.0
TARGET_RATE = 50.0


# -- the worker (a child process) ------------------------------------------------------------


class _Err(msgspec.Struct):
    code: str = ""


class PresenceFrame(msgspec.Struct):
    """The few members a client looks at; the rest (snapshots, answers' bodies) is skipped."""

    type: str = ""
    user: int = 0
    text: str | None = None
    re: str | None = None
    ok: bool = False
    error: _Err | None = None


_decode = msgspec.json.Decoder(PresenceFrame).decode


def schedule(users: int, seed: int) -> list[int]:
    """The order in which users change: a shuffled round of everyone, repeated, so one
    user changes again only after all the others (no coalescing of one user's changes,
    nowhere near the per-user command limit)."""
    order = list(range(users))
    random.Random(seed).shuffle(order)
    return order


class PresenceWorker(loadgen.Worker):
    """``loadgen.Worker``'s connect and control loop, with presence sends and receives.

    ``acked`` counts the changes the server answered ``ok``, per changed user
    (client index); ``received`` counts measured ``presence`` events.
    """

    def __init__(self, spec: dict[str, Any], pipe: Any) -> None:
        super().__init__(spec, pipe)
        self.seen_changes: set[tuple[int, str]] = set()
        self.other_events = 0

    async def read_forever(self, client: loadgen.Client) -> None:
        ws = client.ws
        assert ws is not None
        seen = self.seen_changes
        latencies = self.latencies
        text_type = aiohttp.WSMsgType.TEXT
        while True:
            message = await ws.receive()
            if message.type is not text_type:
                if message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    if not self.stopping:
                        self.disconnects += 1
                    return
                continue
            now = time.time_ns()
            frame = _decode(message.data)
            if frame.re is not None:
                self.on_presence_answer(frame)
                continue
            text = frame.text
            if frame.type == "presence" and text is not None and text.startswith("t="):
                key = (client.index, text)
                if key in seen:
                    self.dup += 1
                    continue
                seen.add(key)
                self.received += 1
                latencies.append(now - int(text[2:]))
            else:
                self.other_events += 1

    def on_presence_answer(self, frame: PresenceFrame) -> None:
        if frame.re == "p" or frame.re is None:
            return
        self.answered += 1
        if self.answered >= self.sent:
            self._all_answered.set()
        if frame.ok:
            index = int(frame.re[1:].split("-", 1)[0])
            self.acked[index] = self.acked.get(index, 0) + 1
        else:
            code = frame.error.code if frame.error is not None else "unknown"
            self.errors[code] = self.errors.get(code, 0) + 1

    async def go(self, start_ns: int, seconds: float, rate: float, users: int) -> None:
        """Change k of round(rate * seconds) is due at start + k/rate and is made by
        user ``order[k mod users]``, on that user's own socket (the worker holding it
        sends). Open loop: a late change goes out at once."""
        start = start_ns / 1e9
        total = round(rate * seconds)
        order = schedule(users, self.spec["seed"])
        busy: dict[int, bool] = {}
        for k in range(total):
            index = order[k % users]
            client = self.by_index.get(index)
            if client is None:
                continue
            ws = client.ws
            if ws is None or ws.closed:
                self.errors["sender_closed"] = self.errors.get("sender_closed", 0) + 1
                continue
            delay = start + k / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.send_lag_max = max(self.send_lag_max, -delay)
            status = "available" if busy.get(index) else "busy"
            busy[index] = not busy.get(index, False)
            self.sent += 1
            await ws.send_str(
                f'{{"id":"c{index}-{k}","type":"presence.set","status":"{status}",'
                f'"text":"t={time.time_ns()}"}}'
            )
        await self.wait_answers()

    def result(self) -> dict[str, Any]:
        return {**super().result(), "other_events": self.other_events}


def worker_main(spec: dict[str, Any], pipe: Any) -> None:
    """Entry point of a worker process (started by ``chat_fanout.Workers``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent cleans up on Ctrl-C
    loadgen.raise_nofile_limit()
    asyncio.run(PresenceWorker(spec, pipe).run())


def start_workers(specs: list[dict[str, Any]], cleanup: cf.Cleanup) -> cf.Workers:
    # chat_fanout.Workers starts loadgen.worker_main; point it at this module's worker.
    with mock.patch.object(loadgen, "worker_main", worker_main):
        return cf.Workers(specs, cleanup)


# -- set-up -------------------------------------------------------------------------------------


def rooms_of(users: int, peers: int) -> list[list[int]]:
    """Disjoint rooms of about ``peers + 1`` users (sizes differ by at most one)."""
    count = max(1, round(users / (peers + 1)))
    return [list(range(r * users // count, (r + 1) * users // count)) for r in range(count)]


async def insert_users(database_url: str, users: int) -> list[tuple[int, str, str]]:
    """Users and personal API tokens written straight into the database (the node is not
    running): one argon2 hash of the bench password, made once and shared, instead of
    one per user. Returns (id, username, token) per user."""
    from argon2 import PasswordHasher

    from collab.accounts import secrets
    from collab.store import open_store
    from collab.store import tokens as token_sql
    from collab.store import users as user_sql

    password_hash = PasswordHasher().hash(cf.PASSWORD)  # the server's own argon2 settings
    now = int(time.time() * 1000)
    store = open_store(database_url)
    people = []
    try:
        async with store.transaction() as conn:
            for index in range(users):
                name = f"pres{index:05d}"
                user = await user_sql.insert(
                    conn,
                    username=name,
                    display_name=name,
                    email=None,
                    role="member",
                    password_hash=password_hash,
                    now=now,
                )
                token = secrets.new_api_token()
                await token_sql.insert(
                    conn,
                    token_hash=secrets.digest(token),
                    user_id=user.id,
                    name="bench",
                    prefix=token[: len(secrets.API_TOKEN_PREFIX) + 4],
                    now=now,
                    expires_at=None,
                )
                people.append((user.id, name, token))
    finally:
        await store.close()
    return people


async def make_rooms(
    base: str, people: list[tuple[int, str, str]], rooms: list[list[int]]
) -> list[int]:
    """Each room is created through the public API by its first member."""
    api = cf.Api(base)

    async def make(number: int, members: list[int]) -> int:
        owner = {"Authorization": f"Bearer {people[members[0]][2]}"}
        body = {
            "kind": "channel",
            "name": f"presence-{number}",
            "members": [people[m][1] for m in members[1:]],
        }
        data, _ = await api.call("POST", "/api/v1/rooms", 201, owner, body)
        if data["room"]["member_count"] != len(members):
            raise RuntimeError(f"room {number} has {data['room']['member_count']} members")
        return int(data["room"]["id"])

    try:
        return await cf.gather_limited(4, [make(n, m) for n, m in enumerate(rooms)])
    finally:
        await api.close()


async def read_metric(base: str, name: str) -> float | None:
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


# -- measuring ------------------------------------------------------------------------------------


class Window:
    """CPU of the server, the workers, the bench and the whole machine over a stretch of time."""

    def __init__(self, pid: int, pool: cf.Workers) -> None:
        self.pid = pid
        self.pool = pool
        self.started = time.monotonic()
        self.server = cf.cpu_split(pid)
        self.runq = cf.runqueue_wait_seconds(pid)
        self.machine = cf.machine_busy_seconds()
        self.bench = time.process_time()
        self.workers = self.worker_counts()[1]

    def worker_counts(self) -> tuple[int, list[float]]:
        """Measured deliveries so far (all workers) and each worker's CPU seconds."""
        self.pool.broadcast("count")
        replies = self.pool.gather("count", timeout=30)
        return sum(r[0] for r in replies), [r[1] for r in replies]

    def end(self, worker_cpu: list[float] | None = None) -> dict[str, float]:
        wall = time.monotonic() - self.started
        user, system = (a - b for a, b in zip(cf.cpu_split(self.pid), self.server, strict=True))
        machine = cf.machine_busy_seconds() - self.machine
        bench = time.process_time() - self.bench
        if worker_cpu is None:
            worker_cpu = self.worker_counts()[1]
        loadgen_cpu = [a - b for a, b in zip(worker_cpu, self.workers, strict=True)]
        server = user + system
        return {
            "wall_s": wall,
            "cpu_s": server,
            "cpu_user_s": user,
            "cpu_sys_s": system,
            "runq_wait_s": cf.runqueue_wait_seconds(self.pid) - self.runq,
            "loadgen_cpu_s": sum(loadgen_cpu),
            "loadgen_core_max": max(loadgen_cpu) / wall,
            # Busy CPU on the machine none of our processes account for (other jobs).
            "foreign_cores": (machine - server - sum(loadgen_cpu) - bench) / wall,
        }


def run(args: argparse.Namespace, workdir: Path, cleanup: cf.Cleanup) -> dict[str, Any]:
    rooms = rooms_of(args.users, args.peers)
    room_of = {member: number for number, members in enumerate(rooms) for member in members}
    size_of = [len(rooms[room_of[i]]) for i in range(args.users)]
    peers_per_user = sum(s - 1 for s in size_of) / args.users

    collab = cf.Collab(1, workdir, cleanup)
    started = time.monotonic()
    collab.create_admin()  # also creates the database and applies the migrations
    database = workdir / "node0" / "collab.db"
    if not database.exists():
        raise RuntimeError(f"no database at {database}")
    people = asyncio.run(insert_users(f"sqlite+aiosqlite:///{database.resolve()}", args.users))
    users_s = time.monotonic() - started
    cf.say(f"{args.users} users with tokens in the database in {users_s:.1f} s")
    asyncio.run(collab.start())
    asyncio.run(make_rooms(collab.base(0), people, rooms))
    setup_s = time.monotonic() - started
    sizes = sorted({len(r) for r in rooms})
    cf.say(f"{len(rooms)} rooms of {sizes} users; set-up took {setup_s:.1f} s")
    # A fresh process, so what set-up left in the heap is neither counted nor reused.
    asyncio.run(collab.restart())
    pid = collab.pids[0]
    base = collab.base(0)

    url = f"ws://127.0.0.1:{collab.ports[0]}/ws"
    clients = [(i, url, token, uid, name) for i, (uid, name, token) in enumerate(people)]
    specs = [
        {
            "worker": w,
            "target": "collab",
            "clients": [c for c in clients if c[0] % args.workers == w],
            "send_rooms": [],
            "seed": args.seed,
        }
        for w in range(args.workers)
    ]
    pool = start_workers(specs, cleanup)
    connect_started = time.monotonic()
    ready = pool.gather("ready", timeout=300 + args.users / 20)
    connect_s = time.monotonic() - connect_started
    connected = sum(r[0]["connected"] for r in ready)
    failures: dict[str, int] = {}
    for r in ready:
        for name, count in r[0]["failures"].items():
            failures[name] = failures.get(name, 0) + count
    cf.say(f"{connected}/{args.users} sockets open in {connect_s:.1f} s {failures or ''}")

    # -- idle: everyone online, nobody acting -------------------------------------------------
    cf.say(f"settling for {args.settle:.0f} s, then {args.idle_seconds:.0f} s idle")
    time.sleep(args.settle)
    delivered_before = asyncio.run(read_metric(base, "collab_ws_deliveries")) or 0.0
    idle = Window(pid, pool)
    time.sleep(args.idle_seconds)
    idle_cpu = idle.end()
    delivered_idle = (asyncio.run(read_metric(base, "collab_ws_deliveries")) or 0.0) - (
        delivered_before
    )
    open_now = asyncio.run(read_metric(base, "collab_websockets_open"))
    rss_idle = cf.rss_kb(pid)
    idle_pct = idle_cpu["cpu_s"] / idle_cpu["wall_s"] * 100
    cf.say(
        f"idle: {idle_pct:.2f}% of a core ({idle_cpu['cpu_s']:.2f} s CPU in "
        f"{idle_cpu['wall_s']:.1f} s), {delivered_idle:.0f} events delivered, "
        f"foreign {idle_cpu['foreign_cores']:.2f} cores"
    )
    collab.check_alive()

    # -- changes ----------------------------------------------------------------------------------
    peak_rss = {"kb": rss_idle}

    def sample() -> None:
        with contextlib.suppress(OSError):
            peak_rss["kb"] = max(peak_rss["kb"], cf.rss_kb(pid))

    window = Window(pid, pool)
    start_ns = time.time_ns() + 300_000_000
    pool.broadcast("go", start_ns, args.seconds, args.rate, args.users)
    sent = pool.gather("sent", timeout=args.seconds + 60, tick=sample)
    acked: dict[int, int] = {}
    for (summary,) in sent:
        for index, count in summary["acked"].items():
            acked[index] = acked.get(index, 0) + count
    changes = sum(acked.values())
    expected = sum(count * size_of[index] for index, count in acked.items())
    deadline = time.monotonic() + 15
    while True:
        got, worker_cpu = window.worker_counts()
        sample()
        if got >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    busy = window.end(worker_cpu)
    collab.check_alive()
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
    errors: dict[str, int] = {}
    for r in results:
        for code, count in r["errors"].items():
            errors[code] = errors.get(code, 0) + count

    def ms(fraction: float) -> float | None:
        return round(cf.percentile(latencies, fraction), 2) if latencies else None

    p99 = ms(0.99)
    result: dict[str, Any] = {
        "bench": "presence",
        "users": args.users,
        "sockets": connected,
        "server_open_sockets": int(open_now) if open_now is not None else None,
        "rooms": len(rooms),
        "room_sizes": sizes,
        "peers_per_user": round(peers_per_user, 2),
        "rate": args.rate,
        "seconds": args.seconds,
        "workers": args.workers,
        "setup_s": round(setup_s, 1),
        "users_s": round(users_s, 1),
        "connect_s": round(connect_s, 1),
        # idle
        "idle_seconds": round(idle_cpu["wall_s"], 1),
        "idle_cpu_pct": round(idle_pct, 2),
        "idle_cpu_sys_pct": round(idle_cpu["cpu_sys_s"] / idle_cpu["wall_s"] * 100, 2),
        "idle_events_delivered": int(delivered_idle),
        "idle_runq_wait_s": round(idle_cpu["runq_wait_s"], 2),
        "idle_loadgen_cpu_s": round(idle_cpu["loadgen_cpu_s"], 2),
        "idle_foreign_cores": round(idle_cpu["foreign_cores"], 2),
        # changes
        "changes": changes,
        "cpu_ms_per_change": round(busy["cpu_s"] * 1000 / changes, 2) if changes else None,
        "p50_ms": ms(0.50),
        "p95_ms": ms(0.95),
        "p99_ms": p99,
        "max_ms": round(latencies[-1] / 1e6, 2) if latencies else None,
        # The changed user's own socket is one of the receivers (peers include oneself).
        "events_per_change": round(received / changes, 2) if changes else None,
        "expected_per_change": round(expected / changes, 2) if changes else None,
        "deliveries": received,
        "lost": expected - received,
        "dup": sum(r["dup"] for r in results),
        "other_events": sum(r["other_events"] for r in results),
        "disconnects": sum(r["disconnects"] for r in results),
        "send_errors": errors,
        "unanswered": sum(r["unanswered"] for r in results),
        "send_lag_max_ms": round(max(r["send_lag_max_s"] for r in results) * 1000, 1),
        "window_s": round(busy["wall_s"], 1),
        "server_cpu_s": round(busy["cpu_s"], 2),
        "server_cpu_sys_s": round(busy["cpu_sys_s"], 2),
        "server_runq_wait_s": round(busy["runq_wait_s"], 2),
        "server_rss_mb": round(peak_rss["kb"] / 1024, 1),
        "loadgen_cpu_s": round(busy["loadgen_cpu_s"], 2),
        "loadgen_core_max": round(busy["loadgen_core_max"], 2),
        "foreign_cores": round(busy["foreign_cores"], 2),
    }
    result["targets_met"] = {
        "idle_cpu_under_2pct": idle_pct < IDLE_TARGET_PCT,
        # The latency target is stated at 50 changes/s; at other rates it is only indicative.
        "p99_under_200ms": p99 is not None and p99 < P99_TARGET_MS,
    }
    if args.rate != TARGET_RATE:
        result["targets_note"] = f"p99 target is stated at {TARGET_RATE:g} changes/s"
    collab.stop()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000, help="users, one socket each")
    parser.add_argument("--peers", type=int, default=50, help="others each user shares a room with")
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="changes/s in total")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the change stream")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="idle measurement")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="quiet seconds after connecting, before idle"
    )
    parser.add_argument("--workers", type=int, default=4, help="load generator processes")
    parser.add_argument("--seed", type=int, default=1, help="order of the users who change")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args(argv)
    if args.users < 2 or args.peers < 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("need --users >= 2, --peers >= 1, --rate > 0, --seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = loadgen.raise_nofile_limit()
    if limit < args.users + 1000:
        cf.say(f"warning: open-file limit is {limit}; {args.users} sockets may not fit")

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    cleanup = cf.Cleanup()
    workdir = Path(tempfile.mkdtemp(prefix="collab-bench-presence-"))
    if not args.keep:
        cleanup.add("temp dir", lambda: shutil.rmtree(workdir, ignore_errors=True))
    else:
        cf.say(f"keeping {workdir}")
    try:
        result = run(args, workdir, cleanup)
    except KeyboardInterrupt:
        cf.say("interrupted; cleaning up")
        return 130
    finally:
        cleanup.run()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
