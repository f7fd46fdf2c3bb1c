"""SQLite writes under contention: messages sent at once by many people on one node.

On SQLite every write transaction takes the database's single write lock
(``BEGIN IMMEDIATE``). Without more, concurrent senders on one node wait for
it in SQLite's busy handler, which sleeps and polls, in the driver's threads;
past its timeout a send fails with "database is locked". ``Store`` instead
queues a node's SQLite writers on one ``asyncio.Lock`` (first come, first
served, nobody polling). This runs the same load both ways in one process:
``--senders`` people each send ``--messages`` chat messages as fast as the
node takes them, all at once, through ``ChatService.send`` (the full send
path: validation, the message row, mentions, search index, the event), and
reports messages per second, latency percentiles and failures.

Prints exactly one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from argon2 import PasswordHasher

from collab.accounts.models import Identity
from collab.accounts.passwords import Passwords
from collab.api.errors import ApiError
from collab.app import create_app
from collab.appkeys import ACCOUNTS, CHAT, STORE
from collab.config import Config


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _run(serialize: bool, senders: int, messages: int, data_dir: Path) -> dict[str, Any]:
    app = create_app(
        Config(data_dir=data_dir),
        passwords=Passwords(PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)),
        announce_first_run=False,
    )
    app[STORE].serialize_writes = serialize
    runner = web.AppRunner(app)
    await runner.setup()  # the app's start-up: migrations, bus, presence
    try:
        people = [
            await app[ACCOUNTS].create_user(username=f"user{i}", password="x" * 12)
            for i in range(senders)
        ]
        identities = [Identity(user=user) for user in people]
        room, _ = await app[CHAT].create_room(
            identities[0], kind="channel", name="load", members=[u.username for u in people[1:]]
        )
        latencies: list[float] = []
        failures: dict[str, int] = {}

        async def sender(identity: Identity) -> None:
            for k in range(messages):
                began = time.perf_counter()
                try:
                    await app[CHAT].send(identity, room.id, f"message {k} from {identity.user.id}")
                except Exception as exc:
                    name = exc.code if isinstance(exc, ApiError) else type(exc).__name__
                    failures[name] = failures.get(name, 0) + 1
                else:
                    latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(sender(identity) for identity in identities))
        elapsed = time.perf_counter() - began
    finally:
        await runner.cleanup()
    return {
        "sent": len(latencies),
        "failed": sum(failures.values()),
        "failures": failures,
        "messages_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=50, help="people sending at once")
    parser.add_argument("--messages", type=int, default=40, help="messages per sender")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for label, serialize in (("queued", True), ("busy_handler", False)):
        with tempfile.TemporaryDirectory(prefix="collab-bench-sqlite-") as tmp:
            print(f"{label}: {args.senders} senders x {args.messages}", file=sys.stderr)
            results[label] = await _run(serialize, args.senders, args.messages, Path(tmp))
    queued, polled = results["queued"], results["busy_handler"]
    print(
        json.dumps(
            {
                "bench": "sqlite_writes",
                "senders": args.senders,
                "messages_per_sender": args.messages,
                "queued": queued,
                "busy_handler": polled,
                "throughput_ratio": round(
                    queued["messages_per_s"] / max(polled["messages_per_s"], 0.1), 2
                ),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
