"""Health, readiness, metrics, and the socket endpoint's basic contract."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import PASSWORD, add_user, next_answer, sign_in
from tests.servers import RedisServer


async def test_healthz_and_readyz(client: TestClient[Any, Any]) -> None:
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {"status": "ready", "checks": {"store": "ok", "bus": "ok"}}


async def test_health_probes_stay_out_of_the_access_log(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Balancers ask every few seconds; a log full of them hides what matters."""
    caplog.set_level(logging.INFO, logger="collab.http")
    for path in ("/healthz", "/readyz"):
        assert (await client.get(path)).status == 200
    assert (await client.get("/api/v1/me")).status == 401
    logged = [r.getMessage() for r in caplog.records if r.name == "collab.http"]
    assert len(logged) == 1 and logged[0].startswith("GET /api/v1/me 401"), logged


async def test_readyz_reports_a_lost_redis_and_recovers(
    aiohttp_client: Any, make_app: Any, redis_server: RedisServer
) -> None:
    client = await aiohttp_client(make_app(redis_url=redis_server.url))
    assert (await client.get("/readyz")).status == 200
    redis_server.stop()
    down = await client.get("/readyz")
    assert down.status == 503
    body = await down.json()
    assert body["checks"]["store"] == "ok"
    assert body["checks"]["bus"].startswith("unavailable")
    assert (await client.get("/healthz")).status == 200  # the process itself is fine
    redis_server.start()
    async with asyncio.timeout(15):
        while (await client.get("/readyz")).status != 200:
            await asyncio.sleep(0.1)


async def test_metrics_count_requests_by_route(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "ana")
    await sign_in(client, "ana")
    await client.get("/api/v1/users/ana")
    await client.get("/api/v1/users/bob")
    text = await (await client.get("/metrics")).text()
    assert (
        'collab_http_requests_total{method="POST",route="/api/v1/login",status="200"} 1.0' in text
    )
    assert (
        'collab_http_requests_total{method="GET",route="/api/v1/users/{username}",status="404"} 1.0'
        in text
    )
    assert "collab_http_request_duration_seconds_bucket" in text
    assert "collab_websockets_open 0.0" in text
    assert 'collab_sign_ins_total{outcome="ok"} 1.0' in text


async def test_metrics_are_refused_outside_the_allowed_networks(
    aiohttp_client: Any, make_app: Any
) -> None:
    client = await aiohttp_client(make_app(metrics_allow_from=("10.0.0.0/8",)))
    response = await client.get("/metrics")
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"


async def test_socket_greets_validates_and_survives_bad_frames(
    client: TestClient[Any, Any],
) -> None:
    await add_user(client.app, "ana")
    await sign_in(client, "ana")
    async with client.ws_connect("/ws") as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        assert hello["user"]["username"] == "ana"
        assert hello["heartbeat"] > 0 and hello["server_time"] > 0
        bad = [
            ("{oops", "bad_json", None),
            ("[1]", "bad_frame", None),
            ('{"id": "c1"}', "bad_frame", "c1"),
            ('{"id": 5, "type": "ping"}', "bad_frame", None),
            ('{"id": "c2", "type": "chat.nope"}', "unknown_type", "c2"),
            (
                '{"id": "c3", "type": "ping", "pad": "' + "x" * 70_000 + '"}',
                "frame_too_large",
                None,
            ),
        ]
        for frame, code, re in bad:
            await ws.send_str(frame)
            answer = await next_answer(ws)
            assert answer["error"]["code"] == code, frame[:40]
            assert answer["error"]["message"]
            assert answer["re"] == re
        await ws.send_bytes(b"\x00\x01")
        assert (await next_answer(ws))["error"]["code"] == "bad_frame"
        await ws.send_json({"id": "c9", "type": "ping"})
        answer = await next_answer(ws)
        assert answer["re"] == "c9" and answer["ok"] is True
        metrics = await (await client.get("/metrics")).text()
        assert "collab_websockets_open 1.0" in metrics


async def test_socket_needs_a_signed_in_user(client: TestClient[Any, Any]) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws")
    assert refused.value.status == 401


async def test_shutdown_closes_sockets_with_going_away(aiohttp_client: Any, make_app: Any) -> None:
    client = await aiohttp_client(make_app())
    await add_user(client.app, "ana")
    await client.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
    ws = await client.ws_connect("/ws")
    await ws.receive_json(timeout=5)
    closing = asyncio.create_task(client.server.close())
    message = await ws.receive(timeout=10)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == aiohttp.WSCloseCode.GOING_AWAY
    await closing


async def test_metrics_count_chat_messages_and_deliveries(client: TestClient[Any, Any]) -> None:
    from tests.chat_helpers import Person

    ana = await Person.create(client, "ana")
    room = await ana.room("channel", "m")
    ws = await ana.socket()
    await ana.post(room["id"], "one")
    await ws.next_event("chat.message")
    text = await (await client.get("/metrics")).text()
    assert 'collab_chat_messages_total{kind="user"} 1.0' in text
    deliveries = [line for line in text.splitlines() if line.startswith("collab_ws_deliveries")]
    assert deliveries and float(deliveries[0].split()[-1]) >= 1
    await ws.close()
    await ana.close()
