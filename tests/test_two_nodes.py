"""Two nodes on one PostgreSQL and one Redis: sessions end everywhere at once."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import NodePair
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


async def test_users_on_different_nodes_chat(
    aiohttp_client: Any, make_app: Any, pg_url: str, redis_server: RedisServer, tmp_path: Any
) -> None:
    from tests.chat_helpers import Person

    node_a = await aiohttp_client(
        make_app(database_url=pg_url, redis_url=redis_server.url, data_dir=tmp_path / "a")
    )
    node_b = await aiohttp_client(
        make_app(database_url=pg_url, redis_url=redis_server.url, data_dir=tmp_path / "b")
    )
    ana = await Person.create(node_a, "ana")
    bob = Person(node_b, "bob")
    bob.user_id = (await add_user(node_b.app, "bob")).id
    await bob.sign_in()
    room = await ana.room("channel", "across", ["bob"])
    ana_ws, bob_ws = await ana.socket(), await bob.socket()

    sent = await ana_ws.command("chat.send", room=room["id"], body="from A", client_msg_id="a1")
    event = await bob_ws.next_event("chat.message")
    assert (event["body"], event["seq"], event["sender"]["username"]) == ("from A", 1, "ana")
    assert event["id"] == sent["message"]["id"]
    await bob_ws.command("chat.send", room=room["id"], body="from B")
    mine = await ana_ws.next_event("chat.message")
    while mine["body"] != "from B":
        mine = await ana_ws.next_event("chat.message")
    assert mine["seq"] == 2

    await bob_ws.command("chat.typing", room=room["id"])
    typing = await ana_ws.next_event("chat.typing")
    assert typing["user"]["username"] == "bob"

    # bob reads on node B; his other device on node A learns it.
    bob_on_a = Person(node_a, "bob")
    await bob_on_a.sign_in()
    bob_laptop = await bob_on_a.socket()
    await bob_ws.command("chat.read", room=room["id"], seq=2)
    marker = await bob_laptop.next_event("chat.read")
    assert marker["seq"] == 2

    # Added on node A, live on node B at once.
    other = await ana.room("private", "later")
    await ana.call("POST", f"/api/v1/rooms/{other['id']}/members", 200, json={"username": "bob"})
    assert (await bob_ws.next_event("room.joined"))["room"]["id"] == other["id"]
    for ws in (ana_ws, bob_ws, bob_laptop):
        await ws.close()
    for person in (ana, bob, bob_on_a):
        await person.close()


async def test_after_a_redis_restart_clients_are_told_to_sync(
    aiohttp_client: Any, make_app: Any, pg_url: str, redis_server: RedisServer, tmp_path: Any
) -> None:
    from tests.chat_helpers import Person

    node = await aiohttp_client(
        make_app(database_url=pg_url, redis_url=redis_server.url, data_dir=tmp_path / "a")
    )
    ana, bob = await Person.create(node, "ana"), await Person.create(node, "bob")
    room = await ana.room("channel", "r", ["bob"])
    bob_ws = await bob.socket()
    redis_server.stop()
    # Sent while the bus is down: saved, but nobody hears of it live.
    lost_live = await ana.post(room["id"], "during the outage")
    redis_server.start()
    notice = await bob_ws.next_event("sync.needed", timeout=20)
    assert notice["reason"] == "bus_gap"
    answer = await bob_ws.command("sync", rooms=[{"room": room["id"], "seq": 0}])
    assert [m["id"] for m in answer["missed"][0]["messages"]] == [lost_live["id"]]
    await bob_ws.close()
    await ana.close()
    await bob.close()


async def test_files_search_and_notifications_work_across_nodes(node_pair: NodePair) -> None:
    """Two nodes share PostgreSQL, Redis and one data directory (uploads), as a
    cluster must: what is uploaded, said or mentioned on one is there on the other."""
    from tests.chat_helpers import Person
    from tests.test_files import fetch, upload

    node_a, node_b = await node_pair(shared_data=True)
    ana = await Person.create(node_a, "ana")
    bob = await Person.create(node_b, "bob")
    room = await ana.room("channel", "across", ["bob"])
    bob_ws = await bob.socket()
    await bob_ws.command("ping")

    data = bytes(range(256)) * 40
    stored = (await upload(ana, room["id"], data, "report.bin"))["file"]
    ana_ws = await ana.socket()
    sent = await ana_ws.command(
        "chat.send", room=room["id"], body="@bob the quarterly figures", files=[stored["id"]]
    )
    assert sent["ok"], sent
    # The mention notifies bob on his node, and the file downloads there byte for byte.
    seen: dict[str, dict[str, Any]] = {}
    while len(seen) < 2:
        event = await bob_ws.next_event()
        if event["type"] in ("notify", "chat.message"):
            seen[event["type"]] = event
    notice, message = seen["notify"], seen["chat.message"]
    assert (notice["reason"], notice["message"]) == ("mention", sent["message"]["id"])
    url = message["files"][0]["url"]
    status, body, _ = await fetch(bob, str(node_b.make_url(url)))
    assert status == 200 and body == data
    # Searching on node b finds what was said on node a.
    found = await bob.call("GET", "/api/v1/search", 200, params={"q": "quarterly"})
    assert [hit["message"]["id"] for hit in found["results"]] == [sent["message"]["id"]]
    for ws in (ana_ws, bob_ws):
        await ws.close()
    for person in (ana, bob):
        await person.close()
