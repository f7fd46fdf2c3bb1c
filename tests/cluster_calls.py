"""An aiortc call participant that lives through node failures the way the web client does.

It signs in over HTTP (the session is good on every node), keeps one socket
(reconnecting to the next node address when it closes), publishes a tone
and a coloured video, answers the media server's subscribe offers, and
counts decoded frames per sender *username* (participant ids change on a
rejoin). When its socket comes back, or the server says ``call.moved``, it
joins the call again, retrying while the answer is ``call_moving`` or
``unavailable``, with fresh peer connections, as ``web/js/call.js`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from collab.media.peers import new_peer_connection, set_local
from tests.chat_helpers import Socket
from tests.media_helpers import CLIENT_SETTINGS, ColourVideo, ToneAudio

PASSWORD = "correct horse battery"
RETRYABLE = ("call_moving", "unavailable")


class CallPeer:
    def __init__(self, username: str, addresses: list[str], first: int) -> None:
        self.username = username
        self.addresses = addresses
        self.index = first
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.ws: Socket | None = None
        self.node = ""  # the node of the current socket, from hello
        self.call_id: int | None = None
        self.participant = ""
        self.call_nodes: list[str] = []  # the media node of each join, from the server's view
        self.names: dict[str, str] = {}  # participant id → username
        self.owners: dict[str, str] = {}  # subscribe mid → participant id
        self.frames: dict[str, dict[str, int]] = {}  # username → kind → decoded frames
        self.events: list[dict[str, Any]] = []
        self.joins = 0
        self._publish: RTCPeerConnection | None = None
        self._subscribe: RTCPeerConnection | None = None
        self._sources: list[MediaStreamTrack] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._media_lock = asyncio.Lock()
        self._rejoin: asyncio.Task[None] | None = None
        self.stopping = False
        self.timeline: list[tuple[float, str]] = []  # what happened when (for reports)

    async def sign_in(self, base: str) -> None:
        response = await self.http.post(
            f"{base}/api/v1/login", json={"username": self.username, "password": PASSWORD}
        )
        assert response.status == 200, await response.text()

    # -- the socket ---------------------------------------------------------------

    async def connect(self) -> None:
        for _ in range(60):
            address = self.addresses[self.index % len(self.addresses)]
            try:
                ws = await self.http.ws_connect(f"{address}/ws", heartbeat=None)
            except aiohttp.ClientError:
                self.index += 1
                await asyncio.sleep(0.5)
                continue
            self.ws = Socket(ws)
            hello = await self.ws.next_event("hello", timeout=10)
            self.node = hello["node"]
            self._pump = asyncio.create_task(self._read(self.ws))
            # As every client does first: once this answers, the socket hears its rooms.
            assert (await self.command("sync", rooms=[])).get("ok")
            return
        raise AssertionError(f"{self.username} could not reach any node")

    async def _read(self, ws: Socket) -> None:
        """Events of one socket; when it closes, reconnect and rejoin the call."""
        while True:
            getter = asyncio.ensure_future(ws.events.get())
            done, _ = await asyncio.wait({getter, ws._reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            self._on_event(getter.result())
        for waiting in ws.answers.values():  # commands in flight will get no answer
            if not waiting.done():
                waiting.set_exception(ConnectionError("the socket closed"))
        if self.stopping:
            return
        self._note("socket closed")
        self.index += 1
        await self.connect()
        if self.call_id is not None:
            self._start_rejoin()

    def _note(self, what: str) -> None:
        self.timeline.append((time.monotonic(), what))

    def _on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event["type"] in ("call.moved", "call.left", "call.ended", "hello"):
            self._note(event["type"])
        kind = event["type"]
        if kind == "call.state" and event["call"] == self.call_id:
            self._learn(event)
        elif kind == "call.signal" and event["call"] == self.call_id:
            self._spawn(self._answer_offer(event))
        elif kind == "call.moved" and event["call"] == self.call_id:
            self._start_rejoin()

    def _learn(self, view: dict[str, Any]) -> None:
        for person in view["participants"]:
            self.names[person["id"]] = person["user"]["username"]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def command(self, type_: str, **fields: Any) -> dict[str, Any]:
        assert self.ws is not None
        return await self.ws.command(type_, **fields)

    # -- the call -------------------------------------------------------------------

    async def start_call(self, room: int) -> int:
        answer = await self.command("call.start", room=room, video=True)
        assert answer.get("ok"), answer
        self.call_id = int(answer["call"]["call"])
        await self._joined(answer)
        return self.call_id

    async def join(self, call_id: int) -> None:
        self.call_id = call_id
        for _ in range(40):
            try:
                answer = await self.command("call.join", call=call_id)
                if answer.get("ok"):
                    await self._joined(answer)
                    return
            except (ConnectionError, TimeoutError, AssertionError) as exc:
                # The socket closed under the join (its node is going): again on the next.
                self._note(f"join interrupted: {exc!r}")
                await asyncio.sleep(0.5)
                continue
            self._note(f"join refused: {answer['error']['code']}")
            if answer["error"]["code"] not in RETRYABLE:
                raise AssertionError(f"{self.username} could not join: {answer}")
            await asyncio.sleep(0.5)
        raise AssertionError(f"{self.username} could not rejoin call {call_id}")

    def _start_rejoin(self) -> None:
        if self._rejoin is None or self._rejoin.done():
            assert self.call_id is not None
            self._rejoin = asyncio.create_task(self.join(self.call_id))

    async def _joined(self, answer: dict[str, Any]) -> None:
        self._note(f"joined (socket on {self.node})")
        self.joins += 1
        self.participant = answer["participant"]
        self._learn(answer["call"])
        async with self._media_lock:
            await self._close_media()
            self._publish = new_peer_connection(CLIENT_SETTINGS)
            self._subscribe = new_peer_connection(CLIENT_SETTINGS)
            self._subscribe.on("track", self._on_track)
            self._sources = [ToneAudio(), ColourVideo()]
            for track in self._sources:
                self._publish.addTransceiver(track, direction="sendonly")
            offer = await set_local(self._publish, CLIENT_SETTINGS, "offer")
            reply = await self.command(
                "call.signal", call=self.call_id, pc="publish", kind="offer", sdp=offer
            )
            assert reply.get("ok"), reply
            await self._publish.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
            mids = {t.sender.track.kind: t.mid for t in self._publish.getTransceivers()}
            declared = await self.command(
                "call.tracks",
                call=self.call_id,
                tracks={mids["audio"]: {"source": "mic"}, mids["video"]: {"source": "camera"}},
            )
            assert declared.get("ok"), declared

    async def _answer_offer(self, event: dict[str, Any]) -> None:
        async with self._media_lock:
            pc = self._subscribe
            if pc is None or event["pc"] != "subscribe" or event["kind"] != "offer":
                return
            for mid, info in event["tracks"].items():
                self.owners[mid] = info["participant"]
            await pc.setRemoteDescription(RTCSessionDescription(event["sdp"], "offer"))
            answer = await set_local(pc, CLIENT_SETTINGS, "answer")
            with contextlib.suppress(TimeoutError):
                await self.command(
                    "call.signal", call=self.call_id, pc="subscribe", kind="answer", sdp=answer
                )

    def _on_track(self, track: MediaStreamTrack) -> None:
        pc = self._subscribe
        assert pc is not None
        mid = next(t.mid for t in pc.getTransceivers() if t.receiver.track is track)
        self._spawn(self._count(mid, track))

    async def _count(self, mid: str, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                owner = self.names.get(self.owners.get(mid, ""), "?")
                per_kind = self.frames.setdefault(owner, {})
                per_kind[track.kind] = per_kind.get(track.kind, 0) + 1

    def decoded(self) -> dict[str, dict[str, int]]:
        return {name: dict(kinds) for name, kinds in self.frames.items()}

    async def _close_media(self) -> None:
        for track in self._sources:
            track.stop()
        for pc in (self._publish, self._subscribe):
            if pc is not None:
                await pc.close()
        self._publish = self._subscribe = None
        self.owners.clear()

    async def close(self) -> None:
        self.stopping = True
        for task in (self._rejoin, self._pump, *self._tasks):
            if task is not None:
                task.cancel()
        async with self._media_lock:
            await self._close_media()
        if self.ws is not None:
            await self.ws.ws.close()
        await self.http.close()
