"""The client side of the fan-out benchmarks: one worker process holding many sockets.

A worker is started by ``chat_fanout.py`` (``multiprocessing``, spawn) and
talks to it over a pipe: it connects its share of the clients, reports
``ready``, sends warm-up and then measured messages on a fixed schedule for
the rooms it owns, and keeps receiving until it is told to finish.

Per received frame the work is kept small: one ``msgspec`` decode into a
tiny struct (unknown fields are skipped by the decoder without building
objects), one set look-up for duplicates, and one subtraction for latency.
The send time is embedded in the message body as ``t=<time_ns>`` (warm-up
messages use ``w=<time_ns>`` and are counted for loss and duplicates but not
for latency).

Two targets are supported with the same code:

- ``collab``: ``chat.send`` commands over an authenticated socket; the
  command's answer tells the room and ``seq`` the server gave the message.
- ``bare``: ``bench/bare_fanout.py``; the sender writes the whole event
  itself (room, seq and a body of the same size as collab's event) and the
  server forwards the bytes.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import resource
import signal
import time
from typing import Any

import aiohttp
import msgspec

CONNECT_CONCURRENCY = 32
ACK_WAIT_S = 15.0


class _Ack(msgspec.Struct):
    room: int = 0
    seq: int = 0


class _Err(msgspec.Struct):
    code: str = ""


class Frame(msgspec.Struct):
    """The few members a client looks at; everything else is skipped while decoding."""

    type: str = ""
    room: int = 0
    seq: int = 0
    body: str = ""
    re: str | None = None
    message: _Ack | None = None
    error: _Err | None = None


_decode = msgspec.json.Decoder(Frame).decode

# The bare server forwards what the sender wrote; this template has the members
# (and so roughly the size) of collab's chat.message event.
BARE_EVENT = (
    '{{"type":"chat.message","id":{seq},"room":{room},"seq":{seq},"kind":"user",'
    '"sender":{{"id":{uid},"username":"{name}","display_name":"{name}"}},"bot_name":null,'
    '"body":"{body}","created_at":{ms},"edited_at":null,"deleted":false,"reply_to":null,'
    '"mentions":[],"mentions_room":false,"reactions":[],"files":[],'
    '"client_msg_id":"{cid}","change":{seq},"meta":null}}'
)


def raise_nofile_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Client:
    __slots__ = ("index", "name", "pending", "seen", "token", "uid", "url", "ws")

    def __init__(self, index: int, url: str, token: str | None, uid: int, name: str) -> None:
        self.index = index
        self.url = url
        self.token = token
        self.uid = uid
        self.name = name
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.seen: dict[int, set[int]] = {}
        self.pending = 0


class Worker:
    def __init__(self, spec: dict[str, Any], pipe: Any) -> None:
        self.spec = spec
        self.pipe = pipe
        self.target: str = spec["target"]
        self.clients = [Client(*c) for c in spec["clients"]]
        self.by_index = {c.index: c for c in self.clients}
        self.received = 0
        self.received_warmup = 0
        self.dup = 0
        self.latencies = array.array("q")
        self.acked: dict[int, int] = {}
        self.sent = 0
        self.answered = 0
        self.errors: dict[str, int] = {}
        self.disconnects = 0
        self.connect_failures: dict[str, int] = {}
        self.send_lag_max = 0.0
        self.bare_seq: dict[int, int] = {}
        self.stopping = False
        self._readers: list[asyncio.Task[None]] = []
        self.session: aiohttp.ClientSession | None = None
        self._ids = 0
        self.cpu_at_go = 0.0
        self._all_answered = asyncio.Event()

    # -- control ------------------------------------------------------------------

    async def recv(self) -> Any:
        return await asyncio.to_thread(self.pipe.recv)

    def send(self, *message: Any) -> None:
        self.pipe.send(message)

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        self.session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        )
        try:
            started = time.monotonic()
            await self.connect_all()
            self.send(
                "ready",
                {
                    "connected": sum(1 for c in self.clients if c.ws is not None),
                    "failures": self.connect_failures,
                    "seconds": time.monotonic() - started,
                },
            )
            while True:
                command, *args = await self.recv()
                if command == "warmup":
                    await self.warmup(*args)
                    self.send("warm", self.summary_of_sends())
                elif command == "go":
                    self.cpu_at_go = time.process_time()
                    await self.go(*args)
                    self.send("sent", self.summary_of_sends())
                elif command == "count":
                    total = self.received + self.received_warmup
                    self.send("count", total, time.process_time())
                elif command == "finish":
                    self.send("result", self.result())
                    break
        except (EOFError, OSError):
            pass  # the bench has gone (its pipe is closed): just stop
        finally:
            self.stopping = True
            for task in self._readers:
                task.cancel()
            for client in self.clients:
                if client.ws is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(client.ws.close(), 1)
            await self.session.close()

    # -- connecting ---------------------------------------------------------------

    async def connect_all(self) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(client: Client) -> None:
            async with gate:
                for attempt in range(3):
                    try:
                        await asyncio.wait_for(self.connect(client), 60)
                        return
                    except Exception as exc:
                        name = type(exc).__name__
                        self.connect_failures[name] = self.connect_failures.get(name, 0) + 1
                        client.ws = None
                        await asyncio.sleep(0.2 * (attempt + 1))

        await asyncio.gather(*(one(c) for c in self.clients))

    async def connect(self, client: Client) -> None:
        assert self.session is not None
        headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
        ws = await self.session.ws_connect(
            client.url, headers=headers, autoping=True, max_msg_size=4 * 1024 * 1024
        )
        hello = await ws.receive(timeout=30)
        if hello.type != aiohttp.WSMsgType.TEXT or _decode(hello.data).type != "hello":
            await ws.close()
            raise ConnectionError(f"no hello: {hello.type}")
        if self.target == "collab":
            # Commands are read only after the server has subscribed the socket to
            # its rooms, so the answer to a ping means "subscribed".
            await ws.send_str('{"id":"p","type":"ping"}')
            while True:
                answer = await ws.receive(timeout=30)
                if answer.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"closed before ping answer: {answer.type}")
                if _decode(answer.data).re == "p":
                    break
        client.ws = ws
        self._readers.append(asyncio.create_task(self.read_forever(client)))

    # -- receiving ------------------------------------------------------------------

    async def read_forever(self, client: Client) -> None:
        ws = client.ws
        assert ws is not None
        seen = client.seen
        text = aiohttp.WSMsgType.TEXT
        latencies = self.latencies
        while True:
            message = await ws.receive()
            if message.type is not text:
                if message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    if not self.stopping:
                        self.disconnects += 1
                    return
                continue
            frame = _decode(message.data)
            if frame.type == "chat.message":
                now = time.time_ns()
                seqs = seen.get(frame.room)
                if seqs is None:
                    seqs = seen[frame.room] = set()
                if frame.seq in seqs:
                    self.dup += 1
                    continue
                seqs.add(frame.seq)
                body = frame.body
                if body[0] == "t":
                    self.received += 1
                    latencies.append(now - int(body[2:]))
                else:
                    self.received_warmup += 1
            elif frame.re is not None:
                self.on_answer(client, frame)

    def on_answer(self, client: Client, frame: Frame) -> None:
        if frame.re == "p":
            return
        client.pending -= 1
        self.answered += 1
        if self.answered >= self.sent:
            self._all_answered.set()
        if frame.message is not None:
            room = frame.message.room
            self.acked[room] = self.acked.get(room, 0) + 1
        elif frame.error is not None:
            code = frame.error.code
            self.errors[code] = self.errors.get(code, 0) + 1

    # -- sending ----------------------------------------------------------------------

    async def send_one(self, room: int, sender: Client, marker: str) -> None:
        ws = sender.ws
        if ws is None or ws.closed:
            self.errors["sender_closed"] = self.errors.get("sender_closed", 0) + 1
            return
        self._ids += 1
        cid = f"w{self.spec['worker']}-{self._ids}"
        if self.target == "collab":
            frame = (
                f'{{"id":"{cid}","type":"chat.send","room":{room},'
                f'"body":"{marker}={time.time_ns()}","client_msg_id":"{cid}"}}'
            )
            sender.pending += 1
        else:
            seq = self.bare_seq[room] = self.bare_seq.get(room, 0) + 1
            now = time.time_ns()
            frame = BARE_EVENT.format(
                seq=seq,
                room=room,
                uid=sender.uid,
                name=sender.name,
                body=f"{marker}={now}",
                ms=now // 1_000_000,
                cid=cid,
            )
            self.acked[room] = self.acked.get(room, 0) + 1
        self.sent += 1
        await ws.send_str(frame)

    def _senders(self) -> list[tuple[int, int, list[Client]]]:
        """(room id, room's position among all rooms, local members taking turns)."""
        plan = []
        for room_id, position, members in self.spec["send_rooms"]:
            clients = [self.by_index[i] for i in members if self.by_index[i].ws is not None]
            if clients:
                plan.append((room_id, position, clients))
        return plan

    async def warmup(self, per_room: int) -> None:
        for _ in range(per_room):
            for turn, (room_id, _position, members) in enumerate(self._senders()):
                await self.send_one(room_id, members[turn % len(members)], "w")
            await asyncio.sleep(0.05)
        await self.wait_answers()

    async def go(self, start_ns: int, seconds: float, rate: float, rooms: int) -> None:
        """Send on a fixed open-loop schedule: message k of round(rate * seconds) is due
        at start + k/rate and goes to room k mod rooms, so each room gets an even share,
        the rooms are staggered, and a late message is sent at once, not skipped."""
        start = start_ns / 1e9
        total = round(rate * seconds)
        plan = {position: (room_id, members) for room_id, position, members in self._senders()}
        turns = dict.fromkeys(plan, 0)
        for k in range(total):
            position = k % rooms
            if position not in plan:
                continue
            delay = start + k / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.send_lag_max = max(self.send_lag_max, -delay)
            room_id, members = plan[position]
            await self.send_one(room_id, members[turns[position] % len(members)], "t")
            turns[position] += 1
        await self.wait_answers()

    async def wait_answers(self) -> None:
        if self.target != "collab" or self.answered >= self.sent:
            return
        self._all_answered.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_answered.wait(), ACK_WAIT_S)

    def summary_of_sends(self) -> dict[str, Any]:
        return {
            "acked": dict(self.acked),
            "sent": self.sent,
            "unanswered": self.sent - self.answered if self.target == "collab" else 0,
            "errors": dict(self.errors),
        }

    def result(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "received_warmup": self.received_warmup,
            "dup": self.dup,
            "latencies_ns": self.latencies.tobytes(),
            "disconnects": self.disconnects,
            "send_lag_max_s": self.send_lag_max,
            "cpu_s": time.process_time(),
            "cpu_at_go_s": self.cpu_at_go,
            **self.summary_of_sends(),
        }


def worker_main(spec: dict[str, Any], pipe: Any) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent cleans up on Ctrl-C
    raise_nofile_limit()
    asyncio.run(Worker(spec, pipe).run())
