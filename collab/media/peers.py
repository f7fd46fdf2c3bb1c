"""Building and talking to aiortc peer connections the way the server needs.

The server's connections never use aiortc's defaults for ICE: the default
configuration sends STUN to a public server (and stalls for seconds where
that is unreachable). Everything here goes through public aiortc API; the
private parts live in :mod:`aiortc_hooks`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

from . import aiortc_hooks as hooks
from .errors import BadCandidate, BadSdp
from .settings import MediaSettings

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


def new_peer_connection(settings: MediaSettings) -> RTCPeerConnection:
    """A peer connection with ICE servers from settings only (none by default)."""
    servers = [
        RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
        for s in settings.ice_servers
    ]
    return RTCPeerConnection(
        RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


async def set_local(pc: RTCPeerConnection, settings: MediaSettings, kind: str) -> str:
    """Create the offer or answer, with every candidate we announce; return its SDP."""
    description = await (pc.createOffer() if kind == "offer" else pc.createAnswer())
    gatherers = {t.sender.transport.transport.iceGatherer for t in pc.getTransceivers()}
    await asyncio.gather(
        *(
            hooks.add_local_candidates(g, settings.host_addresses, settings.public_addresses)
            for g in gatherers
        )
    )
    await pc.setLocalDescription(description)
    return pc.localDescription.sdp


def parse_sdp(sdp: str, kind: str) -> aiortc_sdp.SessionDescription:
    """Parse an SDP offer/answer or raise :class:`BadSdp` saying why."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise BadSdp(f"the {kind} has no SDP")
    try:
        parsed = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # the parser raises whatever the bad line makes it raise
        raise BadSdp(f"the {kind} SDP cannot be parsed: {exc}") from None
    if not parsed.media:
        raise BadSdp(f"the {kind} SDP has no media sections")
    for media in parsed.media:
        if not media.ice.usernameFragment or not media.ice.password:
            raise BadSdp(f"the {kind} SDP has no ICE credentials")
        if media.dtls is None or not media.dtls.fingerprints:
            raise BadSdp(f"the {kind} SDP has no DTLS fingerprint")
    return parsed


async def apply_remote(pc: RTCPeerConnection, sdp: str, kind: str) -> None:
    """``setRemoteDescription``, with aiortc's errors turned into :class:`BadSdp`."""
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
    except Exception as exc:
        raise BadSdp(f"the {kind} cannot be applied: {exc}") from None


def parse_candidate(candidate: Any) -> RTCIceCandidate | None:
    """A browser's ``RTCIceCandidateInit`` (dict) or candidate line → aiortc.

    ``None``, an empty dict or an empty candidate string mean end of
    candidates, as in the browser API.
    """
    if candidate is None:
        return None
    if isinstance(candidate, str):
        candidate = {"candidate": candidate, "sdpMLineIndex": 0}
    if not isinstance(candidate, dict):
        raise BadCandidate("a candidate is an object with a 'candidate' string")
    line = candidate.get("candidate") or ""
    if not isinstance(line, str):
        raise BadCandidate("the 'candidate' field must be a string")
    if not line:
        return None
    line = line.removeprefix("a=").removeprefix("candidate:")
    try:
        parsed = aiortc_sdp.candidate_from_sdp(line)
    except Exception:
        raise BadCandidate(f"cannot parse candidate {line[:80]!r}") from None
    mid = candidate.get("sdpMid")
    index = candidate.get("sdpMLineIndex")
    if mid is None and index is None:
        index = 0
    if (mid is not None and not isinstance(mid, str)) or (
        index is not None and not isinstance(index, int)
    ):
        raise BadCandidate("sdpMid must be a string and sdpMLineIndex a number")
    parsed.sdpMid = mid
    parsed.sdpMLineIndex = index
    return parsed


class ParkedTrack(MediaStreamTrack):
    """The track a forwarding sender holds: it never yields a frame.

    aiortc's sender polls every 20 ms while it has no track; with a track
    whose ``recv`` waits until stopped, its loop sleeps for good and the
    forwarder writes the packets itself.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended = asyncio.Event()

    async def recv(self) -> Any:
        await self._ended.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._ended.set()


def capability_for(codec: RTCRtpCodecParameters) -> list[RTCRtpCodecCapability]:
    """The sender capability matching a publisher's codec, for setCodecPreferences.

    A subscriber gets exactly the codec the publisher sends (no RTX: lost
    packets are resent on the main stream from the packet ring).
    """
    kind = codec.mimeType.split("/")[0].lower()
    candidates = [
        c
        for c in RTCRtpSender.getCapabilities(kind).codecs
        if c.mimeType.lower() == codec.mimeType.lower() and not is_rtx(c)
    ]
    for cap in candidates:
        shared = [k for k in codec.parameters if k in cap.parameters]
        if all(cap.parameters[k] == codec.parameters[k] for k in shared):
            return [cap]
    return candidates[:1]


def primary_codec(transceiver: RTCRtpTransceiver) -> RTCRtpCodecParameters | None:
    """The first negotiated non-RTX codec: what the far end sends or expects."""
    return next((c for c in hooks.negotiated_codecs(transceiver) if not is_rtx(c)), None)


def audio_level_id(transceiver: RTCRtpTransceiver) -> int | None:
    """The negotiated id of the audio-level header extension, if any."""
    for ext in hooks.negotiated_header_extensions(transceiver):
        if ext.uri == AUDIO_LEVEL_URI:
            return ext.id
    return None
