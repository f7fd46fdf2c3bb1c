"""aiortc client peers for media server tests and the call benchmark.

A :class:`Client` is what a browser does in a call, with aiortc: it joins,
publishes its tracks on a publish connection it offers, answers the
server's subscribe offers, and counts (optionally decodes) what arrives per
subscribe mid. Clients talk to the :class:`MediaServer` directly, standing
in for the signaling layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

from collab.media import MediaServer, MediaSettings
from collab.media.peers import new_peer_connection, set_local

CLIENT_SETTINGS = MediaSettings()  # no ICE servers, plus 127.0.0.1 like the server


class ColourVideo(VideoStreamTrack):
    """Small frames of one colour: cheap to encode, easy to check."""

    def __init__(self, colour: tuple[int, int, int] = (0, 200, 0), size=(160, 120)) -> None:
        super().__init__()
        self.colour = colour
        self.size = size
        r, g, b = colour
        self.yuv = (
            int(0.257 * r + 0.504 * g + 0.098 * b + 16),
            int(-0.148 * r - 0.291 * g + 0.439 * b + 128),
            int(0.439 * r - 0.368 * g - 0.071 * b + 128),
        )

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.size[0], self.size[1], "yuv420p")
        for plane, value in zip(frame.planes, self.yuv, strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


class ToneAudio(AudioStreamTrack):
    """A 440 Hz tone, or silence: what makes a participant 'speak'."""

    def __init__(self, loud: bool = True) -> None:
        super().__init__()
        self.loud = loud
        self._phase = 0

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        if self.loud:
            samples = frame.samples
            data = bytearray()
            for i in range(samples):
                value = int(8000 * math.sin(2 * math.pi * 440 * (self._phase + i) / 48000))
                data += value.to_bytes(2, "little", signed=True)
            self._phase += samples
            frame.planes[0].update(bytes(data))
        return frame


class Received:
    """What arrived on one subscribe mid."""

    def __init__(self, mid: str, kind: str) -> None:
        self.mid = mid
        self.kind = kind
        self.frames = 0
        self.first_at: float | None = None
        self.ended = False
        self.info: dict[str, Any] = {}
        self.last_frame: Any = None


class Client:
    """One participant with an aiortc publish and subscribe connection."""

    def __init__(
        self,
        media: MediaServer,
        call_id: str,
        participant_id: str,
        *,
        video: bool = True,
        audio: bool = True,
        loud: bool = False,
        colour: tuple[int, int, int] = (0, 200, 0),
    ) -> None:
        self.media = media
        self.call_id = call_id
        self.id = participant_id
        self.publish_pc: RTCPeerConnection = new_peer_connection(CLIENT_SETTINGS)
        self.subscribe_pc: RTCPeerConnection = new_peer_connection(CLIENT_SETTINGS)
        self.tracks: list[MediaStreamTrack] = []
        if audio:
            self.tracks.append(ToneAudio(loud))
        if video:
            self.tracks.append(ColourVideo(colour))
        self.received: dict[str, Received] = {}
        self._pending_info: dict[str, dict[str, Any]] = {}
        self.offers = 0
        self.joined_at = 0.0
        self._consumers: list[asyncio.Task[None]] = []
        self._signal_lock = asyncio.Lock()
        self.subscribe_pc.on("track", self._on_track)

    async def join(self) -> None:
        """Join the call and publish the tracks given at construction."""
        self.joined_at = time.monotonic()
        await self.media.join(self.call_id, self.id)
        if self.tracks:
            for track in self.tracks:
                self.publish_pc.addTransceiver(track, direction="sendonly")
            await self.negotiate_publish()

    async def negotiate_publish(self) -> None:
        """Offer the publish connection's current tracks to the server."""
        offer = await set_local(self.publish_pc, CLIENT_SETTINGS, "offer")
        answer = await self.media.publish_offer(self.call_id, self.id, offer)
        await self.publish_pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def add_track(self, track: MediaStreamTrack, info: dict[str, Any]) -> str:
        """Publish another track mid-call (e.g. a screen); return its mid."""
        transceiver = self.publish_pc.addTransceiver(track, direction="sendonly")
        self.tracks.append(track)
        await self.negotiate_publish()
        assert transceiver.mid is not None
        self.media.set_track_info(self.call_id, self.id, {transceiver.mid: info})
        return transceiver.mid

    async def on_signal(self, message: dict[str, Any]) -> None:
        """Answer a subscribe offer from the server."""
        async with self._signal_lock:
            self.offers += 1
            await self.subscribe_pc.setRemoteDescription(
                RTCSessionDescription(message["sdp"], "offer")
            )
            for mid, info in message.get("tracks", {}).items():
                if mid in self.received:
                    self.received[mid].info = info
                else:
                    self._pending_info[mid] = info
            answer = await set_local(self.subscribe_pc, CLIENT_SETTINGS, "answer")
            await self.media.subscribe_answer(self.call_id, self.id, answer)

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next(t.mid for t in self.subscribe_pc.getTransceivers() if t.receiver.track is track)
        received = Received(mid, track.kind)
        received.info = self._pending_info.pop(mid, {})
        self.received[mid] = received
        self._consumers.append(asyncio.ensure_future(self._consume(track, received)))

    async def _consume(self, track: MediaStreamTrack, received: Received) -> None:
        try:
            while True:
                frame = await track.recv()
                received.frames += 1
                received.last_frame = frame
                if received.first_at is None:
                    received.first_at = time.monotonic()
        except MediaStreamError:
            received.ended = True
        except asyncio.CancelledError:
            pass

    def frames_from(self, participant: str, kind: str) -> int:
        """Decoded frames received from ``participant``'s tracks of ``kind``."""
        return sum(
            r.frames
            for r in self.received.values()
            if r.kind == kind and r.info.get("participant") == participant
        )

    def live(self, participant: str) -> list[Received]:
        """Received tracks of ``participant`` that have not ended."""
        return [
            r
            for r in self.received.values()
            if r.info.get("participant") == participant and not r.ended
        ]

    async def close(self) -> None:
        """Stop consuming and close both connections."""
        for task in self._consumers:
            task.cancel()
        for task in self._consumers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for track in self.tracks:
            track.stop()
        await self.publish_pc.close()
        await self.subscribe_pc.close()


def wire(media: MediaServer) -> tuple[dict[str, Client], list[tuple[str, Any]]]:
    """Route the server's events to clients, as the signaling layer would.

    Returns the client registry (fill it with ``clients[id] = Client(...)``)
    and a list that collects every event for assertions.
    """
    clients: dict[str, Client] = {}
    events: list[tuple[str, Any]] = []

    async def on_signal(call_id: str, participant_id: str, message: dict[str, Any]) -> None:
        events.append(("signal", (participant_id, message["type"])))
        client = clients.get(participant_id)
        if client is not None:
            await client.on_signal(message)

    media.on_signal = on_signal
    media.on_tracks = lambda call_id, tracks: events.append(("tracks", tracks))
    media.on_speaking = lambda call_id, speakers: events.append(("speaking", speakers))
    media.on_quality = lambda call_id, pid, level, stats: events.append(
        ("quality", (pid, level, stats))
    )
    return clients, events


async def wait_for(
    predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.02
) -> float:
    """Wait until ``predicate()`` holds; return the seconds it took. Fails on timeout."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)
    return time.monotonic() - start
