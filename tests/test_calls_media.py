"""A call with media through the socket: aiortc peers do what a browser does, with
every offer, answer and candidate carried by ``call.*`` frames to the node's
real media server, and each side decodes the other's audio and video."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from collab.media.peers import new_peer_connection, set_local
from tests.chat_helpers import Person, Socket
from tests.media_helpers import CLIENT_SETTINGS, ColourVideo, ToneAudio, wait_for


class BrowserLike:
    """One participant over the socket: publishes mic and camera, answers the
    server's subscribe offers that arrive as ``call.signal`` events."""

    def __init__(self, ws: Socket, call_id: int) -> None:
        self.ws = ws
        self.call_id = call_id
        self.publish: RTCPeerConnection = new_peer_connection(CLIENT_SETTINGS)
        self.subscribe: RTCPeerConnection = new_peer_connection(CLIENT_SETTINGS)
        self.frames: dict[str, dict[str, int]] = {}  # participant → kind → decoded frames
        self.track_owner: dict[str, dict[str, Any]] = {}  # subscribe mid → media's info
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribe.on("track", self._on_track)
        self._sources = [ToneAudio(), ColourVideo()]

    async def publish_tracks(self) -> dict[str, Any]:
        for track in self._sources:
            self.publish.addTransceiver(track, direction="sendonly")
        offer = await set_local(self.publish, CLIENT_SETTINGS, "offer")
        answer = await self.ws.command(
            "call.signal", call=self.call_id, pc="publish", kind="offer", sdp=offer
        )
        assert answer["ok"] and answer["kind"] == "answer", answer
        await self.publish.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        mids = {t.sender.track.kind: t.mid for t in self.publish.getTransceivers()}
        declared = await self.ws.command(
            "call.tracks",
            call=self.call_id,
            tracks={mids["audio"]: {"source": "mic"}, mids["video"]: {"source": "camera"}},
        )
        assert declared["ok"], declared
        return declared

    async def answer_offers(self) -> None:
        """Answer every subscribe offer the server sends (renegotiations included)."""
        while True:
            event = await self.ws.next_event("call.signal", timeout=30)
            assert event["pc"] == "subscribe" and event["kind"] == "offer"
            self.track_owner.update(event["tracks"])
            await self.subscribe.setRemoteDescription(RTCSessionDescription(event["sdp"], "offer"))
            answer = await set_local(self.subscribe, CLIENT_SETTINGS, "answer")
            sent = await self.ws.command(
                "call.signal", call=self.call_id, pc="subscribe", kind="answer", sdp=answer
            )
            assert sent["ok"], sent

    def _on_track(self, track: Any) -> None:
        mid = next(t.mid for t in self.subscribe.getTransceivers() if t.receiver.track is track)
        self._tasks.append(asyncio.ensure_future(self._count(mid, track)))

    async def _count(self, mid: str, track: Any) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                await track.recv()
                owner = self.track_owner.get(mid, {}).get("participant", "?")
                per_kind = self.frames.setdefault(owner, {})
                per_kind[track.kind] = per_kind.get(track.kind, 0) + 1

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for track in self._sources:
            track.stop()
        await self.publish.close()
        await self.subscribe.close()


async def test_two_people_hear_and_see_each_other_through_the_call_frames(
    aiohttp_client: Any, make_app: Any
) -> None:
    client = await aiohttp_client(make_app(call_ring_timeout=30))
    ana, bob = await Person.create(client, "ana"), await Person.create(client, "bob")
    dm = await ana.room("dm", members=["bob"])
    ana_ws, bob_ws = await ana.socket(), await bob.socket()

    started = await ana_ws.command("call.start", room=dm["id"], video=True)
    assert started["media"] is True
    call_id = started["call"]["call"]
    accepted = await bob_ws.command("call.accept", call=call_id)
    ana_id, bob_id = started["participant"], accepted["participant"]

    ana_peer, bob_peer = BrowserLike(ana_ws, call_id), BrowserLike(bob_ws, call_id)
    answering = [
        asyncio.ensure_future(ana_peer.answer_offers()),
        asyncio.ensure_future(bob_peer.answer_offers()),
    ]
    try:
        await ana_peer.publish_tracks()
        await bob_peer.publish_tracks()

        def both_decode() -> bool:
            got_bob = ana_peer.frames.get(bob_id, {})
            got_ana = bob_peer.frames.get(ana_id, {})
            return all(
                got.get(kind, 0) >= 5 for got in (got_bob, got_ana) for kind in ("audio", "video")
            )

        await wait_for(both_decode, timeout=20)
        # A socket opened now is told the call's state, with the media server's
        # account of whose track is whose.
        watcher = await ana.socket()
        state = await watcher.next_event("call.state")
        await watcher.close()
        owners = sorted((t["participant"], t["kind"]) for t in state["media_tracks"])
        assert owners == sorted(
            [(ana_id, "audio"), (ana_id, "video"), (bob_id, "audio"), (bob_id, "video")]
        )
        [bob_view] = [p for p in state["participants"] if p["id"] == bob_id]
        assert bob_view["camera"] is True and bob_view["muted"] is False
    finally:
        for task in answering:
            task.cancel()
        for peer in (ana_peer, bob_peer):
            await peer.close()

    assert (await bob_ws.command("call.leave", call=call_id))["ok"]
    assert (await ana_ws.command("call.leave", call=call_id))["ok"]
    assert (await ana_ws.next_event("call.ended"))["outcome"] == "completed"
    await ana_ws.close()
    await bob_ws.close()
