"""Two nodes on one PostgreSQL and one Redis: sessions end everywhere at once."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.helpers import PASSWORD, add_user, sign_in
from tests.servers import RedisServer


async def test_sign_out_and_deactivation_reach_every_node(
    aiohttp_client: Any, make_app: Any, pg_url: str, redis_server: RedisServer, tmp_path: Any
) -> None:
    node_a = await aiohttp_client(
        make_app(database_url=pg_url, redis_url=redis_server.url, data_dir=tmp_path / "a")
    )
    node_b = await aiohttp_client(
        make_app(database_url=pg_url, redis_url=redis_server.url, data_dir=tmp_path / "b")
    )
    await add_user(node_a.app, "root", role="admin")
    await add_user(node_b.app, "ana")

    # Ana signs in on node A; her browser's next request lands on node B.
    csrf = await sign_in(node_a, "ana")
    cookie = node_a.session.cookie_jar.filter_cookies(node_a.make_url("/"))["collab_session"]
    as_ana = {"Cookie": f"collab_session={cookie.value}"}
    assert (await node_b.get("/api/v1/me", headers=as_ana)).status == 200
    assert (await node_b.get("/readyz")).status == 200

    assert (await node_a.post("/api/v1/logout", headers=csrf)).status == 204
    assert (await node_b.get("/api/v1/me", headers=as_ana)).status == 401

    # Deactivated on node B by an admin there: her session on node A stops working.
    await sign_in(node_a, "ana")
    cookie = node_a.session.cookie_jar.filter_cookies(node_a.make_url("/"))["collab_session"]
    admin = aiohttp.ClientSession(
        base_url=str(node_b.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    try:
        login = await admin.post("/api/v1/login", json={"username": "root", "password": PASSWORD})
        admin_csrf = {"X-CSRF-Token": (await login.json())["csrf_token"]}
        response = await admin.patch(
            "/api/v1/users/ana", json={"active": False}, headers=admin_csrf
        )
        assert response.status == 200
    finally:
        await admin.close()
    assert (await node_a.get("/api/v1/me")).status == 401

    # The sign-in throttle is shared too: failures on A count on B.
    for node in (node_a, node_b, node_a, node_b, node_a):
        bad = await node.post("/api/v1/login", json={"username": "root", "password": "wrong one"})
        assert bad.status == 401
    await node_b.post("/api/v1/login", json={"username": "root", "password": "wrong one"})
    blocked = await node_a.post("/api/v1/login", json={"username": "root", "password": PASSWORD})
    assert blocked.status == 429
