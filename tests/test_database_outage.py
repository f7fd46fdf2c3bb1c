"""PostgreSQL goes away: sends fail with a clear, retryable error; service comes back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chat_helpers import Person
from tests.servers import PostgresServer


@pytest.fixture
def private_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, so stopping it disturbs nobody else."""
    server = PostgresServer.start_temporary()
    yield server
    server.stop()


async def test_sends_fail_cleanly_while_the_database_is_down(
    aiohttp_client: Any, make_app: Any, private_pg: PostgresServer
) -> None:
    name = await private_pg.create_database()
    client = await aiohttp_client(make_app(database_url=private_pg.sqlalchemy_url(name)))
    ana = await Person.create(client, "ana")
    room = await ana.room("channel", "team")
    ws = await ana.socket()
    await ws.command("ping")
    await ana.post(room["id"], "before")

    private_pg.pause()
    down = await ana.call(
        "POST",
        f"/api/v1/rooms/{room['id']}/messages",
        503,
        json={"body": "during", "client_msg_id": "m-during"},
    )
    assert down["error"]["code"] == "unavailable"
    answer = await ws.command("chat.send", room=room["id"], body="during", client_msg_id="s1")
    assert answer["error"]["code"] == "unavailable"
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["store"].startswith("unavailable")
    assert (await client.get("/healthz")).status == 200

    await asyncio.to_thread(private_pg.resume)
    # The outbox retries with the same client_msg_id: stored once.
    for _ in range(50):
        retry = await ana.http.post(
            f"/api/v1/rooms/{room['id']}/messages",
            json={"body": "during", "client_msg_id": "m-during"},
            headers=ana.csrf,
        )
        if retry.status in (200, 201):
            break
        await asyncio.sleep(0.2)
    assert retry.status == 201
    again = await ana.call(
        "POST",
        f"/api/v1/rooms/{room['id']}/messages",
        200,
        json={"body": "during", "client_msg_id": "m-during"},
    )
    assert again["message"]["seq"] == 2
    resent = await ws.command("chat.send", room=room["id"], body="during", client_msg_id="s1")
    assert resent["ok"] and resent["message"]["seq"] == 3
    history = await ana.call("GET", f"/api/v1/rooms/{room['id']}/messages", 200)
    assert [m["body"] for m in history["messages"]] == ["before", "during", "during"]
    assert (await client.get("/readyz")).status == 200
    await ws.close()
    await ana.close()
