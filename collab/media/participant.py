"""One participant's two peer connections and what flows through them.

Like LiveKit, each participant holds two connections to the server:

* the **publish** connection, where the client is always the offerer: it
  sends its microphone, camera and screen as separate sendonly tracks and
  the server answers recvonly. A track is published while its m-section
  says the client sends; a new offer can add or stop tracks at any time.
* the **subscribe** connection, where the server is always the offerer:
  one sendonly transceiver per track of every other participant. The server
  renegotiates it (a new offer through ``on_signal``) whenever tracks come
  or go; while an offer waits for its answer, changes pile up into the next
  one. Neither side ever has to handle glare, and nobody rejoins to add or
  remove a track.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpTransceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from . import aiortc_hooks as hooks
from .errors import InvalidState
from .forwarding import Egress, Ingress
from .peers import (
    ParkedTrack,
    apply_remote,
    audio_level_id,
    capability_for,
    new_peer_connection,
    parse_sdp,
    primary_codec,
    set_local,
)

if TYPE_CHECKING:
    from .call import Call

logger = logging.getLogger(__name__)

SOURCES = ("mic", "camera", "screen")


@dataclasses.dataclass(eq=False)
class PublishedTrack:
    """A track a participant sends: its identity, what it shows, its ingress."""

    id: str
    participant: str
    mid: str
    kind: str
    codec: RTCRtpCodecParameters
    ingress: Ingress
    receiver: RTCRtpReceiver
    source: str = "mic"
    muted: bool = False

    def info(self) -> dict[str, Any]:
        """What the signaling layer tells clients about this track."""
        return {
            "participant": self.participant,
            "track": self.id,
            "kind": self.kind,
            "source": self.source,
            "muted": self.muted,
        }


@dataclasses.dataclass(eq=False)
class Subscription:
    """A track of someone else, on one of this participant's sendonly transceivers."""

    track: PublishedTrack
    transceiver: RTCRtpTransceiver
    egress: Egress | None = None


