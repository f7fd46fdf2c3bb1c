"""Sign-in, sessions, CSRF, throttling, tokens, invitations and roles over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from collab.appkeys import ACCOUNTS
from tests.helpers import PASSWORD, add_user, error_code, sign_in


@pytest.fixture
async def other_device(client: TestClient[Any, Any]) -> AsyncIterator[aiohttp.ClientSession]:
    """A second browser: same server, its own cookie jar."""
    session = aiohttp.ClientSession(
        base_url=str(client.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    yield session
    await session.close()


async def test_sign_in_sets_a_protected_session_cookie(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "ana")
    response = await client.post("/api/v1/login", json={"username": "Ana", "password": PASSWORD})
    assert response.status == 200
    body = await response.json()
    assert body["user"]["username"] == "ana"
    assert body["csrf_token"]
    cookie = response.headers["Set-Cookie"]
    assert "collab_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP in this test
    me = await client.get("/api/v1/me")
    assert (await me.json())["user"]["username"] == "ana"


async def test_cookie_is_secure_when_served_over_https(aiohttp_client: Any, make_app: Any) -> None:
    client = await aiohttp_client(make_app(public_url="https://chat.example.com"))
    await add_user(client.app, "ana")
    response = await client.post(
        "/api/v1/login",
        json={"username": "ana", "password": PASSWORD},
        headers={"Origin": "https://chat.example.com"},
    )
    assert response.status == 200
    assert "Secure" in response.headers["Set-Cookie"]
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


async def test_unknown_user_and_wrong_password_look_the_same(
    client: TestClient[Any, Any],
) -> None:
    await add_user(client.app, "ana")
    wrong = await client.post("/api/v1/login", json={"username": "ana", "password": "nope-nope"})
    unknown = await client.post(
        "/api/v1/login", json={"username": "nobody", "password": "nope-nope"}
    )
    assert wrong.status == unknown.status == 401
    assert await wrong.json() == await unknown.json()
    assert (await wrong.json())["error"]["code"] == "bad_credentials"
    assert "collab_session" not in wrong.cookies


async def test_deactivated_user_cannot_sign_in(client: TestClient[Any, Any]) -> None:
    admin = await add_user(client.app, "root", role="admin")
    await add_user(client.app, "ana")
    from collab.accounts.models import Identity

    await client.app[ACCOUNTS].update_user(Identity(user=admin), "ana", active=False)
    response = await client.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
    assert response.status == 401
    assert await error_code(response) == "bad_credentials"


async def test_sign_out_ends_the_session(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "ana")
    csrf = await sign_in(client, "ana")
    old_cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["collab_session"]
    response = await client.post("/api/v1/logout", headers=csrf)
    assert response.status == 204
    assert (await client.get("/api/v1/me")).status == 401
    # Even a copy of the old cookie is worthless now.
    replay = await client.get(
        "/api/v1/me", headers={"Cookie": f"collab_session={old_cookie.value}"}
    )
    assert replay.status == 401
    assert await error_code(replay) == "session_ended"


async def test_a_session_in_use_outlives_its_first_cookie(
    client: TestClient[Any, Any], clock: Any
) -> None:
    """The session lasts 30 days without use: each renewal sends the cookie again with a
    fresh lifetime, or the browser would drop it 30 days after signing in, in use or not."""
    await add_user(client.app, "ana")
    csrf = await sign_in(client, "ana")
    assert "Set-Cookie" not in (await client.get("/api/v1/me")).headers  # just renewed
    clock.advance(20 * 86400)
    renewed = await client.get("/api/v1/me")
    assert renewed.status == 200
    cookie = renewed.headers["Set-Cookie"]
    assert "collab_session=" in cookie and "Max-Age=2592000" in cookie and "HttpOnly" in cookie
    clock.advance(20 * 86400)  # 40 days after signing in, 20 after the last use
    assert (await client.get("/api/v1/me")).status == 200
    clock.advance(20 * 86400)
    # Signing out clears the cookie even on a request that renewed the session.
    signed_out = await client.post("/api/v1/logout", headers=csrf)
    assert signed_out.status == 204
    assert 'collab_session=""' in signed_out.headers["Set-Cookie"]


async def test_password_change_ends_other_sessions_and_keeps_this_one(
    client: TestClient[Any, Any], other_device: aiohttp.ClientSession
) -> None:
    await add_user(client.app, "ana")
    csrf = await sign_in(client, "ana")
    login = await other_device.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
    assert login.status == 200
    assert (await other_device.get("/api/v1/me")).status == 200

    response = await client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "a new long secret"},
        headers=csrf,
    )
    assert response.status == 200
    assert (await client.get("/api/v1/me")).status == 200
    ended = await other_device.get("/api/v1/me")
    assert ended.status == 401
    assert await error_code(ended) == "session_ended"
    old = await client.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
    assert old.status == 401
    new = await client.post(
        "/api/v1/login", json={"username": "ana", "password": "a new long secret"}
    )
    assert new.status == 200


async def test_password_change_checks_current_and_strength(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "ana")
    csrf = await sign_in(client, "ana")
    wrong = await client.post(
        "/api/v1/me/password",
        json={"current_password": "not it at all", "new_password": "a new long secret"},
        headers=csrf,
    )
    assert wrong.status == 403
    assert await error_code(wrong) == "bad_credentials"
    weak = await client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=csrf,
    )
    assert weak.status == 400
    assert await error_code(weak) == "weak_password"
    assert (await client.get("/api/v1/me")).status == 200


async def test_deactivation_ends_sessions_and_tokens(
    client: TestClient[Any, Any], other_device: aiohttp.ClientSession
) -> None:
    await add_user(client.app, "root", role="admin")
    await add_user(client.app, "ana")
    admin_csrf = await sign_in(client, "root")
    await other_device.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
    me = await other_device.get("/api/v1/me")
    ana_csrf = (await me.json())["csrf_token"]
    token_response = await other_device.post(
        "/api/v1/tokens", json={"name": "bot"}, headers={"X-CSRF-Token": ana_csrf}
    )
    token = (await token_response.json())["token"]

    patched = await client.patch("/api/v1/users/ana", json={"active": False}, headers=admin_csrf)
    assert patched.status == 200
    assert (await patched.json())["user"]["active"] is False
    assert (await other_device.get("/api/v1/me")).status == 401
    bearer = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status == 401

    reactivated = await client.patch("/api/v1/users/ana", json={"active": True}, headers=admin_csrf)
    assert reactivated.status == 200
    again = await other_device.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
    assert again.status == 200


async def test_unsafe_cookie_requests_need_the_csrf_token(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "ana")
    csrf = await sign_in(client, "ana")
    missing = await client.post("/api/v1/tokens", json={"name": "x"})
    assert missing.status == 403
    assert await error_code(missing) == "csrf_failed"
    wrong = await client.post(
        "/api/v1/tokens", json={"name": "x"}, headers={"X-CSRF-Token": "guess"}
    )
    assert wrong.status == 403
    cross_site = await client.post(
        "/api/v1/tokens",
        json={"name": "x"},
        headers={**csrf, "Origin": "https://evil.example"},
    )
    assert cross_site.status == 403
    good = await client.post("/api/v1/tokens", json={"name": "x"}, headers=csrf)
    assert good.status == 201
    # Reads need no token.
    assert (await client.get("/api/v1/tokens")).status == 200


async def test_sign_in_from_another_site_is_refused(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "ana")
    response = await client.post(
        "/api/v1/login",
        json={"username": "ana", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status == 403
    assert await error_code(response) == "csrf_failed"
    fetch_metadata = await client.post(
        "/api/v1/login",
        json={"username": "ana", "password": PASSWORD},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert fetch_metadata.status == 403


async def test_sign_in_rate_limit_backs_off_and_recovers(
    client: TestClient[Any, Any], clock: Any
) -> None:
    await add_user(client.app, "ana")
    bad = {"username": "ana", "password": "wrong password"}
    for _ in range(5):
        assert (await client.post("/api/v1/login", json=bad)).status == 401
    # The sixth failure is still checked, and starts a 1 s block.
    assert (await client.post("/api/v1/login", json=bad)).status == 401
    blocked = await client.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
    assert blocked.status == 429
    body = await blocked.json()
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["retry_after"] >= 1
    assert int(blocked.headers["Retry-After"]) >= 1

    clock.advance(1.5)
    assert (await client.post("/api/v1/login", json=bad)).status == 401  # now blocked 2 s
    clock.advance(1.5)
    still = await client.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
    assert still.status == 429
    clock.advance(1)
    ok = await client.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
    assert ok.status == 200
    # Success clears the username's count: five more tries are free again.
    for _ in range(5):
        assert (await client.post("/api/v1/login", json=bad)).status == 401


async def test_rate_limit_per_address_spans_usernames(client: TestClient[Any, Any]) -> None:
    for i in range(20):
        response = await client.post(
            "/api/v1/login", json={"username": f"guess{i}", "password": "whatever1"}
        )
        assert response.status == 401
    await client.post("/api/v1/login", json={"username": "guess-last", "password": "whatever1"})
    blocked = await client.post(
        "/api/v1/login", json={"username": "someone-else", "password": "whatever1"}
    )
    assert blocked.status == 429


async def test_api_token_works_everywhere_and_can_be_revoked(
    client: TestClient[Any, Any],
) -> None:
    await add_user(client.app, "ana")
    csrf = await sign_in(client, "ana")
    created = await client.post(
        "/api/v1/tokens", json={"name": "deploy bot", "expires_in_days": 30}, headers=csrf
    )
    assert created.status == 201
    body = await created.json()
    token = body["token"]
    assert token.startswith("collab_pat_")
    assert body["prefix"] == token[: len(body["prefix"])]

    listed = await (await client.get("/api/v1/tokens")).json()
    assert [t["name"] for t in listed["tokens"]] == ["deploy bot"]
    assert "token" not in listed["tokens"][0]

    bot = aiohttp.ClientSession(base_url=str(client.make_url("/")))
    try:
        auth = {"Authorization": f"Bearer {token}"}
        me = await bot.get("/api/v1/me", headers=auth)
        assert me.status == 200
        assert (await me.json())["csrf_token"] is None
        # Unsafe requests with a bearer token need no CSRF header.
        made = await bot.post("/api/v1/tokens", json={"name": "second"}, headers=auth)
        assert made.status == 201
        async with bot.ws_connect("/ws", headers=auth) as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello"
            assert hello["user"]["username"] == "ana"

        revoked = await client.delete(f"/api/v1/tokens/{body['id']}", headers=csrf)
        assert revoked.status == 204
        after = await bot.get("/api/v1/me", headers=auth)
        assert after.status == 401
        assert (await after.json())["error"]["code"] == "invalid_token"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await bot.ws_connect("/ws", headers=auth)
        assert refused.value.status == 401
    finally:
        await bot.close()


async def test_cannot_revoke_someone_elses_token(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "ana")
    await add_user(client.app, "bob")
    csrf = await sign_in(client, "ana")
    token_id = (
        await (await client.post("/api/v1/tokens", json={"name": "a"}, headers=csrf)).json()
    )["id"]
    csrf_bob = await sign_in(client, "bob")
    response = await client.delete(f"/api/v1/tokens/{token_id}", headers=csrf_bob)
    assert response.status == 404
    assert await error_code(response) == "token_not_found"


async def test_invitation_is_single_use(
    client: TestClient[Any, Any], other_device: aiohttp.ClientSession
) -> None:
    await add_user(client.app, "root", role="admin")
    csrf = await sign_in(client, "root")
    created = await client.post("/api/v1/invitations", json={"role": "guest"}, headers=csrf)
    assert created.status == 201
    invitation = await created.json()
    code = invitation["code"]
    assert invitation["url"].endswith(f"/#/invite/{code}")

    info = await other_device.get(f"/api/v1/invitations/{code}")
    assert (await info.json())["role"] == "guest"
    accept = await other_device.post(
        f"/api/v1/invitations/{code}/accept",
        json={"username": "partner", "password": "partner password", "display_name": "Pat"},
    )
    assert accept.status == 201
    user = (await accept.json())["user"]
    assert user["role"] == "guest"
    assert user["display_name"] == "Pat"
    assert (await other_device.get("/api/v1/me")).status == 200

    again = await client.post(
        f"/api/v1/invitations/{code}/accept",
        json={"username": "another", "password": "another password"},
    )
    assert again.status == 410
    assert await error_code(again) == "invitation_used"
    assert (await client.get(f"/api/v1/invitations/{code}")).status == 410


async def test_invitation_expires(client: TestClient[Any, Any], clock: Any) -> None:
    await add_user(client.app, "root", role="admin")
    csrf = await sign_in(client, "root")
    created = await client.post("/api/v1/invitations", json={"expires_in_hours": 1}, headers=csrf)
    code = (await created.json())["code"]
    clock.advance(3601)
    response = await client.post(
        f"/api/v1/invitations/{code}/accept",
        json={"username": "late", "password": "late password"},
    )
    assert response.status == 410
    assert await error_code(response) == "invitation_expired"


async def test_taken_username_leaves_the_invitation_usable(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "root", role="admin")
    csrf = await sign_in(client, "root")
    code = (await (await client.post("/api/v1/invitations", json={}, headers=csrf)).json())["code"]
    taken = await client.post(
        f"/api/v1/invitations/{code}/accept", json={"username": "ROOT", "password": "x password"}
    )
    assert taken.status == 409
    assert await error_code(taken) == "username_taken"
    ok = await client.post(
        f"/api/v1/invitations/{code}/accept", json={"username": "newbie", "password": "x password"}
    )
    assert ok.status == 201


async def test_revoked_and_unknown_invitations(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "root", role="admin")
    csrf = await sign_in(client, "root")
    created = await (await client.post("/api/v1/invitations", json={}, headers=csrf)).json()
    pending = await (await client.get("/api/v1/invitations")).json()
    assert [i["id"] for i in pending["invitations"]] == [created["id"]]
    assert (await client.delete(f"/api/v1/invitations/{created['id']}", headers=csrf)).status == 204
    gone = await client.get(f"/api/v1/invitations/{created['code']}")
    assert gone.status == 404
    assert await error_code(gone) == "invitation_not_found"
    assert (await client.get("/api/v1/invitations/not-a-code")).status == 404


async def test_first_run_link_creates_the_first_admin(client: TestClient[Any, Any]) -> None:
    link = await client.app[ACCOUNTS].first_run_link()
    assert link is not None
    code = link.rsplit("/", 1)[1]
    response = await client.post(
        f"/api/v1/invitations/{code}/accept",
        json={"username": "founder", "password": "founder password"},
    )
    assert response.status == 201
    assert (await response.json())["user"]["role"] == "admin"
    assert await client.app[ACCOUNTS].first_run_link() is None


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/invitations", None),
        ("POST", "/api/v1/invitations", {"role": "admin"}),
        ("DELETE", "/api/v1/invitations/1", None),
        ("POST", "/api/v1/users", {"username": "x", "password": "xxxxxxxxx"}),
        ("PATCH", "/api/v1/users/ana", {"role": "admin"}),
        ("GET", "/api/v1/users", None),
        ("GET", "/api/v1/users/root", None),
    ],
)
async def test_guest_cannot_use_admin_or_directory_routes(
    client: TestClient[Any, Any], method: str, path: str, body: Any
) -> None:
    await add_user(client.app, "root", role="admin")
    await add_user(client.app, "ana", role="guest")
    csrf = await sign_in(client, "ana")
    response = await client.request(method, path, json=body, headers=csrf)
    assert response.status == 403, await response.text()
    assert await error_code(response) == "forbidden"


async def test_member_cannot_use_admin_routes(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "root", role="admin")
    await add_user(client.app, "ana")
    csrf = await sign_in(client, "ana")
    for method, path, body in [
        ("POST", "/api/v1/invitations", {}),
        ("PATCH", "/api/v1/users/ana", {"role": "admin"}),
        ("POST", "/api/v1/users", {"username": "x", "password": "xxxxxxxxx"}),
    ]:
        response = await client.request(method, path, json=body, headers=csrf)
        assert response.status == 403, path
    me = await (await client.get("/api/v1/me")).json()
    assert me["user"]["role"] == "member"


async def test_admin_manages_users(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "root", role="admin")
    csrf = await sign_in(client, "root")
    created = await client.post(
        "/api/v1/users",
        json={"username": "Bob", "password": "bob password", "email": "bob@example.com"},
        headers=csrf,
    )
    assert created.status == 201
    assert (await created.json())["user"]["username"] == "bob"
    duplicate = await client.post(
        "/api/v1/users", json={"username": "bob", "password": "bob password"}, headers=csrf
    )
    assert duplicate.status == 409
    promoted = await client.patch("/api/v1/users/bob", json={"role": "admin"}, headers=csrf)
    assert (await promoted.json())["user"]["role"] == "admin"
    await client.patch("/api/v1/users/bob", json={"active": False}, headers=csrf)
    active = await (await client.get("/api/v1/users")).json()
    assert [u["username"] for u in active["users"]] == ["root"]
    everyone = await (await client.get("/api/v1/users?include_inactive=true")).json()
    assert [u["username"] for u in everyone["users"]] == ["bob", "root"]
    bad_role = await client.patch("/api/v1/users/bob", json={"role": "king"}, headers=csrf)
    assert bad_role.status == 400
    missing = await client.patch("/api/v1/users/nobody", json={"role": "member"}, headers=csrf)
    assert missing.status == 404


async def test_last_admin_cannot_be_demoted_or_deactivated(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "root", role="admin")
    csrf = await sign_in(client, "root")
    for change in ({"role": "member"}, {"active": False}):
        response = await client.patch("/api/v1/users/root", json=change, headers=csrf)
        assert response.status == 409
        assert await error_code(response) == "last_admin"


async def test_user_list_paginates(client: TestClient[Any, Any]) -> None:
    for name in ("a1", "a2", "a3"):
        await add_user(client.app, name)
    await sign_in(client, "a1")
    first = await (await client.get("/api/v1/users?limit=2")).json()
    assert [u["username"] for u in first["users"]] == ["a1", "a2"]
    assert "email" not in first["users"][0]  # members see the directory, not contact data
    second = await (await client.get(f"/api/v1/users?limit=2&after={first['next_after']}")).json()
    assert [u["username"] for u in second["users"]] == ["a3"]
    assert second["next_after"] is None
    bad = await client.get("/api/v1/users?limit=0")
    assert bad.status == 400
    assert await error_code(bad) == "invalid_field"


BODY_ROUTES = [
    ("POST", "/api/v1/login", False, {"username": 5, "password": "x"}),
    ("PATCH", "/api/v1/me", True, {"display_name": 7}),
    ("POST", "/api/v1/me/password", True, {"current_password": [], "new_password": "x"}),
    ("POST", "/api/v1/tokens", True, {"name": "ok", "expires_in_days": "soon"}),
    ("POST", "/api/v1/invitations", True, {"role": 1}),
    ("POST", "/api/v1/invitations/{code}/accept", False, {"username": "ok", "password": 8}),
    ("POST", "/api/v1/users", True, {"username": "ok", "password": "long enough", "role": []}),
    ("PATCH", "/api/v1/users/root", True, {"active": "yes please"}),
]


@pytest.mark.parametrize(("method", "path", "signed_in", "wrong_type"), BODY_ROUTES)
async def test_bad_bodies_get_4xx_with_a_code(
    client: TestClient[Any, Any],
    method: str,
    path: str,
    signed_in: bool,
    wrong_type: dict[str, Any],
) -> None:
    await add_user(client.app, "root", role="admin")
    headers = await sign_in(client, "root") if signed_in else {}
    _, code = await client.app[ACCOUNTS].create_invitation(None)
    path = path.replace("{code}", code)
    send = {**headers, "Content-Type": "application/json"}

    cases: list[tuple[bytes, str]] = [
        (b"{not json", "bad_json"),
        (b"", "bad_json"),
        (b"[1, 2]", "invalid_field"),
        (json.dumps(wrong_type).encode(), "invalid_field"),
        (b'{"surprise": true}', "unknown_field"),
    ]
    for raw, expected in cases:
        response = await client.request(method, path, data=raw, headers=send)
        assert response.status == 400, (raw, await response.text())
        error = (await response.json())["error"]
        assert error["code"] == expected, (raw, error)
        assert error["message"]

    form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    wrong_type_header = await client.request(method, path, data=b"a=b", headers=form)
    assert wrong_type_header.status == 415
    assert await error_code(wrong_type_header) == "unsupported_media_type"


@pytest.mark.parametrize(
    ("path", "missing"),
    [
        ("/api/v1/login", "username"),
        ("/api/v1/me/password", "current_password"),
        ("/api/v1/tokens", "name"),
        ("/api/v1/invitations/{code}/accept", "username"),
        ("/api/v1/users", "username"),
    ],
)
async def test_missing_fields_are_named(
    client: TestClient[Any, Any], path: str, missing: str
) -> None:
    await add_user(client.app, "root", role="admin")
    headers = await sign_in(client, "root")
    _, code = await client.app[ACCOUNTS].create_invitation(None)
    response = await client.post(path.replace("{code}", code), json={}, headers=headers)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "missing_field"
    assert error["field"] == missing


async def test_oversized_body_is_refused(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/api/v1/login",
        data=b'{"username": "' + b"a" * 200_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 413
    assert await error_code(response) == "payload_too_large"


async def test_every_response_carries_security_headers(client: TestClient[Any, Any]) -> None:
    for path in ("/", "/healthz", "/api/v1/me", "/no-such-page"):
        response = await client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["X-Request-ID"]


async def test_errors_are_json_and_never_show_a_traceback(
    aiohttp_client: Any, make_app: Any
) -> None:
    app = make_app()

    async def explode(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals /etc/passwd")

    from collab.api.public import public

    app.router.add_get("/api/v1/explode", public(explode))
    client = await aiohttp_client(app)
    response = await client.get("/api/v1/explode")
    assert response.status == 500
    text = await response.text()
    assert "Traceback" not in text and "secret internals" not in text
    body = await response.json()
    assert body["error"]["code"] == "internal"
    assert response.headers["X-Request-ID"] in body["error"]["message"]

    not_found = await client.get("/api/v1/nothing-here")
    assert not_found.status == 404
    assert (await not_found.json())["error"]["code"] == "not_found"
    wrong_method = await client.put("/api/v1/login")
    assert wrong_method.status == 405
    assert (await wrong_method.json())["error"]["code"] == "method_not_allowed"


async def test_profile_update(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "ana")
    csrf = await sign_in(client, "ana")
    response = await client.patch(
        "/api/v1/me",
        json={"display_name": "  Ana   María ", "email": "ana@example.com"},
        headers=csrf,
    )
    assert response.status == 200
    user = (await response.json())["user"]
    assert user["display_name"] == "Ana María"
    assert user["email"] == "ana@example.com"
    bad = await client.patch("/api/v1/me", json={"email": "not-an-address"}, headers=csrf)
    assert bad.status == 400


async def test_reserved_and_malformed_usernames_are_refused(client: TestClient[Any, Any]) -> None:
    await add_user(client.app, "root", role="admin")
    csrf = await sign_in(client, "root")
    for name in ("room", "has space", "-dash", "x" * 33, "émile"):
        response = await client.post(
            "/api/v1/users", json={"username": name, "password": "long enough"}, headers=csrf
        )
        assert response.status == 400, name
        assert await error_code(response) == "invalid_username"
