"""Open sockets close when the credential they were opened with stops being valid."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from collab.appkeys import STORE
from collab.store.schema import api_tokens, sessions
from signaling.protocol import RESUME_CLOSE_CODE, SESSION_ENDED_CLOSE_CODE
from tests.helpers import PASSWORD, add_user, next_answer, sign_in
from tests.servers import RedisServer


async def _closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read until the socket closes (events before that do not matter here)."""
    while True:
        message = await ws.receive(timeout=10)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return ws.close_code


async def _still_open(ws: aiohttp.ClientWebSocketResponse) -> bool:
    await ws.send_json({"id": "p", "type": "ping"})
    answer = await next_answer(ws)
    return bool(answer.get("ok"))


def _browser(client: TestClient[Any, Any]) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=str(client.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)
    )


async def test_sign_out_closes_that_sessions_sockets_only(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "ana")
    csrf = await sign_in(client, "ana")
    token = (await (await client.post("/api/v1/tokens", json={"name": "b"}, headers=csrf)).json())[
        "token"
    ]
    laptop = _browser(client)
    try:
        await laptop.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
        this_tab = await client.ws_connect("/ws")
        laptop_tab = await laptop.ws_connect("/ws")
        bot = await laptop.ws_connect("/ws", headers={"Authorization": f"Bearer {token}"})
        for ws in (this_tab, laptop_tab, bot):
            assert (await ws.receive_json(timeout=5))["type"] == "hello"

        assert (await client.post("/api/v1/logout", headers=csrf)).status == 204
        assert await _closed_with(this_tab) == SESSION_ENDED_CLOSE_CODE
        assert await _still_open(laptop_tab)
        assert await _still_open(bot)
        await laptop_tab.close()
        await bot.close()
    finally:
        await laptop.close()


async def test_password_change_closes_other_sessions_sockets_but_not_tokens(
    client: TestClient[Any, Any],
) -> None:
    await add_user(client.app, "ana")
    csrf = await sign_in(client, "ana")
    token = (await (await client.post("/api/v1/tokens", json={"name": "b"}, headers=csrf)).json())[
        "token"
    ]
    laptop = _browser(client)
    try:
        await laptop.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
        laptop_tab = await laptop.ws_connect("/ws")
        bot = await laptop.ws_connect("/ws", headers={"Authorization": f"Bearer {token}"})
        await laptop_tab.receive_json(timeout=5)
        await bot.receive_json(timeout=5)
        changed = await client.post(
            "/api/v1/me/password",
            json={"current_password": PASSWORD, "new_password": "brand new secret"},
            headers=csrf,
        )
        assert changed.status == 200
        assert await _closed_with(laptop_tab) == SESSION_ENDED_CLOSE_CODE
        # This browser holds the new session and can open a socket at once.
        fresh = await client.ws_connect("/ws")
        assert (await fresh.receive_json(timeout=5))["type"] == "hello"
        assert await _still_open(bot)
        await fresh.close()
        await bot.close()
    finally:
        await laptop.close()


async def test_revoking_a_token_closes_its_socket(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "ana")
    csrf = await sign_in(client, "ana")
    created = await (await client.post("/api/v1/tokens", json={"name": "b"}, headers=csrf)).json()
    bot_http = aiohttp.ClientSession(base_url=str(client.make_url("/")))
    try:
        bot = await bot_http.ws_connect(
            "/ws", headers={"Authorization": f"Bearer {created['token']}"}
        )
        await bot.receive_json(timeout=5)
        await client.delete(f"/api/v1/tokens/{created['id']}", headers=csrf)
        assert await _closed_with(bot) == SESSION_ENDED_CLOSE_CODE
    finally:
        await bot_http.close()


async def test_deactivation_on_one_node_closes_sockets_on_another(
    aiohttp_client: Any, make_app: Any, pg_url: str, redis_server: RedisServer, tmp_path: Any
) -> None:
    node_a = await aiohttp_client(
        make_app(database_url=pg_url, redis_url=redis_server.url, data_dir=tmp_path / "a")
    )
    node_b = await aiohttp_client(
        make_app(database_url=pg_url, redis_url=redis_server.url, data_dir=tmp_path / "b")
    )
    await add_user(node_a.app, "root", role="admin")
    await add_user(node_a.app, "ana")
    await sign_in(node_a, "ana")
    ana_socket = await node_a.ws_connect("/ws")
    await ana_socket.receive_json(timeout=5)

    csrf = await sign_in(node_b, "root")
    response = await node_b.patch("/api/v1/users/ana", json={"active": False}, headers=csrf)
    assert response.status == 200
    assert await _closed_with(ana_socket) == SESSION_ENDED_CLOSE_CODE