class Participant:
    """Negotiation and forwarding state of one participant in one call."""

    def __init__(self, call: Call, participant_id: str) -> None:
        self.call = call
        self.id = participant_id
        self.settings = call.settings
        self.publish_pc: RTCPeerConnection = new_peer_connection(self.settings)
        self.subscribe_pc: RTCPeerConnection = new_peer_connection(self.settings)
        self.published: dict[str, PublishedTrack] = {}
        self.track_info: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[PublishedTrack, Subscription] = {}
        self.closed = False
        self._publish_lock = asyncio.Lock()
        self._subscribe_lock = asyncio.Lock()
        self._offer_wanted = False
        self._offer_task: asyncio.Task[None] | None = None
        self.subscribe_pc.on("connectionstatechange", self._on_subscribe_state)

    # -- publishing ----------------------------------------------------------------------

    async def publish_offer(self, sdp: str) -> str:
        """Apply the client's publish offer; return the server's answer SDP."""
        parsed = parse_sdp(sdp, "offer")
        async with self._publish_lock:
            self._check_open()
            if self.publish_pc.signalingState != "stable":
                raise InvalidState("the publish connection is in the middle of a negotiation")
            await apply_remote(self.publish_pc, sdp, "offer")
            sending = {
                m.rtp.muxId
                for m in parsed.media
                if m.kind in ("audio", "video")
                and m.direction in ("sendonly", "sendrecv")
                and m.port != 0
            }
            changed = False
            for transceiver in self.publish_pc.getTransceivers():
                transceiver.direction = "recvonly"
                mid = transceiver.mid
                if mid in sending and mid not in self.published:
                    self._publish(transceiver)
                    changed = True
                elif mid not in sending and mid in self.published:
                    self.published.pop(mid).ingress.close()
                    changed = True
            answer = await set_local(self.publish_pc, self.settings, "answer")
        if changed:
            self.call.tracks_changed()
        return answer

    def _publish(self, transceiver: RTCRtpTransceiver) -> None:
        codec = primary_codec(transceiver)
        assert transceiver.mid is not None and codec is not None
        receiver = transceiver.receiver
        kind = transceiver.kind
        on_level = None
        if kind == "audio":
            on_level = self._on_audio_level
        ingress = Ingress(
            kind,
            hooks.negotiated_codecs(transceiver),
            lambda ssrc: hooks.send_pli(receiver, ssrc),
            keyframe_retry_s=self.settings.keyframe_retry_s,
            cache_size=self.settings.packet_cache_size,
            on_level=on_level,
        )
        hooks.tap_receiver(receiver, ingress.on_packet)
        track = PublishedTrack(
            id=f"{self.id}:{transceiver.mid}",
            participant=self.id,
            mid=transceiver.mid,
            kind=kind,
            codec=codec,
            ingress=ingress,
            receiver=receiver,
            source=self._default_source(kind),
        )
        self._apply_info(track, self.track_info.get(transceiver.mid, {}))
        self.published[transceiver.mid] = track

    def _default_source(self, kind: str) -> str:
        if kind == "audio":
            return "mic"
        taken = {t.source for t in self.published.values() if t.kind == "video"}
        return "screen" if "camera" in taken else "camera"

    def _on_audio_level(self, level: int) -> None:
        if not any(t.kind == "audio" and t.muted for t in self.published.values()):
            self.call.speaking.add(self.id, level)

    def set_track_info(self, info: dict[str, dict[str, Any]]) -> bool:
        """Record source/mute per publish mid (now or later); True if anything changed."""
        changed = False
        for mid, fields in info.items():
            self.track_info.setdefault(mid, {}).update(fields)
            track = self.published.get(mid)
            if track is not None:
                changed |= self._apply_info(track, fields)
        if changed and any(t.kind == "audio" and t.muted for t in self.published.values()):
            self.call.speaking.forget(self.id)
        return changed

    @staticmethod
    def _apply_info(track: PublishedTrack, fields: dict[str, Any]) -> bool:
        before = (track.source, track.muted)
        source = fields.get("source")
        if isinstance(source, str) and source in SOURCES:
            track.source = source
        muted = fields.get("muted")
        if isinstance(muted, bool):
            track.muted = muted
        return before != (track.source, track.muted)

    # -- subscribing ---------------------------------------------------------------------

    def want_offer(self) -> None:
        """Tracks changed: make a new subscribe offer as soon as negotiation allows."""
        if self.closed:
            return
        self._offer_wanted = True
        if self._offer_task is None or self._offer_task.done():
            self._offer_task = asyncio.ensure_future(self._offer())

    async def _offer(self) -> None:
        try:
            async with self._subscribe_lock:
                if self.closed or self.subscribe_pc.signalingState != "stable":
                    return  # the answer to the outstanding offer calls want_offer again
                if not self._offer_wanted:
                    return
                self._offer_wanted = False
                if not await self._sync_subscriptions():
                    return
                sdp = await set_local(self.subscribe_pc, self.settings, "offer")
                tracks = {s.transceiver.mid: s.track.info() for s in self.subscriptions.values()}
            self.call.emit_signal(
                self.id, {"pc": "subscribe", "type": "offer", "sdp": sdp, "tracks": tracks}
            )
        except Exception:
            if not self.closed:
                logger.exception("subscribe offer for %s failed", self.id)

    async def _sync_subscriptions(self) -> bool:
        """Add transceivers for new tracks, retire those of ended ones."""
        wanted = self.call.tracks_except(self.id)
        changed = False
        for track, sub in list(self.subscriptions.items()):
            if track not in wanted:
                del self.subscriptions[track]
                await self._retire(sub)
                changed = True
        for track in wanted:
            if track in self.subscriptions:
                continue
            transceiver = self.subscribe_pc.addTransceiver(
                ParkedTrack(track.kind), direction="sendonly"
            )
            transceiver.setCodecPreferences(capability_for(track.codec))
            self.subscriptions[track] = Subscription(track, transceiver)
            changed = True
        return changed

    @staticmethod
    async def _retire(sub: Subscription) -> None:
        """Stop a subscription's sender (the client sees RTCP BYE) and park its m-line."""
        if sub.egress is not None:
            sub.egress.close()
        sub.transceiver.direction = "inactive"
        with contextlib.suppress(Exception):
            await sub.transceiver.stop()

    async def subscribe_answer(self, sdp: str) -> None:
        """Apply the client's answer to the server's last subscribe offer."""
        parse_sdp(sdp, "answer")
        async with self._subscribe_lock:
            self._check_open()
            if self.subscribe_pc.signalingState != "have-local-offer":
                raise InvalidState("no subscribe offer is waiting for an answer")
            await apply_remote(self.subscribe_pc, sdp, "answer")
            for sub in self.subscriptions.values():
                if sub.egress is None:
                    self._attach(sub)
            if self.subscribe_pc.connectionState == "connected":
                self._activate_all()
        if self._offer_wanted:
            self.want_offer()

    def _attach(self, sub: Subscription) -> None:
        codec = primary_codec(sub.transceiver)
        if codec is None:
            return
        sender = sub.transceiver.sender
        egress = Egress(
            sub.track.ingress,
            hooks.RtpSink(sender.transport),
            sender,
            codec.payloadType,
            audio_level_id(sub.transceiver) if sub.track.kind == "audio" else None,
        )
        hooks.tap_sender_feedback(sender, egress.on_rtcp)
        sub.egress = egress
        sub.track.ingress.attach(egress)

    def _activate_all(self) -> None:
        for sub in self.subscriptions.values():
            if sub.egress is not None and not sub.egress.active:
                sub.egress.activate()

    def _on_subscribe_state(self) -> None:
        if self.subscribe_pc.connectionState == "connected":
            self._activate_all()

    # -- candidates and teardown ---------------------------------------------------------

    async def add_candidate(self, which: str, candidate: Any) -> None:
        """Add a trickled remote candidate (already parsed) to one connection."""
        self._check_open()
        pc = self.publish_pc if which == "publish" else self.subscribe_pc
        if pc.remoteDescription is None:
            raise InvalidState(f"the {which} connection has no remote description yet")
        await pc.addIceCandidate(candidate)

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidState("the participant has left")

    async def close(self) -> None:
        """Stop forwarding and close both connections (no ICE-consent grace period)."""
        self.closed = True
        if self._offer_task is not None:
            self._offer_task.cancel()
        for track in self.published.values():
            track.ingress.close()
        for sub in self.subscriptions.values():
            if sub.egress is not None:
                sub.egress.close()
        self.subscriptions.clear()
        await asyncio.gather(
            self.publish_pc.close(), self.subscribe_pc.close(), return_exceptions=True
        )
