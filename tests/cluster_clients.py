"""A chat client that survives node deaths and bus gaps the way the protocol says.

On every socket it sends ``sync`` with its sync points as the first command,
applies ``missed``, de-duplicates by (room, seq), fills gaps with
``chat.history`` and ``after``, syncs again on ``sync.needed``, and on a
close reconnects with back-off to the next address. Its outbox keeps each
message (with its ``client_msg_id``) until the server has answered ``ok``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from typing import Any

import aiohttp

PASSWORD = "correct horse battery"
_ids = itertools.count(1)


class ResumingClient:
    def __init__(self, username: str, addresses: list[str], first: int, rooms: list[int]) -> None:
        self.username = username
        self.addresses = addresses
        self.index = first
        self.rooms = rooms
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.held: dict[int, dict[int, dict[str, Any]]] = {room: {} for room in rooms}
        self.point: dict[int, int] = dict.fromkeys(rooms, 0)
        self.conflicts: list[tuple[int, int]] = []  # same (room, seq), another message id
        self.outbox: dict[str, tuple[int, str]] = {}  # client_msg_id -> (room, body)
        self.in_flight: set[str] = set()
        self.acked: dict[str, int] = {}  # client_msg_id -> message id
        self.refusals: list[str] = []  # error codes of refused sends
        self.nodes: list[str] = []  # the node of each socket, from hello
        self.sync_needed = 0
        self.recovered = 0  # messages first learnt from a sync or history answer, not live
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.ready = asyncio.Event()  # a socket is open and its first sync answered
        self.stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sent = 0

    # -- life cycle -------------------------------------------------------------

    async def sign_in(self, base: str) -> None:
        """Sign in at ``base``; the session cookie is good on every node."""
        response = await self.http.post(
            f"{base}/api/v1/login", json={"username": self.username, "password": PASSWORD}
        )
        assert response.status == 200, await response.text()

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.stopping = True
        for task in [*self._tasks, *([self._runner] if self._runner else [])]:
            task.cancel()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)
        await self.http.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        backoff = 0.1
        while not self.stopping:
            base = self.addresses[self.index % len(self.addresses)]
            try:
                ws = await self.http.ws_connect(f"{base}/ws", timeout=aiohttp.ClientWSTimeout(5))
            except (aiohttp.ClientError, OSError, TimeoutError):
                self.index += 1
                await asyncio.sleep(backoff * (1 + random.random()))
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.1
            try:
                await self._session(ws)
            except (aiohttp.ClientError, OSError, TimeoutError, ConnectionError):
                pass
            finally:
                self.ready.clear()
                self.ws = None
                for future in self.answers.values():
                    if not future.done():
                        future.set_exception(ConnectionError("socket closed"))
                self.answers.clear()
                self.in_flight.clear()
            if not self.stopping:
                self.index += 1  # somewhere else
                await asyncio.sleep(0.05 + random.random() * 0.2)

    async def _session(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "hello", hello
        self.nodes.append(hello["node"])
        self.ws = ws
        reader = asyncio.create_task(self._read(ws))
        try:
            await self._sync()  # the first command
            self.ready.set()
            self._flush()
            while not reader.done():
                await asyncio.wait({reader}, timeout=0.5)
                await self._fill_gaps()
                self._flush()
        finally:
            reader.cancel()
            with contextlib.suppress(Exception):
                await ws.close()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = message.json()
            future = self.answers.pop(frame.get("re") or "", None)
            if future is not None:
                if not future.done():
                    future.set_result(frame)
            elif frame.get("type") == "chat.message":
                self._apply(frame)
            elif frame.get("type") == "sync.needed":
                self.sync_needed += 1
                self._spawn(self._resync())

    async def _command(self, type_: str, **fields: Any) -> dict[str, Any]:
        ws = self.ws
        if ws is None:
            raise ConnectionError("not connected")
        command_id = f"c{next(_ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        # Retrieved even if nobody waits any more (a timed-out command on a closed socket).
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.answers[command_id] = future
        await ws.send_json({"id": command_id, "type": type_, **fields})
        return await asyncio.wait_for(future, 10)

    # -- messages ---------------------------------------------------------------

    def _apply(self, message: dict[str, Any], live: bool = True) -> None:
        room, seq = message["room"], message["seq"]
        if room not in self.held:
            return
        mine = self.held[room].get(seq)
        if mine is not None:
            if mine["id"] != message["id"]:
                self.conflicts.append((room, seq))
            return  # a repeat: shown once
        self.held[room][seq] = message
        self.recovered += not live
        while self.point[room] + 1 in self.held[room]:
            self.point[room] += 1

    async def _sync(self) -> None:
        points = [{"room": room, "seq": self.point[room]} for room in self.rooms]
        answer = await self._command("sync", rooms=points)
        assert answer.get("ok"), answer
        for entry in answer["missed"]:
            for message in entry["messages"]:
                self._apply(message, live=False)
        await self._fill_gaps(force=True)

    async def _resync(self) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError, aiohttp.ClientError):
            await self._sync()

    async def _fill_gaps(self, force: bool = False) -> None:
        """Rooms with messages held above a gap (or an incomplete sync): page with ``after``."""
        for room in self.rooms:
            held = self.held[room]
            if not force and not (held and max(held) > self.point[room]):
                continue
            more = True
            while more:
                answer = await self._command(
                    "chat.history", room=room, after=self.point[room], limit=200
                )
                if not answer.get("ok"):
                    return
                for message in answer["messages"]:
                    self._apply(message, live=False)
                more = answer["more"] and bool(answer["messages"])

    def queue(self, room: int) -> str:
        """A new message into the outbox; it is sent when a socket is ready."""
        self._sent += 1
        client_msg_id = f"{self.username}-{self._sent}"
        self.outbox[client_msg_id] = (room, f"{self.username} says {self._sent}")
        self._flush()
        return client_msg_id

    def _flush(self) -> None:
        if not self.ready.is_set():
            return
        for client_msg_id in list(self.outbox):
            if client_msg_id not in self.in_flight:
                self.in_flight.add(client_msg_id)
                self._spawn(self._send(client_msg_id))

    async def _send(self, client_msg_id: str) -> None:
        room, body = self.outbox[client_msg_id]
        try:
            answer = await self._command(
                "chat.send", room=room, body=body, client_msg_id=client_msg_id
            )
        except (ConnectionError, TimeoutError, aiohttp.ClientError):
            self.in_flight.discard(client_msg_id)
            return
        if answer.get("ok"):
            self.acked[client_msg_id] = answer["message"]["id"]
            self.outbox.pop(client_msg_id, None)
            self.in_flight.discard(client_msg_id)
            return
        self.refusals.append(answer["error"]["code"])
        await asyncio.sleep(0.3)  # kept in the outbox, tried again
        self.in_flight.discard(client_msg_id)

    def caught_up(self, last_seq: dict[int, int]) -> bool:
        return all(self.point[room] >= last_seq[room] for room in self.rooms)