async def test_a_role_change_reconnects_the_users_sockets_with_the_new_rights(
    client: TestClient[Any, Any],
) -> None:
    """A socket checks rights against the identity it was opened with: a demoted
    administrator's sockets close with 4000 and the next one has a member's rights."""
    await add_user(client.app, "root", role="admin")
    await add_user(client.app, "ana", role="admin")
    csrf = await sign_in(client, "root")
    laptop = _browser(client)
    try:
        await laptop.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
        tab = await laptop.ws_connect("/ws")
        assert (await tab.receive_json(timeout=5))["user"]["role"] == "admin"

        renamed = await client.patch(
            "/api/v1/users/ana", json={"display_name": "Ana L."}, headers=csrf
        )
        assert renamed.status == 200
        assert await _still_open(tab)  # a new name changes no rights

        demoted = await client.patch("/api/v1/users/ana", json={"role": "member"}, headers=csrf)
        assert demoted.status == 200
        assert await _closed_with(tab) == RESUME_CLOSE_CODE
        # The session is still good: the client reconnects at once, as a member now.
        again = await laptop.ws_connect("/ws")
        assert (await again.receive_json(timeout=5))["user"]["role"] == "member"
        assert await _still_open(again)
        await again.close()
    finally:
        await laptop.close()


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


async def test_a_socket_closes_when_its_api_token_expires(
    aiohttp_client: Any, make_app: Any
) -> None:
    client = await aiohttp_client(make_app(app_clock=_wall_clock_ms))
    await add_user(client.app, "ana")
    csrf = await sign_in(client, "ana")
    made = await client.post(
        "/api/v1/tokens", json={"name": "bot", "expires_in_days": 1}, headers=csrf
    )
    created = await made.json()
    # A day is too long to wait: the token now runs out in a second and a half.
    async with client.app[STORE].transaction() as conn:
        await conn.execute(
            sa.update(api_tokens)
            .where(api_tokens.c.id == created["id"])
            .values(expires_at=_wall_clock_ms() + 1500)
        )
    bot_http = aiohttp.ClientSession(base_url=str(client.make_url("/")))
    try:
        bot = await bot_http.ws_connect(
            "/ws", headers={"Authorization": f"Bearer {created['token']}"}
        )
        assert (await bot.receive_json(timeout=5))["type"] == "hello"
        assert await _still_open(bot)
        assert await _closed_with(bot) == SESSION_ENDED_CLOSE_CODE
        refused = await bot_http.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {created['token']}"}
        )
        assert refused.status == 401
    finally:
        await bot_http.close()


async def test_an_open_socket_keeps_its_session_alive_until_the_session_is_ended(
    aiohttp_client: Any, make_app: Any
) -> None:
    """A session used only through its socket does not run out under the user; one that
    is over anyway (here: deleted without the bus telling anyone) ends the socket."""
    ttl_s = 3.0
    client = await aiohttp_client(make_app(app_clock=_wall_clock_ms, session_days=ttl_s / 86400))
    await add_user(client.app, "ana")
    await sign_in(client, "ana")
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["collab_session"]
    tab = await client.ws_connect("/ws")
    assert (await tab.receive_json(timeout=5))["type"] == "hello"
    await asyncio.sleep(ttl_s + 0.5)
    # Signing in and opening the socket were the only HTTP use; the session lives on.
    # (The cookie is sent by hand: this client's jar drops it after its 3 s Max-Age.)
    me = await client.get("/api/v1/me", headers={"Cookie": f"collab_session={cookie.value}"})
    assert me.status == 200
    assert await _still_open(tab)

    async with client.app[STORE].transaction() as conn:
        await conn.execute(sa.delete(sessions))
    assert await _closed_with(tab) == SESSION_ENDED_CLOSE_CODE
