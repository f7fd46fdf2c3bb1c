"""Small steps many tests take: make a user, sign in, call with the CSRF header."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from collab.appkeys import ACCOUNTS
from collab.store.users import UserRecord

PASSWORD = "correct horse battery"


async def add_user(
    app: web.Application, username: str, role: str = "member", password: str = PASSWORD
) -> UserRecord:
    return await app[ACCOUNTS].create_user(username=username, password=password, role=role)


async def sign_in(
    client: TestClient[Any, Any], username: str, password: str = PASSWORD
) -> dict[str, str]:
    """Sign in on this client's cookie jar; returns headers for unsafe requests."""
    response = await client.post("/api/v1/login", json={"username": username, "password": password})
    assert response.status == 200, await response.text()
    body = await response.json()
    return {"X-CSRF-Token": body["csrf_token"]}


async def error_code(response: Any) -> str:
    body = await response.json()
    return str(body["error"]["code"])


async def next_answer(ws: Any, timeout: float = 5) -> dict[str, Any]:
    """The next command answer on a raw socket, skipping events (presence, chat...)."""
    while True:
        frame: dict[str, Any] = await ws.receive_json(timeout=timeout)
        if "re" in frame:
            return frame
