"""Steps chat tests share: people, rooms, sockets that collect events."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from tests.helpers import PASSWORD, add_user

_ids = itertools.count(1)


class Person:
    """A signed-in user with their own cookie jar on one server (or node)."""

    def __init__(self, client: TestClient[Any, Any], username: str) -> None:
        self.client = client
        self.username = username
        self.http = aiohttp.ClientSession(
            base_url=str(client.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)
        )
        self.csrf: dict[str, str] = {}
        self.user_id = 0

    @classmethod
    async def create(
        cls, client: TestClient[Any, Any], username: str, role: str = "member"
    ) -> Person:
        person = cls(client, username)
        user = await add_user(client.app, username, role=role)
        person.user_id = user.id
        await person.sign_in()
        return person

    async def sign_in(self) -> None:
        response = await self.http.post(
            "/api/v1/login", json={"username": self.username, "password": PASSWORD}
        )
        assert response.status == 200, await response.text()
        self.csrf = {"X-CSRF-Token": (await response.json())["csrf_token"]}

    async def call(self, method: str, path: str, expect: int | None = None, **kw: Any) -> Any:
        headers = {**self.csrf, **kw.pop("headers", {})}
        response = await self.http.request(method, path, headers=headers, **kw)
        body = await response.json() if response.content_type == "application/json" else None
        if expect is not None:
            assert response.status == expect, (method, path, response.status, body)
        return body

    async def room(
        self, kind: str = "channel", name: str | None = None, members: list[str] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": kind, "members": members or []}
        if name is not None:
            body["name"] = name
        created = await self.call("POST", "/api/v1/rooms", json=body)
        return created["room"]

    async def post(self, room: int, text: str, **extra: Any) -> dict[str, Any]:
        body = await self.call(
            "POST", f"/api/v1/rooms/{room}/messages", 201, json={"body": text, **extra}
        )
        return body["message"]

    async def socket(self) -> Socket:
        ws = await self.http.ws_connect("/ws")
        socket = Socket(ws)
        hello = await socket.next_event()
        assert hello["type"] == "hello"
        return socket

    async def close(self) -> None:
        await self.http.close()


class Socket:
    """A socket that keeps events and command answers apart."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = message.json()
            future = self.answers.pop(frame.get("re") or "", None)
            if future is not None:
                future.set_result(frame)
            else:
                await self.events.put(frame)

    async def command(self, type_: str, **fields: Any) -> dict[str, Any]:
        command_id = f"c{next(_ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.answers[command_id] = future
        await self.ws.send_json({"id": command_id, "type": type_, **fields})
        return await asyncio.wait_for(future, 10)

    async def next_event(self, type_: str | None = None, timeout: float = 5) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if type_ is None or event["type"] == type_:
                    return event

    async def no_event(self, type_: str, wait: float = 0.3) -> None:
        try:
            event = await self.next_event(type_, timeout=wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected {type_}: {event}")

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def make_trio(
    client: TestClient[Any, Any], members: list[str]
) -> tuple[Person, Person, Person, dict[str, Any]]:
    """An admin, two members and a channel ana made with ``members`` in it."""
    root = await Person.create(client, "root", role="admin")
    ana = await Person.create(client, "ana")
    bob = await Person.create(client, "bob")
    room = await ana.room("channel", "team", members)
    return root, ana, bob, room
